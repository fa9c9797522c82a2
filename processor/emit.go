package processor

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// emit turns one outcome into output records. at is where the event being
// applied lies in the log; a released held reading carries its own place.
func (p *Processor) emit(b *batch, o *rules.Outcome, at *rules.Held) {
	src := at
	if o.Held != nil {
		src = o.Held
	}
	switch o.Decision {
	case rules.Duplicate:
		b.duplicates++
	case rules.Reject:
		b.rejected++
		b.count("reading", "rejected", o.Reason)
		rj := rules.Rejected(o, src.Partition, src.Offset, src.Original)
		b.output(p.cfg.Kafka.Topics.RejectedReadings, []byte(o.Reading.UserID), mustEncode(p.codecs.rejected, rj, "rejected reading"))
	case rules.Accept:
		b.accepted++
		var key []byte
		if o.Held == nil && o.Reading == b.fwdReading {
			key = p.forwardAccepted(b, o.Reading, src)
		} else {
			key = p.emitAccepted(b, o.Reading, src)
		}
		if o.Alert != nil {
			b.alerts++
			status := "" // raised, as counted before alerts had a lifecycle
			if o.Alert.Status != schemas.AlertRaised {
				status = o.Alert.Status
			}
			b.count("alert", o.Alert.Rule, status)
			b.output(p.cfg.Kafka.Topics.Alerts, key, mustEncode(p.codecs.alert, o.Alert, "alert"))
		}
	}
}

// emitAccepted appends the accepted reading rd becomes, encoded straight
// into the batch's memory (nearly every input record is one), and returns
// the output's key.
func (p *Processor) emitAccepted(b *batch, rd *schemas.Reading, src *rules.Held) []byte {
	rules.Accepted(&b.acc, rd, src.Partition, src.Offset)
	// Sealed, the plain message is only an input of output's sealing: it
	// is encoded into scratch memory, not the batch's.
	into := b.scratch[:0]
	if b.dk == nil {
		into = b.mem.room(p.accepted.bound(&b.acc))
	}
	buf, err := p.accepted.append(into, &b.acc)
	if err != nil {
		// The schema is ours and the values came from a decoded message;
		// failing here is a defect, and dropping silently would lose data.
		panic(fmt.Sprintf("encode accepted reading: %v", err))
	}
	val := buf
	if b.dk == nil {
		val = b.mem.take(buf)
	} else {
		b.scratch = buf
	}
	key := b.mem.bytes(rd.UserID)
	b.output(p.cfg.Kafka.Topics.AcceptedReadings, key, val)
	return key
}

// mustEncode encodes an output message. The schemas are ours and the
// values come from decoded messages, so failing is a defect: it panics
// rather than lose the output.
func mustEncode(c *schemas.Codec, v any, what string) []byte {
	val, err := c.Encode(v)
	if err != nil {
		panic(fmt.Sprintf("encode %s: %v", what, err))
	}
	return val
}

// batch collects one step's outputs and touched aggregates.
type batch struct {
	outputs []*kgo.Record
	touched []*cachedAggregate // users whose aggregate the step applied events to
	// counts counts the rarer outcomes by kind, outcome and reason; the
	// common ones (accepted, duplicate, held readings) have counters of
	// their own, so most records hash no strings for their metrics.
	counts                                               map[[3]string]int64
	accepted, rejected, duplicates, held, events, alerts int64
	shredded                                             int64 // records of erased users, whose key is gone

	// dk is the data key of the user whose record is being judged: every
	// output of the record is sealed with it (nil: in clear, only in the
	// Kafka-free tests of a step).
	dk      *userkeys.Key
	scratch []byte // plain messages about to be sealed
	// fwd is the record being judged if its accepted reading can be
	// forwarded (see rules.HeaderSource): a reading ingest sealed with dk;
	// fwdReading is its decoded reading. Nil otherwise.
	fwd        *kgo.Record
	fwdReading *schemas.Reading

	outs []rules.Outcome         // one record's outcomes, reused
	acc  schemas.AcceptedReading // the accepted reading being encoded, reused
	mem  outputMemory
}

func (b *batch) count(kind, outcome, reason string) { b.counts[[3]string{kind, outcome, reason}]++ }

// output appends an output record to the batch. Every output is made
// here; numbering it and choosing its partition come later (see number).
func (b *batch) output(topic string, key, value []byte) {
	if b.dk != nil && b.dk.Shredded() {
		return // the user was erased since the record was opened: nothing of theirs is written
	}
	out := b.mem.record()
	out.Topic, out.Key, out.Value = topic, key, value
	if b.dk != nil {
		out.Value = b.mem.take(b.dk.Seal(b.mem.room(len(value)+userkeys.Overhead), value, key))
		out.Headers = b.mem.sealHeaders(b.dk)
	}
	b.outputs = append(b.outputs, out)
}

// outputMemory hands out the records, headers and bytes of a step's
// outputs from chunks holding many of them, instead of allocating several
// objects per output. An output lives until the broker acknowledged it,
// about as long as the others of its step, so chunks are not held on to
// much longer than their outputs would be.
type outputMemory struct {
	recs []kgo.Record
	hdrs []kgo.RecordHeader
	buf  []byte
}

const (
	outputChunkRecords = 256
	outputChunkBytes   = 64 << 10
)

// record returns a zero record.
func (m *outputMemory) record() *kgo.Record {
	if len(m.recs) == cap(m.recs) {
		m.recs = make([]kgo.Record, 0, outputChunkRecords)
	}
	m.recs = m.recs[:len(m.recs)+1]
	return &m.recs[len(m.recs)-1]
}

// header returns a one-header list holding h.
func (m *outputMemory) header(h kgo.RecordHeader) []kgo.RecordHeader {
	if len(m.hdrs) == cap(m.hdrs) {
		m.hdrs = make([]kgo.RecordHeader, 0, outputChunkRecords)
	}
	m.hdrs = append(m.hdrs, h)
	n := len(m.hdrs)
	return m.hdrs[n-1 : n : n]
}

// room returns the byte chunk being filled with at least n bytes of
// capacity left; append to it, then pass the result to take.
func (m *outputMemory) room(n int) []byte {
	if cap(m.buf)-len(m.buf) < n {
		m.buf = make([]byte, 0, max(outputChunkBytes, n))
	}
	return m.buf
}

// take keeps what was appended to the chunk room returned and returns it.
// (Had an append outgrown the chunk, the result is a new array holding the
// chunk's bytes too, at the same positions: it becomes the chunk, and the
// slice returned is still right.)
func (m *outputMemory) take(b []byte) []byte {
	start := len(m.buf)
	m.buf = b
	return b[start:len(b):len(b)]
}

// bytes returns a copy of s in the chunk.
func (m *outputMemory) bytes(s string) []byte {
	return m.take(append(m.room(len(s)), s...))
}
