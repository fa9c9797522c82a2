package ingest

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/schemas"
)

// The steps of a batch request after authentication (serveBatch): the
// body and a server slot, the batch's own checks, judging every item into
// a record, sealing, producing, and the answer.

// admitBody reads the body and takes one of the server's slots, or writes
// the refusal. The caller releases the slot (<-s.inflight) when ok.
func (s *Server) admitBody(w http.ResponseWriter, r *http.Request) (body []byte, ok bool) {
	body, err := s.readBody(w, r)
	if err != nil {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "request body exceeds %d bytes", s.cfg.MaxBodyBytes)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			writeError(w, http.StatusRequestTimeout, "body_too_slow", "the body arrived more slowly than %d bytes/s; send it at once", s.cfg.MinBodyRate)
		default:
			writeError(w, http.StatusBadRequest, "unreadable_body", "could not read the request body")
		}
		return nil, false
	}
	select {
	case s.inflight <- struct{}{}:
		return body, true
	default:
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, "overloaded", "too many concurrent batches; retry shortly")
		return nil, false
	}
}

// checkBatch applies the checks that refuse a whole batch: the gateway,
// the tenant a body names, the item count, and the tenant's item rate.
func (s *Server) checkBatch(d *decodedBatch, key Key) *apiError {
	if rej := checkID("gateway_id", d.gateway); rej != nil {
		return badRequest(rej.Reason, "%s", rej.Message)
	}
	if d.tenant != nil && *d.tenant != key.Tenant {
		return &apiError{status: http.StatusForbidden, code: "tenant_mismatch", message: "the body names a tenant other than the API key's"}
	}
	if d.n == 0 {
		return badRequest("empty_batch", "the batch holds no items")
	}
	if d.n > s.cfg.MaxBatchItems {
		return &apiError{status: http.StatusRequestEntityTooLarge, code: "batch_too_large",
			message: "the batch holds " + strconv.Itoa(d.n) + " items; the limit is " + strconv.Itoa(s.cfg.MaxBatchItems)}
	}
	spent, refused := s.tenantItems.Admit(key.Tenant, d.n)
	if refused != nil {
		return &apiError{refusal: refused}
	}
	spent() // a rate only: nothing is held
	return nil
}

// judgedBatch is a batch judged: each item's verdict, and the records to
// produce with the item each comes from and the user whose key seals it.
type judgedBatch struct {
	n        int
	resp     BatchResponse
	records  []*kgo.Record
	recIndex []int
	recUsers []string       // "" for none
	reasons  map[string]int // rejections by reason
}

// reject counts one rejection of reason.
func (b *judgedBatch) reject(reason string) {
	b.resp.Rejected++
	if b.reasons == nil {
		b.reasons = make(map[string]int)
	}
	b.reasons[reason]++
}

// judgeBatch judges every item: an accepted one becomes a record of topic,
// a rejected one a dead letter.
func (s *Server) judgeBatch(d *decodedBatch, key Key, endpoint, topic, contentType string) judgedBatch {
	receivedAt := s.now()
	cc := checkContext{tenant: key.Tenant, gateway: d.gateway, format: d.format, now: receivedAt, lim: s.cfg.Limits,
		readings: s.readings, items: d.n}
	b := judgedBatch{n: d.n, resp: BatchResponse{Items: make([]ItemVerdict, d.n)},
		records: make([]*kgo.Record, 0, d.n), recIndex: make([]int, 0, d.n), recUsers: make([]string, 0, d.n)}
	// One allocation each for the records and their keys instead of two
	// per item. The broker client may hold a record past this request
	// (one it did not answer in time), so nothing here is reused.
	slab := make([]kgo.Record, d.n)
	keys := make([]byte, 0, d.n*24)
	keyOf := func(k string) []byte {
		keys = append(keys, k...)
		return keys[len(keys)-len(k) : len(keys) : len(keys)]
	}
	add := func(i int, rec kgo.Record, user string) {
		slab[i] = rec
		b.records = append(b.records, &slab[i])
		b.recIndex = append(b.recIndex, i)
		b.recUsers = append(b.recUsers, user)
	}
	for i := range d.n {
		it := d.judge(i, &cc)
		if it.rej == nil {
			b.resp.Items[i] = ItemVerdict{Index: i, Status: StatusAccepted, EventID: it.event}
			// One timestamp for the whole request: the processor merges a
			// user's readings, device and profile events by it, in the
			// same order on every replay.
			add(i, kgo.Record{Topic: topic, Key: keyOf(it.user), Value: it.value, Timestamp: receivedAt}, it.user)
			continue
		}
		b.resp.Items[i] = ItemVerdict{Index: i, Status: StatusRejected, EventID: it.event, Reason: it.rej.Reason, Field: it.rej.Field, Message: it.rej.Message}
		b.reject(it.rej.Reason)
		dl, err := s.deadLetters.Encode(&schemas.DeadLetter{
			TenantID: key.Tenant, GatewayID: d.gateway, UserID: it.user, EventID: it.event, Endpoint: endpoint,
			ItemIndex: int32(i), Reason: it.rej.Reason, Field: it.rej.Field, Message: it.rej.Message,
			ContentType: contentType, Original: it.raw, ReceivedAt: receivedAt.UnixMilli(),
		})
		if err != nil {
			s.log.Error().Err(err).Msg("encode dead letter") // a defect: the schema is ours
			continue
		}
		k := it.user
		if k == "" {
			k = d.gateway
		}
		add(i, kgo.Record{Topic: s.cfg.Kafka.Topics.DeadLetters, Key: keyOf(k), Value: dl, Timestamp: receivedAt}, it.user)
	}
	return b
}

// sealBatch seals b's records with their users' keys and rejects the
// accepted items of erased users, whose records it leaves out.
func (s *Server) sealBatch(ctx context.Context, tenant string, b *judgedBatch) error {
	sl, err := sealRecords(ctx, s.sealer, tenant, b.records, b.recIndex, b.recUsers)
	if err != nil {
		return err
	}
	b.records, b.recIndex = sl.records, sl.recIndex
	for _, i := range sl.erased {
		if it := &b.resp.Items[i]; it.Status == StatusAccepted {
			*it = ItemVerdict{Index: i, Status: StatusRejected, EventID: it.EventID, Reason: ReasonUserErased,
				Message: "the user asked for erasure; nothing of theirs is stored any more"}
			b.reject(ReasonUserErased)
		}
	}
	return nil
}

// answerBatch writes the answer once the broker has answered for every
// record: 200 with each item's verdict, or 503 with the items not stored.
func (s *Server) answerBatch(w http.ResponseWriter, endpoint, topic string, b *judgedBatch, outcomes []int, firstErr error) {
	resp := &b.resp
	failed := 0
	for j, o := range outcomes {
		if o == produced {
			continue
		}
		failed++
		if it := &resp.Items[b.recIndex[j]]; it.Status == StatusAccepted {
			it.Status = StatusNotSaved
			if o == pending {
				it.Status = StatusUnconfirmed
			}
		}
	}
	for _, it := range resp.Items {
		if it.Status == StatusAccepted {
			resp.Accepted++
		}
	}
	resp.ConsistencyToken = consistencyToken(topic, b.records, outcomes)
	s.m.items.WithLabelValues(endpoint, StatusAccepted, "").Add(float64(resp.Accepted))
	for reason, n := range b.reasons {
		s.m.items.WithLabelValues(endpoint, StatusRejected, reason).Add(float64(n))
	}
	if failed == 0 {
		writeBatchResponse(w, resp)
		return
	}
	s.m.items.WithLabelValues(endpoint, "not_confirmed", "").Add(float64(b.n - resp.Accepted - resp.Rejected))
	s.log.Warn().Err(firstErr).Str("endpoint", endpoint).Int("failed", failed).Int("stored", resp.Accepted).Msg("produce failed; answering 503")
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeJSON(w, http.StatusServiceUnavailable, struct {
		APIError
		BatchResponse
	}{APIError{Code: "log_unavailable", Message: "the event log did not acknowledge every record in time; items marked not_stored were not saved, items marked unconfirmed may or may not have been, and rejected items may not have reached the dead-letter topic: retry the batch (repeats are dropped by event_id)"}, *resp})
}
