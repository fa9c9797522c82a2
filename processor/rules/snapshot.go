package rules

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"

	"github.com/vitalshq/vitals/schemas"
)

// snapshotV1 and snapshotV2 start a binary aggregate snapshot. JSON
// snapshots (written before the binary format) start with '{', so the
// first byte tells them apart and old rows stay readable. v2 adds what
// revisions need: IngestHigh, each remembered id's fingerprint, the
// streams' alert runs and the revised event ids.
const (
	snapshotV1 = 0x01
	snapshotV2 = 0x02
)

// readingCodec decodes held readings from their original log bytes, which a
// snapshot keeps instead of a second copy of the decoded reading.
var readingCodec = schemas.MustCodec(schemas.NameReading)

// MarshalBinary encodes the aggregate compactly: varints, the stream keys
// written once and referred to by index, held readings as their original
// log bytes. It is the row the processor checkpoints for every changed
// user, so its size and speed bound the checkpoint cost; maps are written in
// iteration order, not sorted, for that reason.
func (a *Aggregate) MarshalBinary() ([]byte, error) {
	return a.AppendBinary(make([]byte, 0, 64+len(a.Seen)*40))
}

// AppendBinary appends what MarshalBinary returns to b (so that a
// checkpoint encodes every changed user through one buffer). It never
// fails.
func (a *Aggregate) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, snapshotV2)
	b = binary.AppendUvarint(b, uint64(a.Version))
	b = binary.AppendVarint(b, a.Newest)
	b = binary.AppendVarint(b, a.ErasedAt)
	b = binary.AppendVarint(b, a.IngestHigh)
	// A remembered id names its stream by the position the stream was
	// written at. Users have a few streams: finding one among them is
	// cheaper than hashing its key, and as the ids share their stream's
	// key string (see Stream.key) the comparison is mostly one of
	// pointers. Beyond a handful a map finds them.
	var small [8]string
	keys := small[:0]
	var index map[string]uint64
	if len(a.Streams) > len(small) {
		index = make(map[string]uint64, len(a.Streams))
	}
	b, keys = a.appendStreams(b, keys, index)
	b = a.appendSeen(b, keys, index)
	b = a.appendDevices(b)
	b = a.appendHeld(b)
	return a.appendRevised(b), nil
}

// appendStreams writes the streams, noting each key's position in index,
// or in keys (returned) if index is nil.
func (a *Aggregate) appendStreams(b []byte, keys []string, index map[string]uint64) ([]byte, []string) {
	b = binary.AppendUvarint(b, uint64(len(a.Streams)))
	for k, st := range a.Streams {
		if index != nil {
			index[k] = uint64(len(index))
		} else {
			keys = append(keys, k)
		}
		b = appendString(b, k)
		b = binary.AppendVarint(b, st.Newest)
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(st.Current))
		b = binary.AppendUvarint(b, uint64(len(st.Rate)))
		for m, n := range st.Rate {
			b = binary.AppendVarint(b, m)
			b = binary.AppendUvarint(b, uint64(n))
		}
		b = binary.AppendVarint(b, st.CondSince)
		if st.Raised {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendUvarint(b, uint64(len(st.Runs)))
		for _, run := range st.Runs {
			b = binary.AppendVarint(b, run.Since)
			b = binary.AppendVarint(b, run.RaisedAt)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(run.Value))
			b = binary.AppendVarint(b, run.Ended)
		}
	}
	return b, keys
}

// appendSeen writes the remembered ids, each naming its stream by the
// position appendStreams wrote it at.
func (a *Aggregate) appendSeen(b []byte, keys []string, index map[string]uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(a.Seen)))
	last := -1 // the position the previous id's stream was found at
	for id, s := range a.Seen {
		b = appendString(b, id)
		// Position+1 of a known stream, or 0 followed by the key itself.
		i, ok := uint64(0), false
		switch {
		case index != nil:
			i, ok = index[s.Stream]
		case last >= 0 && keys[last] == s.Stream:
			i, ok = uint64(last), true
		default:
			for j, k := range keys {
				if k == s.Stream {
					i, ok, last = uint64(j), true, j
					break
				}
			}
		}
		if ok {
			b = binary.AppendUvarint(b, i+1)
		} else {
			b = binary.AppendUvarint(b, 0)
			b = appendString(b, s.Stream)
		}
		b = binary.AppendVarint(b, s.At)
		b = binary.LittleEndian.AppendUint64(b, s.Print)
	}
	return b
}

func (a *Aggregate) appendDevices(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(a.Devices)))
	for d, ps := range a.Devices {
		b = appendString(b, d)
		b = binary.AppendUvarint(b, uint64(len(ps)))
		for _, p := range ps {
			b = binary.AppendVarint(b, p.From)
			b = binary.AppendVarint(b, p.To)
		}
	}
	return b
}

func (a *Aggregate) appendHeld(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(a.Held)))
	for _, h := range a.Held {
		b = binary.AppendVarint(b, int64(h.Partition))
		b = binary.AppendVarint(b, h.Offset)
		b = binary.AppendUvarint(b, uint64(len(h.Original)))
		b = append(b, h.Original...)
	}
	return b
}

// appendRevised writes the revised event ids.
func (a *Aggregate) appendRevised(b []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(a.Revised)))
	for id, rv := range a.Revised {
		b = appendString(b, id)
		b = binary.AppendVarint(b, rv.Revision)
		if rv.Withdrawn {
			b = append(b, 1)
		} else {
			b = append(b, 0)
		}
		b = binary.AppendVarint(b, rv.Measured)
		b = binary.AppendUvarint(b, uint64(len(rv.Prints)))
		for _, p := range rv.Prints {
			b = binary.AppendVarint(b, p.Revision)
			b = binary.LittleEndian.AppendUint64(b, p.Print)
		}
	}
	return b
}

// UnmarshalBinary decodes what MarshalBinary wrote, or a snapshot of an
// older release (binary v1 or JSON).
func (a *Aggregate) UnmarshalBinary(data []byte) error {
	*a = Aggregate{}
	if len(data) > 0 && data[0] == '{' {
		if err := json.Unmarshal(data, a); err != nil {
			return err
		}
		a.internKeys()
		return nil
	}
	if len(data) == 0 || (data[0] != snapshotV1 && data[0] != snapshotV2) {
		return errors.New("aggregate snapshot: unknown format")
	}
	d := decoder{b: data[1:], v2: data[0] == snapshotV2}
	a.Version = int64(d.uvarint())
	a.Newest = d.varint()
	a.ErasedAt = d.varint()
	if d.v2 {
		a.IngestHigh = d.varint()
	}
	n := d.count()
	// The keys' array is made here, where it does not outlive the call,
	// so that a few fit on the stack.
	keys := a.decodeStreams(&d, n, make([]string, 0, n))
	a.decodeSeen(&d, keys)
	a.decodeDevices(&d)
	if err := a.decodeHeld(&d); err != nil {
		return err
	}
	if d.v2 {
		a.decodeRevised(&d)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return d.err
}

// decodeStreams decodes n streams and returns their keys, appended to
// keys, in the order they were written.
func (a *Aggregate) decodeStreams(d *decoder, n int, keys []string) []string {
	if n > 0 {
		a.Streams = make(map[string]*Stream, n)
	}
	for range n {
		k := d.string()
		st := &Stream{Newest: d.varint(), Current: math.Float64frombits(d.uint64()), key: k}
		if m := d.count(); m > 0 {
			st.Rate = make(map[int64]int, m)
			for range m {
				minute := d.varint()
				st.Rate[minute] = int(d.uvarint())
			}
		}
		st.CondSince = d.varint()
		st.Raised = d.byte() == 1
		if d.v2 {
			if m := d.count(); m > 0 {
				st.Runs = make([]AlertRun, 0, m)
				for range m {
					st.Runs = append(st.Runs, AlertRun{Since: d.varint(), RaisedAt: d.varint(), Value: math.Float64frombits(d.uint64()), Ended: d.varint()})
				}
			}
		}
		keys = append(keys, k)
		a.Streams[k] = st
	}
	return keys
}

func (a *Aggregate) decodeSeen(d *decoder, keys []string) {
	n := d.count()
	if n == 0 {
		return
	}
	a.Seen = make(map[string]SeenEvent, n)
	for range n {
		id := d.string()
		var s SeenEvent
		if i := d.uvarint(); i == 0 {
			s.Stream = d.string()
		} else if i <= uint64(len(keys)) {
			s.Stream = keys[i-1]
		} else {
			d.fail()
		}
		s.At = d.varint()
		if d.v2 {
			s.Print = d.uint64()
		}
		a.Seen[id] = s
	}
}

func (a *Aggregate) decodeRevised(d *decoder) {
	n := d.count()
	if n == 0 {
		return
	}
	a.Revised = make(map[string]*Revised, n)
	for range n {
		id := d.string()
		rv := &Revised{Revision: d.varint(), Withdrawn: d.byte() == 1, Measured: d.varint()}
		if m := d.count(); m > 0 {
			rv.Prints = make([]RevisionPrint, 0, m)
			for range m {
				rv.Prints = append(rv.Prints, RevisionPrint{Revision: d.varint(), Print: d.uint64()})
			}
		}
		a.Revised[id] = rv
	}
}

func (a *Aggregate) decodeDevices(d *decoder) {
	n := d.count()
	if n == 0 {
		return
	}
	a.Devices = make(map[string][]Pairing, n)
	for range n {
		dev := d.string()
		m := d.count()
		ps := make([]Pairing, 0, m)
		for range m {
			ps = append(ps, Pairing{From: d.varint(), To: d.varint()})
		}
		a.Devices[dev] = ps
	}
}

// decodeHeld decodes the held readings from their original log bytes.
func (a *Aggregate) decodeHeld(d *decoder) error {
	n := d.count()
	if n == 0 {
		return nil
	}
	a.Held = make([]Held, 0, n)
	for range n {
		h := Held{Partition: int32(d.varint()), Offset: d.varint(), Original: []byte(d.string())}
		if d.err == nil {
			if err := readingCodec.Decode(h.Original, &h.Reading); err != nil {
				return fmt.Errorf("aggregate snapshot: held reading: %w", err)
			}
		}
		a.Held = append(a.Held, h)
	}
	return nil
}

// internKeys gives every stream its key and makes the remembered ids of a
// stream share that string, as Apply does; JSON decoding leaves neither.
func (a *Aggregate) internKeys() {
	for k, st := range a.Streams {
		if st != nil {
			st.key = k
		}
	}
	for id, s := range a.Seen {
		if st := a.Streams[s.Stream]; st != nil {
			s.Stream = st.key
			a.Seen[id] = s
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads a snapshot, remembering the first error so the decoding
// code reads straight through; every length is checked against what is
// left, so a corrupt row cannot make it allocate without bound.
type decoder struct {
	b   []byte
	err error
	v2  bool // the snapshot is v2 (snapshotV2)
}

var errTruncated = errors.New("aggregate snapshot: truncated or corrupt")

func (d *decoder) fail() {
	if d.err == nil {
		d.err = errTruncated
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 { return readVarint(d, binary.Uvarint) }

func (d *decoder) varint() int64 { return readVarint(d, binary.Varint) }

// readVarint reads one number with read, binary.Uvarint or binary.Varint.
func readVarint[T uint64 | int64](d *decoder, read func([]byte) (T, int)) T {
	v, n := read(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a collection length; every element takes at least one byte.
func (d *decoder) count() int {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *decoder) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) string() string {
	n := d.count()
	if d.err != nil {
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}
