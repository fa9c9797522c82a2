package jsonwire

import (
	"encoding/json"
	"testing"
)

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain-id_01", `quote " and \ slash`, "<html> & co", "tab\there", "é ü", "\u2028\u2029", "bad \xff utf8", "\x00\x1f"} {
		want, _ := json.Marshal(s)
		if got := AppendString([]byte("x"), s); string(got) != "x"+string(want) {
			t.Errorf("AppendString(%q) = %s, want x%s", s, got, want)
		}
	}
}
