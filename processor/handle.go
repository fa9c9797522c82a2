package processor

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/internal/userkeys"
	"github.com/vitalshq/vitals/processor/rules"
	"github.com/vitalshq/vitals/schemas"
)

// A step handles one batch of records taken from the merge: decode them,
// load the users not in memory, judge each record against its user's
// aggregate (package rules), emit and number the outputs, send them, and
// note what the next checkpoint covers.

// decoded is one input record, decoded.
type decoded struct {
	rec     *kgo.Record
	kind    int
	reading *schemas.Reading
	device  *schemas.DeviceEvent
	profile *schemas.ProfileEvent
	key     UserKey
	user    *cachedAggregate // the user's aggregate, if decoded
	// dk is the user's data key (see sealing.go); shredded: the key was
	// shredded, the user erased; sealErr: the record did not open.
	dk       *userkeys.Key
	shredded bool
	sealErr  error
	plain    []byte // the record's value, opened
}

// decoded reports whether the record decoded as a message of its kind.
func (d *decoded) decoded() bool { return d.reading != nil || d.device != nil || d.profile != nil }

// handle applies records in merge order and sends their outputs; the next
// checkpoint waits for the outputs' acks before it commits the step.
func (p *Processor) handle(ctx context.Context, records []*kgo.Record) error {
	p.step++
	if err := p.loadRecordKeys(ctx, records); err != nil {
		return err // ctx ended before anything was applied: nothing to finish
	}
	p.plain = plainSlab(records)
	in, missing := p.decode(records)
	defer func() {
		// Let what the step decoded go, even if no step follows soon.
		clear(in)
		clear(p.readings)
		clear(p.recKeys)
		p.plain = nil
	}()
	p.dueInStep(in, missing)
	if err := p.keyUnsealed(ctx, in); err != nil {
		return err
	}
	for i := range in {
		if d := &in[i]; d.shredded {
			delete(missing, d.key) // an erased user's aggregate is not needed
		}
	}
	if err := p.loadUsers(ctx, in, missing); err != nil {
		return err // ctx ended before anything was applied: nothing to finish
	}
	b := batch{counts: make(map[[3]string]int64)}
	last := p.judgeAll(&b, in)
	p.send(b.outputs)
	p.markProcessed(last, b.touched)
	p.observe(&b, len(records))
	return nil
}

// decode decodes the step's records into p.in, and returns them with the
// users whose aggregate is not in memory.
func (p *Processor) decode(records []*kgo.Record) ([]decoded, map[UserKey]struct{}) {
	if cap(p.in) < len(records) {
		p.in = make([]decoded, len(records))
	}
	in := p.in[:len(records)]
	n := 0
	for i, r := range records {
		if in[i].kind = p.kindOf(r.Topic); in[i].kind == kindReading {
			n++
		}
	}
	// Nothing keeps a pointer to a decoded reading past the step (a held
	// reading is copied into its aggregate), so the step's readings take
	// turns in one slice.
	if cap(p.readings) < n {
		p.readings = make([]schemas.Reading, n)
	}
	p.readings = p.readings[:n]
	readings := p.readings
	missing := make(map[UserKey]struct{})
	for i, r := range records {
		d := &in[i]
		d.rec = r
		var rd *schemas.Reading
		if d.kind == kindReading {
			rd, readings = &readings[0], readings[1:]
		}
		var k *userkeys.Key
		if i < len(p.recKeys) {
			k = p.recKeys[i]
		}
		if !p.decodeRecord(d, rd, k) {
			continue
		}
		if d.user = p.users.get(d.key); d.user == nil {
			missing[d.key] = struct{}{}
		}
	}
	return in, missing
}

// decodeRecord decodes d.rec, sealed with k if loadRecordKeys found it, as
// a message of its kind (a reading into rd) and notes its user. It reports
// false if the record is unreadable.
func (p *Processor) decodeRecord(d *decoded, rd *schemas.Reading, k *userkeys.Key) bool {
	value, ok := p.open(d, k)
	if !ok {
		return false
	}
	d.plain = value
	var err error
	switch d.kind {
	case kindReading:
		if err = schemas.DecodeReading(p.codecs.reading, value, rd); err == nil {
			d.reading, d.key = rd, UserKey{rd.TenantID, rd.UserID}
		}
	case kindDevice:
		ev := new(schemas.DeviceEvent)
		if err = p.codecs.device.Decode(value, ev); err == nil {
			d.device, d.key = ev, UserKey{ev.TenantID, ev.UserID}
		}
	case kindProfile:
		ev := new(schemas.ProfileEvent)
		if err = p.codecs.profile.Decode(value, ev); err == nil {
			d.profile, d.key = ev, UserKey{ev.TenantID, ev.UserID}
		}
	}
	if err == nil && d.dk != nil && (d.dk.Tenant != d.key.Tenant || d.dk.User != d.key.User) {
		// Sealed with another user's key: nothing about it can be trusted.
		d.reading, d.device, d.profile = nil, nil, nil
		d.sealErr = userkeys.ErrSealed
		return false
	}
	return err == nil
}

// judgeAll judges the step's records in order and numbers their outputs.
// It returns the last offset applied per partition number and input kind,
// -1 for none.
func (p *Processor) judgeAll(b *batch, in []decoded) map[int32]*[kinds]int64 {
	// A step's records come partition by partition (see take), so the map
	// is consulted about once per partition.
	last := map[int32]*[kinds]int64{}
	lastPart, lastOffs := int32(-1), (*[kinds]int64)(nil)
	for i := range in {
		d := &in[i]
		from := len(b.outputs)
		p.tick(b, d)
		if c := d.user; c != nil {
			c.partition = d.rec.Partition
			if d.dk != nil {
				c.dk = d.dk
			}
			p.touch(b, c)
		}
		b.dk = d.dk
		b.forwardable(d)
		p.judge(b, d)
		if d.user != nil {
			p.setTimer(d.user)
		}
		part := d.rec.Partition
		p.number(b, b.outputs[from:], part)
		if lastOffs == nil || part != lastPart {
			if lastOffs = last[part]; lastOffs == nil {
				lastOffs = &[kinds]int64{-1, -1, -1}
				last[part] = lastOffs
			}
			lastPart = part
		}
		if d.kind >= 0 {
			lastOffs[d.kind] = d.rec.Offset
		}
	}
	return last
}

// touch lists c among the aggregates the step changed, once.
func (p *Processor) touch(b *batch, c *cachedAggregate) {
	if c.step != p.step {
		c.step = p.step
		b.touched = append(b.touched, c)
	}
}

// judge applies one decoded record to its user's aggregate and emits the
// outcomes; a record that did not decode is rejected as malformed.
func (p *Processor) judge(b *batch, d *decoded) {
	r := d.rec
	at := rules.Held{Partition: r.Partition, Offset: r.Offset, Original: d.plain}
	switch {
	case d.shredded:
		b.shredded++
		b.count(kindNames[max(d.kind, 0)], "shredded", "")
	case d.reading != nil:
		b.outs = d.user.agg.AppendReading(b.outs[:0], d.reading, &at, p.cfg.Rules)
		held := true
		for i := range b.outs {
			if b.outs[i].Held == nil {
				held = false
			}
			p.emit(b, &b.outs[i], &at)
		}
		if held {
			b.held++
		}
	case d.device != nil:
		b.events++
		b.count("device", "applied", d.device.Kind)
		outs := d.user.agg.ApplyDevice(d.device, p.cfg.Rules)
		for i := range outs {
			p.emit(b, &outs[i], &at)
		}
	case d.profile != nil:
		b.events++
		b.count("profile", "applied", d.profile.Kind)
		outs, erased := d.user.agg.ApplyProfile(d.profile)
		for i := range outs {
			p.emit(b, &outs[i], &at)
		}
		if erased {
			b.output(p.cfg.Kafka.Topics.Erasures, r.Key, mustEncode(p.codecs.erasure, rules.Erasure(d.profile), "erasure"))
		}
	case d.sealErr != nil:
		kind := kindNames[max(d.kind, 0)]
		b.rejected++
		b.count(kind, "rejected", ReasonUndecryptable)
		rj := rules.Malformed(kind, r.Key, r.Partition, r.Offset, r.Value)
		rj.Reason, rj.Message = ReasonUndecryptable, "the log record is sealed and does not open: "+d.sealErr.Error()
		b.output(p.cfg.Kafka.Topics.RejectedReadings, r.Key, mustEncode(p.codecs.rejected, rj, "rejected reading"))
	default:
		kind := kindNames[max(d.kind, 0)]
		b.rejected++
		b.count(kind, "rejected", ReasonMalformedEvent)
		rj := rules.Malformed(kind, r.Key, r.Partition, r.Offset, d.plain)
		b.output(p.cfg.Kafka.Topics.RejectedReadings, r.Key, mustEncode(p.codecs.rejected, rj, "rejected reading"))
	}
}

// markProcessed notes the positions the step reached and the users it
// changed, for the next checkpoint: it commits them once the step's
// outputs are acknowledged.
func (p *Processor) markProcessed(last map[int32]*[kinds]int64, touched []*cachedAggregate) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for part, offs := range last {
		for k, off := range offs {
			if off < 0 {
				continue
			}
			t := tp{p.topics[k], part}
			if _, owned := p.pos[t]; owned {
				p.processed[t] = off + 1
			}
		}
	}
	for _, c := range touched {
		p.users.markDirty(c)
	}
}

// observe adds the step's counts to the metrics and the running totals.
func (p *Processor) observe(b *batch, records int) {
	p.m.batchSize.Observe(float64(records))
	p.m.users.Set(float64(len(p.users.byKey)))
	for _, c := range []struct {
		outcome string
		n       int64
	}{{"accepted", b.accepted}, {"duplicate", b.duplicates}, {"held", b.held}} {
		if c.n > 0 {
			p.m.events.WithLabelValues("reading", c.outcome, "").Add(float64(c.n))
		}
	}
	for k, n := range b.counts {
		p.m.events.WithLabelValues(k[0], k[1], k[2]).Add(float64(n))
	}
	p.stats.mu.Lock()
	p.stats.Accepted += b.accepted
	p.stats.Rejected += b.rejected
	p.stats.Duplicates += b.duplicates
	p.stats.Events += b.events
	p.stats.Alerts += b.alerts
	p.stats.Shredded += b.shredded
	p.stats.Batch++
	p.stats.mu.Unlock()
	p.log.Debug().Int64("accepted", b.accepted).Int64("rejected", b.rejected).Int64("duplicates", b.duplicates).Int64("events", b.events).Msg("step applied")
}
