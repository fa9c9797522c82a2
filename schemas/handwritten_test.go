package schemas

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hamba/avro/v2"

	"github.com/vitalshq/vitals/internal/metric"
)

// messageIn is x as a single-object message of schema version v, written
// by hamba/avro with a header built here: the reference for messages of
// versions the hand-written code does not write.
func messageIn(t testing.TB, v Version, x any) []byte {
	t.Helper()
	payload, err := avro.Marshal(v.Schema, x)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.LittleEndian.AppendUint64([]byte{0xC3, 0x01}, v.Fingerprint), payload...)
}

// checkDamaged runs check on msg, a valid message, and on damaged copies:
// every truncation if cuts, 20 with up to 3 random payload bytes changed,
// and one with bytes after its end. A hand-written decoder must answer
// each of them as the codec does.
func checkDamaged(rng *rand.Rand, msg []byte, cuts bool, check func(msg []byte)) {
	check(msg)
	if cuts {
		for n := range len(msg) {
			check(msg[:n])
		}
	}
	for range 20 {
		bad := append([]byte(nil), msg...)
		for range 1 + rng.IntN(3) {
			bad[headerLen+rng.IntN(len(bad)-headerLen)] = byte(rng.IntN(256))
		}
		check(bad)
	}
	check(append(append([]byte(nil), msg...), 0x02, 0x41))
}

// handWrittenLayouts are the versions this package writes or reads by hand.
var handWrittenLayouts = []*handWritten{&readingV3, &acceptedReadingV3, &readingBatchV2}

// The hand-written layouts must be their schemas' current versions; when
// this fails, a new version was added: until the hand-written code (the
// file NAME_vN.go) is brought up to date with it and bound to the new file,
// that schema goes through the slower codec (nothing is written wrong).
func TestHandWrittenLayoutsAreCurrent(t *testing.T) {
	for _, h := range handWrittenLayouts {
		c := MustCodec(h.Name)
		if got := c.Current().Fingerprint; got != h.Fingerprint || !h.writes(c) {
			t.Errorf("%s is now v%d (fingerprint %#016x); the hand-written layout is v%d (%#016x)",
				h.Name, c.Current().Number, got, h.Number, h.Fingerprint)
		}
		if h.header != singleObjectHeader(h.Fingerprint) {
			t.Errorf("%s v%d: header %x", h.Name, h.Number, h.header)
		}
	}
}

// TestFingerprints holds the fingerprint derived from every embedded file
// to the independent CRC-64-AVRO of its canonical form, and to the value
// it had when released: a released schema must never change, since
// messages in the log name their writer by it.
func TestFingerprints(t *testing.T) {
	released := map[string]uint64{
		"reading.v1":          0x64f3d96c22f6a5a3,
		"reading.v2":          0xc700176977c11822,
		"accepted_reading.v1": 0x697e7a5a52b45436,
		"accepted_reading.v2": 0x847eff73b7f90623,
		"rejected_reading.v1": 0x725284252556dc75,
		"device_event.v1":     0x6605e1c2aa973c24,
		"profile_event.v1":    0x450ef3b0009d30ac,
		"dead_letter.v1":      0x6a65c984724963aa,
		"alert.v1":            0x06a03edac47bfb0e,
		"reading_batch.v1":    0x406dedaaff6cd7e6,
		"erasure.v1":          0x1796618a21b5cfdb,
		"reading.v3":          0x7ba185fda4b0a22b,
		"accepted_reading.v3": 0xc147042ad8e3532e,
		"alert.v2":            0x70999d666c1e4749,
		"reading_batch.v2":    0xd55b3b7845ae8bd5,
	}
	seen := 0
	for _, name := range Names {
		vs, err := Versions(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			seen++
			if want := crc64Avro([]byte(v.Schema.String())); v.Fingerprint != want {
				t.Errorf("%s v%d: fingerprint %#016x, CRC-64-AVRO of the canonical form %#016x", name, v.Number, v.Fingerprint, want)
			}
			file := fmt.Sprintf("%s.v%d", name, v.Number)
			if want, ok := released[file]; !ok {
				t.Errorf("%s.avsc (%#016x) is not in this test's list: add it once released", file, v.Fingerprint)
			} else if v.Fingerprint != want {
				t.Errorf("%s.avsc changed: fingerprint %#016x, released as %#016x", file, v.Fingerprint, want)
			}
		}
	}
	if seen != len(released) {
		t.Errorf("%d schema files embedded, %d released", seen, len(released))
	}
	for _, h := range handWrittenLayouts {
		if want := released[fmt.Sprintf("%s.v%d", h.Name, h.Number)]; h.Fingerprint != want {
			t.Errorf("hand-written %s v%d is bound to %#016x, its file's is %#016x", h.Name, h.Number, h.Fingerprint, want)
		}
	}
}

// The SleepStage enum the hand-written codecs read from the schemas is
// the catalogue's list of stages, in order: ingest checks stages against
// the catalogue, the codecs write the schema's symbol index.
func TestSleepStagesMatchSchema(t *testing.T) {
	for _, stages := range [][]string{readingV3Stages, acceptedReadingV3Stages} {
		if !slices.Equal(stages, metric.SleepStages) {
			t.Fatalf("schema symbols %v, catalogue %v", stages, metric.SleepStages)
		}
	}
	for i, s := range metric.SleepStages {
		if got := symbolIndex(acceptedReadingV3Stages, s); got != int64(i) {
			t.Fatalf("stage %q is symbol %d by hand", s, got)
		}
		st := s
		a := AcceptedReading{Stage: &st}
		b, err := MustCodec(NameAcceptedReading).Encode(&a)
		if err != nil {
			t.Fatalf("stage %q: %v", s, err)
		}
		// The stage is followed by the sequence (null), the revision and
		// the withdrawn flag, a byte each: union index 1, then its index.
		if got := b[len(b)-5 : len(b)-3]; got[0] != 2 || got[1] != byte(2*i) {
			t.Fatalf("stage %q is symbol %x of the schema, want %d", s, got, i)
		}
	}
	if symbolIndex(acceptedReadingV3Stages, "nap") != -1 {
		t.Fatal("an unknown stage has an index")
	}
}
