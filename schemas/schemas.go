// Package schemas holds the Avro schemas of every event Vitals writes to
// Kafka, and the codec that reads and writes them.
//
// Messages follow the Avro specification's single-object encoding: the two
// marker bytes 0xC3 0x01, the writer schema's 8-byte CRC-64-AVRO fingerprint
// (little-endian), then the Avro binary payload. Because every message names
// its writer schema, a consumer reading the log years later resolves the
// writer by fingerprint and reads it into the current Go type through Avro
// schema resolution. Every released version of a schema stays in this
// directory as NAME.vN.avsc; the highest N is the one written today.
//
// The codec (Codec, on hamba/avro) reads and writes any schema. The few
// messages on the hot paths also have hand-written codecs here, beside the
// schema version each implements (NAME_vN.go, see handwritten.go), which
// write and read the codec's bytes without its reflection; they are the
// only Avro written outside the codec.
package schemas

import (
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/hamba/avro/v2"
)

//go:embed *.avsc
var files embed.FS

// Names of the schemas, as in the file names NAME.vN.avsc.
const (
	NameReading         = "reading"
	NameAcceptedReading = "accepted_reading"
	NameRejectedReading = "rejected_reading"
	NameDeviceEvent     = "device_event"
	NameProfileEvent    = "profile_event"
	NameDeadLetter      = "dead_letter"
	NameAlert           = "alert"
	NameReadingBatch    = "reading_batch"
	NameErasure         = "erasure"
)

// Names lists every schema, for tests that check them all.
var Names = []string{NameReading, NameAcceptedReading, NameRejectedReading, NameDeviceEvent, NameProfileEvent, NameDeadLetter, NameAlert, NameReadingBatch, NameErasure}

// Reading is a device reading after ingest's syntax check.
type Reading struct {
	TenantID   string  `avro:"tenant_id"`
	EventID    string  `avro:"event_id"`
	UserID     string  `avro:"user_id"`
	DeviceID   string  `avro:"device_id"`
	GatewayID  string  `avro:"gateway_id"`
	Metric     string  `avro:"metric"`
	Value      float64 `avro:"value"`
	Unit       string  `avro:"unit"`
	MeasuredAt int64   `avro:"measured_at"` // epoch ms
	ReceivedAt int64   `avro:"received_at"` // epoch ms
	IngestedAt int64   `avro:"ingested_at"` // epoch ms
	// Since v2.
	PeriodEnd    *int64   `avro:"period_end"`   // epoch ms, interval metrics
	SecondValue  *float64 `avro:"second_value"` // diastolic
	Stage        *string  `avro:"stage"`        // sleep stage
	Sequence     *int64   `avro:"sequence"`
	SourceFormat string   `avro:"source_format"`
	// Since v3: a revision (correction or withdrawal) of the reading
	// with the same event id; 0 for the reading as first sent.
	Revision  int64 `avro:"revision"`
	Withdrawn bool  `avro:"withdrawn"`
}

// AcceptedReading is a reading the processor accepted, in canonical units.
type AcceptedReading struct {
	TenantID        string  `avro:"tenant_id"`
	EventID         string  `avro:"event_id"`
	UserID          string  `avro:"user_id"`
	DeviceID        string  `avro:"device_id"`
	GatewayID       string  `avro:"gateway_id"`
	Metric          string  `avro:"metric"`
	LOINC           string  `avro:"loinc"`
	Value           float64 `avro:"value"`
	Unit            string  `avro:"unit"`
	MeasuredAt      int64   `avro:"measured_at"`
	ReceivedAt      int64   `avro:"received_at"`
	IngestedAt      int64   `avro:"ingested_at"`
	SourcePartition int32   `avro:"source_partition"`
	SourceOffset    int64   `avro:"source_offset"`
	// Since v2.
	PeriodEnd   *int64   `avro:"period_end"`
	SecondValue *float64 `avro:"second_value"`
	Stage       *string  `avro:"stage"`
	Sequence    *int64   `avro:"sequence"`
	// Since v3: the input's revision; a record with Revision >= 1
	// replaces the version of the event id the read side holds (Withdrawn:
	// and adds none).
	Revision  int64 `avro:"revision"`
	Withdrawn bool  `avro:"withdrawn"`
}

// RejectedReading is a reading the processor refused, with its reason.
type RejectedReading struct {
	TenantID        string `avro:"tenant_id"`
	EventID         string `avro:"event_id"`
	UserID          string `avro:"user_id"`
	DeviceID        string `avro:"device_id"`
	Metric          string `avro:"metric"`
	MeasuredAt      int64  `avro:"measured_at"`
	Reason          string `avro:"reason"`
	Message         string `avro:"message"`
	SourcePartition int32  `avro:"source_partition"`
	SourceOffset    int64  `avro:"source_offset"`
	Original        []byte `avro:"original"`
}

// DeviceEvent is a pairing change or status report of a user's device.
type DeviceEvent struct {
	TenantID   string   `avro:"tenant_id"`
	EventID    string   `avro:"event_id"`
	UserID     string   `avro:"user_id"`
	DeviceID   string   `avro:"device_id"`
	GatewayID  string   `avro:"gateway_id"`
	Kind       string   `avro:"kind"` // paired, unpaired, status
	Model      *string  `avro:"model"`
	Firmware   *string  `avro:"firmware"`
	BatteryPct *float64 `avro:"battery_pct"`
	OccurredAt int64    `avro:"occurred_at"`
	ReceivedAt int64    `avro:"received_at"`
	IngestedAt int64    `avro:"ingested_at"`
}

// ProfileEvent is a user's profile change or erasure request.
type ProfileEvent struct {
	TenantID   string  `avro:"tenant_id"`
	EventID    string  `avro:"event_id"`
	UserID     string  `avro:"user_id"`
	GatewayID  string  `avro:"gateway_id"`
	Kind       string  `avro:"kind"` // registered, updated, erasure_requested
	BirthYear  *int32  `avro:"birth_year"`
	Sex        *string `avro:"sex"`
	Region     *string `avro:"region"`
	OccurredAt int64   `avro:"occurred_at"`
	ReceivedAt int64   `avro:"received_at"`
	IngestedAt int64   `avro:"ingested_at"`
}

// DeadLetter is an item ingest refused, with its original bytes.
type DeadLetter struct {
	TenantID    string `avro:"tenant_id"`
	GatewayID   string `avro:"gateway_id"`
	UserID      string `avro:"user_id"`
	EventID     string `avro:"event_id"`
	Endpoint    string `avro:"endpoint"`
	ItemIndex   int32  `avro:"item_index"`
	Reason      string `avro:"reason"`
	Field       string `avro:"field"`
	Message     string `avro:"message"`
	ContentType string `avro:"content_type"`
	Original    []byte `avro:"original"`
	ReceivedAt  int64  `avro:"received_at"`
}

// Alert is a condition a stateful rule found in accepted readings.
type Alert struct {
	TenantID   string  `avro:"tenant_id"`
	EventID    string  `avro:"event_id"`
	UserID     string  `avro:"user_id"`
	DeviceID   string  `avro:"device_id"`
	GatewayID  string  `avro:"gateway_id"`
	Metric     string  `avro:"metric"`
	Rule       string  `avro:"rule"`
	Severity   string  `avro:"severity"`
	MeasuredAt int64   `avro:"measured_at"`
	StartedAt  int64   `avro:"started_at"`
	ReceivedAt int64   `avro:"received_at"`
	Value      float64 `avro:"value"`
	Message    string  `avro:"message"`
	// Since v2: the lifecycle. AlertID is shared by an alert's events
	// (empty in v1, where it is EventID); Status is raised, resolved or
	// withdrawn; StatusAt the measurement time of the reading that caused
	// it; RecordedAt when ingest received that reading.
	AlertID    string `avro:"alert_id"`
	Status     string `avro:"status"`
	StatusAt   int64  `avro:"status_at"`
	RecordedAt int64  `avro:"recorded_at"`
}

// Alert statuses.
const (
	AlertRaised    = "raised"
	AlertResolved  = "resolved"
	AlertWithdrawn = "withdrawn"
)

// ID is the alert the event belongs to: AlertID, or EventID for a v1
// message (v1 alerts were raised only, with the alert's id as event id).
func (a *Alert) ID() string {
	if a.AlertID == "" {
		return a.EventID
	}
	return a.AlertID
}

// Erasure tells the read models to delete a user's rows.
type Erasure struct {
	TenantID    string `avro:"tenant_id"`
	EventID     string `avro:"event_id"`
	UserID      string `avro:"user_id"`
	GatewayID   string `avro:"gateway_id"`
	RequestedAt int64  `avro:"requested_at"`
	ReceivedAt  int64  `avro:"received_at"`
}

// ReadingBatch is a gateway's Avro batch of readings (the wire form of
// POST /v1/readings with an Avro body).
type ReadingBatch struct {
	GatewayID string           `avro:"gateway_id"`
	TenantID  *string          `avro:"tenant_id"`
	Readings  []GatewayReading `avro:"readings"`
}

// GatewayReading is one reading of a ReadingBatch.
type GatewayReading struct {
	EventID    string   `avro:"event_id"`
	UserID     string   `avro:"user_id"`
	DeviceID   string   `avro:"device_id"`
	Metric     string   `avro:"metric"`
	Value      *float64 `avro:"value"`
	Unit       string   `avro:"unit"`
	MeasuredAt int64    `avro:"measured_at"`
	ReceivedAt *int64   `avro:"received_at"`
	PeriodEnd  *int64   `avro:"period_end"`
	Diastolic  *float64 `avro:"diastolic"`
	Stage      *string  `avro:"stage"`
	Sequence   *int64   `avro:"sequence"`
	// Since v2: a revision of the reading with the same event id (nil or
	// 0: the reading as first sent), and whether it withdraws it.
	Revision  *int64 `avro:"revision"`
	Withdrawn *bool  `avro:"withdrawn"`
}

// MaxArrayItems bounds the element count of any array a decoder will
// allocate: an untrusted message cannot claim a billion elements in a few
// bytes and exhaust memory. Batches are far smaller (ingest allows 5,000).
const MaxArrayItems = 65536

// api is the Avro configuration of every codec: the defaults plus the
// allocation bounds above (strings and bytes stay capped at 1 MiB).
var api = avro.Config{MaxSliceAllocSize: MaxArrayItems}.Freeze()

// magic is the single-object encoding marker.
var magic = [2]byte{0xC3, 0x01}

// headerLen is the marker plus the 8-byte fingerprint.
const headerLen = 10

// Errors a decoder can return; match them with errors.Is.
var (
	ErrNotSingleObject = errors.New("not an Avro single-object message")
	ErrUnknownSchema   = errors.New("unknown writer schema fingerprint")
)

// Version is one released version of a schema.
type Version struct {
	Name        string
	Number      int
	Schema      avro.Schema
	Fingerprint uint64 // CRC-64-AVRO of the parsing canonical form
}

// Codec encodes one kind of event with its current schema and decodes any
// released version of it. It is safe for concurrent use.
type Codec struct {
	name     string
	current  Version
	header   [headerLen]byte
	versions map[uint64]Version

	mu       sync.RWMutex
	resolved map[uint64]avro.Schema // writer fingerprint -> reader schema resolved against it
}

// Versions lists the released versions of a schema, oldest first.
func Versions(name string) ([]Version, error) {
	entries, err := fs.Glob(files, name+".v*.avsc")
	if err != nil {
		return nil, err
	}
	var out []Version
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(e, name+".v"), ".avsc"))
		if err != nil {
			return nil, fmt.Errorf("schema file %s: bad version: %w", e, err)
		}
		raw, err := files.ReadFile(e)
		if err != nil {
			return nil, err
		}
		// A fresh cache per file: two versions share a full name, and the
		// global cache would hand the first one back for the second.
		s, err := avro.ParseBytesWithCache(raw, "", &avro.SchemaCache{})
		if err != nil {
			return nil, fmt.Errorf("schema file %s: %w", e, err)
		}
		fp, err := s.FingerprintUsing(avro.CRC64AvroLE)
		if err != nil {
			return nil, fmt.Errorf("schema file %s: fingerprint: %w", e, err)
		}
		out = append(out, Version{Name: name, Number: n, Schema: s, Fingerprint: binary.LittleEndian.Uint64(fp)})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no schema named %q", name)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Number < out[j].Number })
	return out, nil
}

// NewCodec returns the codec for the named schema; it writes the newest version.
func NewCodec(name string) (*Codec, error) {
	vs, err := Versions(name)
	if err != nil {
		return nil, err
	}
	c := &Codec{
		name:     name,
		current:  vs[len(vs)-1],
		versions: make(map[uint64]Version, len(vs)),
		resolved: make(map[uint64]avro.Schema),
	}
	c.header = singleObjectHeader(c.current.Fingerprint)
	for _, v := range vs {
		c.versions[v.Fingerprint] = v
	}
	return c, nil
}

// MustCodec is NewCodec for schemas embedded in this package, whose absence
// is a build defect rather than a runtime condition.
func MustCodec(name string) *Codec {
	c, err := NewCodec(name)
	if err != nil {
		panic(err)
	}
	return c
}

// Current is the version this codec writes.
func (c *Codec) Current() Version { return c.current }

// Append encodes v with the current schema and appends the single-object
// message to dst.
func (c *Codec) Append(dst []byte, v any) ([]byte, error) {
	payload, err := api.Marshal(c.current.Schema, v)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", c.name, err)
	}
	dst = append(dst, c.header[:]...)
	return append(dst, payload...), nil
}

// Encode returns v as a single-object message in the current schema.
func (c *Codec) Encode(v any) ([]byte, error) { return c.Append(nil, v) }

// Decode reads a single-object message written with any released version of
// this codec's schema into v, resolving the writer schema to the current one.
func (c *Codec) Decode(msg []byte, v any) error {
	if len(msg) < headerLen || msg[0] != magic[0] || msg[1] != magic[1] {
		return fmt.Errorf("decode %s: %w", c.name, ErrNotSingleObject)
	}
	fp := binary.LittleEndian.Uint64(msg[2:headerLen])
	s, err := c.readerFor(fp)
	if err != nil {
		return err
	}
	if err := api.Unmarshal(s, msg[headerLen:], v); err != nil {
		return fmt.Errorf("decode %s (writer v%d): %w", c.name, c.versions[fp].Number, err)
	}
	return nil
}

// readerFor returns the schema to decode a payload written with the schema
// whose fingerprint is fp.
func (c *Codec) readerFor(fp uint64) (avro.Schema, error) {
	if fp == c.current.Fingerprint {
		return c.current.Schema, nil
	}
	c.mu.RLock()
	s, ok := c.resolved[fp]
	c.mu.RUnlock()
	if ok {
		return s, nil
	}
	w, ok := c.versions[fp]
	if !ok {
		return nil, fmt.Errorf("decode %s: %w %016x", c.name, ErrUnknownSchema, fp)
	}
	s, err := avro.NewSchemaCompatibility().Resolve(c.current.Schema, w.Schema)
	if err != nil {
		return nil, fmt.Errorf("decode %s: resolve v%d against v%d: %w", c.name, w.Number, c.current.Number, err)
	}
	c.mu.Lock()
	c.resolved[fp] = s
	c.mu.Unlock()
	return s, nil
}
