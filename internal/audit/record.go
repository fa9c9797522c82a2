// Package audit is the access audit trail: who read which person's or
// cohort's data, what they asked for, when, and what they were answered,
// denied requests included (HIPAA §164.312(b) audit controls).
//
// Every record is written to PostgreSQL before the answer it describes is
// sent: Middleware buffers a response, appends its record, and only then
// sends it; if the record cannot be written the caller gets 503 and no data.
// Commands that hand out a person's data (an export) append their record
// with Store.Append the same way, before they write the data out.
//
// Records never hold health values: only identifiers (tenant, token,
// user), the request's parameters and the number of rows answered.
//
// # Tamper evidence
//
// Each tenant's records form a hash chain: a record's Hash is SHA-256 over
// the previous record's Hash followed by the record's canonical encoding
// (Canonical), and the tenant's head row holds the newest sequence number
// and hash. Store.Verify recomputes every chain, so an edited, deleted or
// reordered record is found; only a rewrite of a whole chain's tail
// together with its head goes unnoticed, which is why `vitals audit verify`
// prints each head: kept elsewhere (a ticket, a signed e-mail), a head
// proves everything up to it. The table also refuses UPDATE, DELETE and
// TRUNCATE by trigger, so that only someone who disables the trigger on
// purpose can change it.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Outcomes of a record, from the HTTP status of the answer.
const (
	OutcomeOK       = "ok"       // 2xx: the data was served
	OutcomeDenied   = "denied"   // 401, 403, 429: the caller may not (or not now)
	OutcomeRejected = "rejected" // other 4xx: the request was invalid
	OutcomeFailed   = "failed"   // 5xx: nothing was served
)

// OutcomeOf classifies an HTTP status.
func OutcomeOf(status int) string {
	switch {
	case status >= 200 && status < 300:
		return OutcomeOK
	case status == 401 || status == 403 || status == 429:
		return OutcomeDenied
	case status >= 400 && status < 500:
		return OutcomeRejected
	}
	return OutcomeFailed
}

// Record is one access. Tenant, Seq, At, PrevHash and Hash are set by
// Store.Append; the rest describes the access.
type Record struct {
	// Tenant whose chain the record is in: the caller's tenant, or ""
	// when the caller could not be identified (no token, an unknown one).
	Tenant string `json:"tenant"`
	// Seq is the record's position in its tenant's chain, from 1.
	Seq int64 `json:"seq"`
	// At is when the record was appended (UTC, microseconds).
	At time.Time `json:"at"`
	// Actor identifies the caller: an analyst token's id, or for a command
	// "cmd:<os user>@<host>"; "" when none was presented.
	Actor string `json:"actor"`
	// ActorName is the token's name (vitals tokens create --name).
	ActorName string `json:"actor_name"`
	// Remote is the caller's IP address, for HTTP requests.
	Remote string `json:"remote"`
	// Action is what was done: the route pattern ("GET /v1/percentiles")
	// or a command ("export").
	Action string `json:"action"`
	// Target is the request as received (path and query), or what a
	// command was asked; never a credential.
	Target string `json:"target"`
	// User is the person whose data was asked for; "" for a cohort or the
	// whole tenant.
	User string `json:"user"`
	// Cohort is the cohort filters (e.g. "region=DE&sex=female"); "" for
	// none.
	Cohort string `json:"cohort"`
	// Metric is the metric asked for, if any.
	Metric string `json:"metric"`
	// From and To are the time range answered, if any.
	From *time.Time `json:"from"`
	To   *time.Time `json:"to"`
	// Rows is the number of readings the answer was computed from (an
	// export: the records it wrote); nil when the answer did not say.
	Rows *int64 `json:"rows"`
	// Status is the HTTP status of the answer (a command: 200 or 500).
	Status int `json:"status"`
	// Outcome is OutcomeOf(Status).
	Outcome string `json:"outcome"`
	// Code is the error code of a refused request (e.g. token_revoked).
	Code string `json:"code"`
	// PrevHash is the previous record's Hash (32 zero bytes for the
	// first); Hash is this record's.
	PrevHash []byte `json:"prev_hash"`
	Hash     []byte `json:"hash"`
}

// genesis is the PrevHash of every chain's first record.
var genesis = make([]byte, sha256.Size)

// timeLayout is how times are encoded for hashing: PostgreSQL keeps
// microseconds, so a record read back hashes as it was written.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func encodeTime(t *time.Time) *string {
	if t == nil {
		return nil
	}
	s := t.UTC().Format(timeLayout)
	return &s
}

// Canonical is the byte string a record's hash covers after PrevHash:
// compact JSON of every field but the hashes, in this order, times as
// RFC 3339 UTC with microseconds, without HTML escaping.
func (r Record) Canonical() []byte {
	fields := []struct {
		key   string
		value any
	}{
		{"tenant", r.Tenant}, {"seq", r.Seq}, {"at", r.At.UTC().Format(timeLayout)}, {"actor", r.Actor},
		{"actor_name", r.ActorName}, {"remote", r.Remote}, {"action", r.Action}, {"target", r.Target},
		{"user", r.User}, {"cohort", r.Cohort}, {"metric", r.Metric}, {"from", encodeTime(r.From)},
		{"to", encodeTime(r.To)}, {"rows", r.Rows}, {"status", r.Status}, {"outcome", r.Outcome}, {"code", r.Code},
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	b.WriteByte('{')
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + f.key + `":`)
		_ = enc.Encode(f.value) // strings, numbers and null cannot fail
		b.Truncate(b.Len() - 1) // Encode ends the value with a newline
	}
	b.WriteByte('}')
	return b.Bytes()
}

// ComputeHash is SHA-256(PrevHash || Canonical()).
func (r Record) ComputeHash() []byte {
	h := sha256.New()
	h.Write(r.PrevHash)
	h.Write(r.Canonical())
	return h.Sum(nil)
}

// normalize truncates the record's times to what PostgreSQL stores and
// bounds its free-text fields, so that the stored record hashes as the
// appended one did.
func (r *Record) normalize() {
	r.At = r.At.UTC().Truncate(time.Microsecond)
	for _, t := range []**time.Time{&r.From, &r.To} {
		if *t != nil {
			v := (**t).UTC().Truncate(time.Microsecond)
			*t = &v
		}
	}
	if r.Outcome == "" {
		r.Outcome = OutcomeOf(r.Status)
	}
	r.Target = clip(r.Target, maxTarget)
	r.Actor, r.ActorName, r.Remote = clip(r.Actor, 200), clip(r.ActorName, 200), clip(r.Remote, 100)
	r.Action, r.Code = clip(r.Action, 200), clip(r.Code, 100)
	r.User, r.Cohort, r.Metric = clip(r.User, 200), clip(r.Cohort, 1000), clip(r.Metric, 100)
}

// maxTarget bounds a stored request target.
const maxTarget = 2048

// clip makes s storable as PostgreSQL text (valid UTF-8 without NUL: a
// request can carry anything in a parameter it was refused for) and cuts
// it to at most n bytes.
func clip(s string, n int) string {
	s = strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") // drops a rune cut in half
}

// Problem is a break in a chain that Verify found.
type Problem struct {
	Tenant string
	Seq    int64
	Reason string
}

func (p Problem) String() string {
	return fmt.Sprintf("tenant %q record %d: %s", p.Tenant, p.Seq, p.Reason)
}
