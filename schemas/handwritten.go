package schemas

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/hamba/avro/v2"
)

// Hand-written codecs. The general codec (Codec, on hamba/avro) finds its
// way through a schema by reflection and allocates every optional field
// and string on its own; on the hot paths (ingest's batches and logged
// readings, the processor's accepted readings, the projector's reading of
// them, the fleet simulator's bodies) the files NAME_vN.go beside the
// schemas read and write one version's layout directly, byte for byte what
// the codec writes and reads (their tests, and fuzz targets, hold them to
// it with the codec as the reference). Reading v3 and accepted_reading v3
// differ in three fields, so one writer and one reader serve both
// (appendV3 and readFlatV3, in accepted_reading_v3.go).
//
// Each is bound to the version it was written for by a handWritten value
// made at init from the embedded NAME.vN.avsc: its fingerprint is that
// file's, never a copied constant. The exported functions take the codec
// of the schema and use the hand-written layout only while its version is
// the codec's current one, going through the codec otherwise: when a new
// version is added, everything stays correct (only slower) until the
// hand-written code is brought up to date, and
// TestHandWrittenLayoutsAreCurrent fails to say so. A hand-written layout
// can never be sent under another version's fingerprint.

// handWritten is a schema version a hand-written codec in this package
// implements.
type handWritten struct {
	Version
	header [headerLen]byte // the single-object header of messages in this version
}

// mustHandWritten binds a hand-written codec to version number of the
// named schema, read from the embedded file. The files are part of the
// build, so a missing one is a build defect: it panics.
func mustHandWritten(name string, number int) handWritten {
	vs, err := Versions(name)
	if err != nil {
		panic(err)
	}
	for _, v := range vs {
		if v.Number == number {
			return handWritten{Version: v, header: singleObjectHeader(v.Fingerprint)}
		}
	}
	panic(fmt.Sprintf("schemas: no %s.v%d.avsc for its hand-written codec", name, number))
}

// writes reports whether c's current version is h: the hand-written code
// stands in for c only then (and c is then h's schema's codec, since the
// fingerprint names the schema).
func (h *handWritten) writes(c *Codec) bool { return c.current.Fingerprint == h.Fingerprint }

// reads reports whether h's hand-written decoder is the one to try on
// msg: h is c's current version and msg's.
func (h *handWritten) reads(c *Codec, msg []byte) bool { return h.writes(c) && h.isHeader(msg) }

// isHeader reports whether msg starts with h's single-object header.
func (h *handWritten) isHeader(msg []byte) bool {
	return len(msg) >= headerLen && msg[0] == magic[0] && msg[1] == magic[1] &&
		binary.LittleEndian.Uint64(msg[2:headerLen]) == h.Fingerprint
}

// enumSymbols returns the symbols of the enum in the ["null", enum] union
// of h's record field, in schema order: the index the codec writes for a
// symbol. It panics if the field is not such a union (a build defect, as
// in mustHandWritten).
func (h *handWritten) enumSymbols(field string) []string {
	rec, ok := h.Schema.(*avro.RecordSchema)
	if ok {
		for _, f := range rec.Fields() {
			if u, isUnion := f.Type().(*avro.UnionSchema); f.Name() == field && isUnion && len(u.Types()) == 2 {
				if e, isEnum := u.Types()[1].(*avro.EnumSchema); isEnum {
					return slices.Clone(e.Symbols())
				}
			}
		}
	}
	panic(fmt.Sprintf("schemas: %s v%d has no [\"null\", enum] field %s", h.Name, h.Number, field))
}

// symbolIndex is the index of s among symbols, -1 if it is none of them.
func symbolIndex(symbols []string, s string) int64 { return int64(slices.Index(symbols, s)) }
