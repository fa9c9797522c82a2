// Package export writes everything Vitals holds about one user as an HL7
// FHIR R4 Bundle, for the right of access and portability (GDPR Art. 15
// and 20): a Patient (birth year, sex, region), a Device per device the
// user paired (model, firmware), its pairing
// and status events as DeviceUseStatements, and an Observation per
// accepted reading with its LOINC code and UCUM unit. It reads the read
// model (ClickHouse), which holds every accepted reading and event of the
// user exactly as projected from the log; erased users are not there.
package export

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/metric"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// Bundle is a FHIR R4 Bundle of type collection.
type Bundle struct {
	ResourceType string  `json:"resourceType"`
	Type         string  `json:"type"`
	Timestamp    string  `json:"timestamp"`
	Total        int     `json:"total"`
	Entry        []Entry `json:"entry"`
}

// Entry is one resource of the bundle.
type Entry struct {
	FullURL  string `json:"fullUrl"`
	Resource any    `json:"resource"`
}

// Reference points at another resource of the bundle.
type Reference struct {
	Reference string `json:"reference"`
}

// Coding is a code in a code system.
type Coding struct {
	System  string `json:"system"`
	Code    string `json:"code"`
	Display string `json:"display,omitempty"`
}

// CodeableConcept is a set of codings.
type CodeableConcept struct {
	Coding []Coding `json:"coding"`
	Text   string   `json:"text,omitempty"`
}

// Quantity is a value with its UCUM unit.
type Quantity struct {
	Value  float64 `json:"value"`
	Unit   string  `json:"unit"`
	System string  `json:"system"`
	Code   string  `json:"code"`
}

// Identifier is an id in a namespace.
type Identifier struct {
	System string `json:"system"`
	Value  string `json:"value"`
}

// Period is a start and end.
type Period struct {
	Start string `json:"start"`
	End   string `json:"end,omitempty"`
}

// Component is a part of a paired observation (blood pressure).
type Component struct {
	Code          CodeableConcept `json:"code"`
	ValueQuantity *Quantity       `json:"valueQuantity,omitempty"`
}

// Observation is one accepted reading.
type Observation struct {
	ResourceType      string          `json:"resourceType"`
	ID                string          `json:"id"`
	Identifier        []Identifier    `json:"identifier"`
	Status            string          `json:"status"`
	Code              CodeableConcept `json:"code"`
	Subject           Reference       `json:"subject"`
	Device            *Reference      `json:"device,omitempty"`
	EffectiveDateTime string          `json:"effectiveDateTime,omitempty"`
	EffectivePeriod   *Period         `json:"effectivePeriod,omitempty"`
	ValueQuantity     *Quantity       `json:"valueQuantity,omitempty"`
	ValueString       string          `json:"valueString,omitempty"`
	Component         []Component     `json:"component,omitempty"`
}

// Patient is the user's profile.
type Patient struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id"`
	Identifier   []Identifier `json:"identifier"`
	Gender       string       `json:"gender,omitempty"`
	BirthDate    string       `json:"birthDate,omitempty"`
	Address      []Address    `json:"address,omitempty"`
}

// Address holds the user's region only.
type Address struct {
	Country string `json:"country,omitempty"`
	State   string `json:"state,omitempty"`
}

// Device is a device the user paired or reported.
type Device struct {
	ResourceType string       `json:"resourceType"`
	ID           string       `json:"id"`
	Identifier   []Identifier `json:"identifier"`
	Patient      Reference    `json:"patient"`
	ModelNumber  string       `json:"modelNumber,omitempty"`
	Version      []Version    `json:"version,omitempty"`
}

// Version is a device's firmware version.
type Version struct {
	Value string `json:"value"`
}

// DeviceUseStatement is one pairing or status event of a device.
type DeviceUseStatement struct {
	ResourceType   string       `json:"resourceType"`
	ID             string       `json:"id"`
	Identifier     []Identifier `json:"identifier"`
	Status         string       `json:"status"`
	Subject        Reference    `json:"subject"`
	Device         Reference    `json:"device"`
	TimingDateTime string       `json:"timingDateTime"`
	Note           []Annotation `json:"note,omitempty"`
}

// Annotation is a free-text note.
type Annotation struct {
	Text string `json:"text"`
}

// Systems of the identifiers and codes.
const (
	SystemEventID = "urn:vitals:event-id"
	SystemUserID  = "urn:vitals:user-id"
	SystemDevice  = "urn:vitals:device-id"
	SystemLOINC   = "http://loinc.org"
	SystemUCUM    = "http://unitsofmeasure.org"
)

// Export reads everything db holds about the tenant's user into a Bundle.
func Export(ctx context.Context, conn driver.Conn, db, tenant, user string) (*Bundle, error) {
	b := &Bundle{ResourceType: "Bundle", Type: "collection", Timestamp: time.Now().UTC().Format(time.RFC3339)}
	patientRef := "Patient/" + fhirID(user)
	p, err := patient(ctx, conn, db, tenant, user)
	if err != nil {
		return nil, err
	}
	b.add(patientRef, p)
	devs, uses, err := devices(ctx, conn, db, tenant, user, patientRef)
	if err != nil {
		return nil, err
	}
	for _, d := range devs {
		b.add("Device/"+d.ID, d)
	}
	for _, u := range uses {
		b.add("DeviceUseStatement/"+u.ID, u)
	}
	obs, err := observations(ctx, conn, db, tenant, user, patientRef)
	if err != nil {
		return nil, err
	}
	for _, o := range obs {
		b.add("Observation/"+o.ID, o)
	}
	b.Total = len(b.Entry)
	return b, nil
}

func (b *Bundle) add(ref string, r any) {
	b.Entry = append(b.Entry, Entry{FullURL: "urn:vitals:" + ref, Resource: r})
}

// fhirID makes an id FHIR accepts ([A-Za-z0-9\-\.]{1,64}) from one of ours.
func fhirID(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 64; i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.':
			out = append(out, c)
		default:
			out = append(out, '-')
		}
	}
	return string(out)
}

func ms(t int64) string { return time.UnixMilli(t).UTC().Format("2006-01-02T15:04:05.000Z") }

// patient folds the user's profile events, latest stated value winning.
func patient(ctx context.Context, conn driver.Conn, db, tenant, user string) (*Patient, error) {
	p := &Patient{ResourceType: "Patient", ID: fhirID(user), Identifier: []Identifier{{SystemUserID, user}}}
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT birth_year, sex, region FROM %s.%s
		WHERE tenant_id = ? AND user_id = ? ORDER BY occurred_at_ms, log_partition, log_offset`, db, warehouse.ProfileEventsTable), tenant, user)
	if err != nil {
		return nil, fmt.Errorf("export: profile: %w", err)
	}
	defer rows.Close()
	var region string
	for rows.Next() {
		var year int32
		var sex, reg string
		if err := rows.Scan(&year, &sex, &reg); err != nil {
			return nil, fmt.Errorf("export: profile: %w", err)
		}
		if year != 0 {
			p.BirthDate = fmt.Sprintf("%04d", year)
		}
		if sex != "" {
			p.Gender = map[string]string{"female": "female", "male": "male", "other": "other"}[sex]
			if p.Gender == "" {
				p.Gender = "unknown"
			}
		}
		if reg != "" {
			region = reg
		}
	}
	if region != "" {
		a := Address{Country: region}
		if len(region) > 2 && region[2] == '-' {
			a = Address{Country: region[:2], State: region}
		}
		p.Address = []Address{a}
	}
	return p, rows.Err()
}

// devices returns the user's devices (latest model and firmware stated)
// and every pairing or status event.
func devices(ctx context.Context, conn driver.Conn, db, tenant, user, patientRef string) ([]*Device, []*DeviceUseStatement, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT device_id, event_id, kind, model, firmware, occurred_at_ms FROM %s.%s
		WHERE tenant_id = ? AND user_id = ? ORDER BY occurred_at_ms, log_partition, log_offset`, db, warehouse.DeviceEventsTable), tenant, user)
	if err != nil {
		return nil, nil, fmt.Errorf("export: devices: %w", err)
	}
	defer rows.Close()
	byID := map[string]*Device{}
	var order []*Device
	var uses []*DeviceUseStatement
	for rows.Next() {
		var dev, ev, kind, model, fw string
		var at int64
		if err := rows.Scan(&dev, &ev, &kind, &model, &fw, &at); err != nil {
			return nil, nil, fmt.Errorf("export: devices: %w", err)
		}
		d := byID[dev]
		if d == nil {
			d = &Device{ResourceType: "Device", ID: fhirID("device-" + dev), Identifier: []Identifier{{SystemDevice, dev}}, Patient: Reference{patientRef}}
			byID[dev] = d
			order = append(order, d)
		}
		if model != "" {
			d.ModelNumber = model
		}
		if fw != "" {
			d.Version = []Version{{fw}}
		}
		status := map[string]string{"paired": "active", "unpaired": "completed"}[kind]
		if status == "" {
			status = "active"
		}
		uses = append(uses, &DeviceUseStatement{ResourceType: "DeviceUseStatement", ID: fhirID("device-event-" + ev),
			Identifier: []Identifier{{SystemEventID, ev}}, Status: status, Subject: Reference{patientRef},
			Device: Reference{"Device/" + d.ID}, TimingDateTime: ms(at), Note: []Annotation{{Text: kind}}})
	}
	return order, uses, rows.Err()
}

// observations returns the user's accepted readings, one per event id
// (copies collapse), in measurement order.
func observations(ctx context.Context, conn driver.Conn, db, tenant, user, patientRef string) ([]*Observation, error) {
	rows, err := conn.Query(ctx, fmt.Sprintf(`SELECT event_id, any(device_id), metric, any(value), any(second_value), any(stage),
			measured_at_ms, any(period_end_ms)
		FROM %s.%s WHERE tenant_id = ? AND user_id = ?
		GROUP BY event_id, metric, measured_at_ms ORDER BY measured_at_ms, event_id`, db, warehouse.ReadingsTable), tenant, user)
	if err != nil {
		return nil, fmt.Errorf("export: readings: %w", err)
	}
	defer rows.Close()
	var out []*Observation
	for rows.Next() {
		var ev, dev, name, stage string
		var v float64
		var second *float64
		var at, end int64
		if err := rows.Scan(&ev, &dev, &name, &v, &second, &stage, &at, &end); err != nil {
			return nil, fmt.Errorf("export: readings: %w", err)
		}
		out = append(out, observation(ev, dev, name, v, second, stage, at, end, patientRef))
	}
	return out, rows.Err()
}

func observation(ev, dev, name string, v float64, second *float64, stage string, at, end int64, patientRef string) *Observation {
	m, _ := metric.Lookup(name)
	o := &Observation{ResourceType: "Observation", ID: fhirID("obs-" + ev), Identifier: []Identifier{{SystemEventID, ev}},
		Status: "final", Subject: Reference{patientRef},
		Code: CodeableConcept{Coding: []Coding{{System: SystemLOINC, Code: m.LOINC, Display: name}}, Text: name}}
	if dev != "" {
		o.Device = &Reference{"Device/" + fhirID("device-"+dev)}
	}
	if end > 0 {
		o.EffectivePeriod = &Period{Start: ms(at), End: ms(end)}
	} else {
		o.EffectiveDateTime = ms(at)
	}
	q := &Quantity{Value: v, Unit: m.Unit, System: SystemUCUM, Code: m.Unit}
	switch {
	case m.Second != nil && second != nil:
		o.Component = []Component{
			{Code: CodeableConcept{Coding: []Coding{{System: SystemLOINC, Code: m.FirstLOINC}}}, ValueQuantity: q},
			{Code: CodeableConcept{Coding: []Coding{{System: SystemLOINC, Code: m.Second.LOINC}}},
				ValueQuantity: &Quantity{Value: *second, Unit: m.Unit, System: SystemUCUM, Code: m.Unit}},
		}
	case stage != "":
		o.ValueString = stage
	default:
		o.ValueQuantity = q
	}
	return o
}
