package consistency

import (
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tok := Token{}
	tok.Add("r", 0, 5)
	tok.Add("r", 0, 3) // lower: ignored
	tok.Add("r", 2, 9)
	tok.Add("d", 1, 0)
	enc := tok.Encode()
	if enc != tok.Encode() {
		t.Fatal("encoding is not deterministic")
	}
	got, err := Decode(enc)
	if err != nil {
		t.Fatal(err)
	}
	want := Token{"r": {0: 5, 2: 9}, "d": {1: 0}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if (Token{}).Encode() != "" {
		t.Fatal("empty token must encode empty")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, s := range []string{
		"",
		"!!!",
		"bm90IGpzb24",                         // "not json"
		"eyJ2IjoyLCJwIjp7InIiOnsiMCI6MX19fQ",  // version 2
		"eyJ2IjoxLCJwIjp7fX0",                 // no positions
		"eyJ2IjoxLCJwIjp7InIiOnsieCI6MX19fQ",  // partition "x"
		"eyJ2IjoxLCJwIjp7InIiOnsiMCI6LTF9fX0", // offset -1
		string(make([]byte, MaxLen+1)),
	} {
		if _, err := Decode(s); err == nil {
			t.Errorf("Decode(%.20q) accepted", s)
		}
	}
}
