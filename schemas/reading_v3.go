package schemas

// readingV3 is the version AppendReading writes and DecodeReading reads
// by hand: reading.v3.avsc.
var (
	readingV3       = mustHandWritten(NameReading, 3)
	readingV3Stages = readingV3.enumSymbols("stage")
)

// AppendReading appends rd to dst as c's single-object message: reading
// v3 written by hand when that is c's current version (the bytes the codec
// writes, without its reflection and allocations), else through c.
func AppendReading(c *Codec, dst []byte, rd *Reading) ([]byte, error) {
	if !readingV3.writes(c) {
		v := *rd // a copy escapes to the codec, not the caller's reading
		return c.Append(dst, &v)
	}
	a := acceptedOf(rd)
	return appendV3(dst, &a, false, rd.SourceFormat)
}

// DecodeReading decodes c's single-object message msg into rd, which it
// resets first: reading v3 read by hand when that is c's current version
// and msg's, else through c, whose errors (and resolution of older
// versions) are the answer. Its strings share msg's bytes, as the codec's
// do, so msg must not change while rd is in use. It is the processor's
// decoding of every logged reading.
func DecodeReading(c *Codec, msg []byte, rd *Reading) error {
	*rd = Reading{}
	if readingV3.reads(c, msg) && readReadingV3(msg[headerLen:], rd) {
		return nil
	}
	*rd = Reading{} // a fast path that stopped may have set some fields
	return c.Decode(msg, rd)
}

// DecodeFlatReading decodes c's single-object message msg, a reading, into
// f as it was sent: the value and unit as the gateway gave them, no LOINC
// code, no source position (rules.AcceptFlat makes it the accepted reading
// it becomes). Reading v3 is read by hand when that is c's current version
// and msg's, allocating nothing, its strings sharing msg's bytes; anything
// else goes through c, whose results and errors are the answer.
func DecodeFlatReading(c *Codec, msg []byte, f *FlatAcceptedReading) error {
	if readingV3.reads(c, msg) && readFlatV3(msg[headerLen:], f, false, nil) {
		return nil
	}
	return decodeFlat(c, msg, f, flattenReading)
}

// flattenReading sets f to rd as it was sent (see DecodeFlatReading).
func flattenReading(rd *Reading, f *FlatAcceptedReading) {
	a := acceptedOf(rd)
	FlattenAccepted(&a, f)
}

// acceptedOf is rd as an accepted reading as it was sent: its value and
// unit as the gateway gave them, no LOINC code, no source position. Its
// pointers are rd's.
func acceptedOf(rd *Reading) AcceptedReading {
	return AcceptedReading{TenantID: rd.TenantID, EventID: rd.EventID, UserID: rd.UserID, DeviceID: rd.DeviceID,
		GatewayID: rd.GatewayID, Metric: rd.Metric, Value: rd.Value, Unit: rd.Unit, MeasuredAt: rd.MeasuredAt,
		ReceivedAt: rd.ReceivedAt, IngestedAt: rd.IngestedAt, PeriodEnd: rd.PeriodEnd, SecondValue: rd.SecondValue,
		Stage: rd.Stage, Sequence: rd.Sequence, Revision: rd.Revision, Withdrawn: rd.Withdrawn}
}

// readReadingV3 reads a reading v3 payload into rd; see readFlatV3.
func readReadingV3(payload []byte, rd *Reading) bool {
	var f FlatAcceptedReading
	if !readFlatV3(payload, &f, false, &rd.SourceFormat) {
		return false
	}
	rd.TenantID, rd.EventID, rd.UserID, rd.DeviceID, rd.GatewayID = f.TenantID, f.EventID, f.UserID, f.DeviceID, f.GatewayID
	rd.Metric, rd.Value, rd.Unit = f.Metric, f.Value, f.Unit
	rd.MeasuredAt, rd.ReceivedAt, rd.IngestedAt = f.MeasuredAt, f.ReceivedAt, f.IngestedAt
	rd.Revision, rd.Withdrawn = f.Revision, f.Withdrawn
	rd.PeriodEnd = ptrIf(f.HasPeriodEnd, f.PeriodEnd)
	rd.SecondValue = ptrIf(f.HasSecondValue, f.SecondValue)
	rd.Stage = ptrIf(f.HasStage, f.Stage)
	rd.Sequence = ptrIf(f.HasSequence, f.Sequence)
	return true
}

// ptrIf returns a pointer to a copy of v if has, else nil: an optional
// field from a flat one.
func ptrIf[T any](has bool, v T) *T {
	if !has {
		return nil
	}
	return new(v) // allocated here, not for every call inlined
}

// deref is *p and true, or T's zero value and false for nil: a flat
// optional field from a pointer.
func deref[T any](p *T) (T, bool) {
	if p == nil {
		var zero T
		return zero, false
	}
	return *p, true
}
