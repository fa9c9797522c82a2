// Package sample bundles a small slice of the public-domain Fitbit Fitness
// Tracker Data (Fitabase, 2016; Kaggle "FitBit Fitness Tracker Data", CC0)
// for the demo and the tests: one day of second-level heart rate for each of
// the eight users in the second export period (data/README.md says which).
//
// The export's times are naive device-local times; Vitals files them as UTC
// because the dataset does not say the users' time zones.
package sample

import (
	"bytes"
	"compress/gzip"
	_ "embed"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"
)

//go:embed data/heartrate_seconds_sample.csv.gz
var heartRateGz []byte

// HeartRate is one row of the export: a user's heart rate at a second.
type HeartRate struct {
	FitbitID string    // the dataset's numeric user id
	Time     time.Time // UTC
	Value    float64   // beats per minute
}

// UserID is the pseudonymous Vitals user id of the row's user.
func (h HeartRate) UserID() string { return "fitbit-" + h.FitbitID }

// DeviceID names the user's tracker; the export has one per user.
func (h HeartRate) DeviceID() string { return "fitbit-" + h.FitbitID + "-tracker" }

// EventID is deterministic, so posting the sample twice repeats the same
// events and the processor counts each once.
func (h HeartRate) EventID() string {
	return "fitbit-" + h.FitbitID + "-hr-" + strconv.FormatInt(h.Time.UnixMilli(), 10)
}

// exportTime is the export's time layout, e.g. "5/2/2016 7:06:00 AM".
const exportTime = "1/2/2006 3:04:05 PM"

// HeartRates returns the bundled heart-rate rows in file order.
func HeartRates() ([]HeartRate, error) {
	zr, err := gzip.NewReader(bytes.NewReader(heartRateGz))
	if err != nil {
		return nil, fmt.Errorf("sample: %w", err)
	}
	return ParseHeartRates(zr)
}

// ParseHeartRates reads heartrate_seconds_merged.csv rows (Id,Time,Value).
func ParseHeartRates(r io.Reader) ([]HeartRate, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 3
	cr.ReuseRecord = true
	if _, err := cr.Read(); err != nil { // header
		return nil, fmt.Errorf("sample: header: %w", err)
	}
	var out []HeartRate
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("sample: line %d: %w", line, err)
		}
		t, err := time.ParseInLocation(exportTime, rec[1], time.UTC)
		if err != nil {
			return nil, fmt.Errorf("sample: line %d: time: %w", line, err)
		}
		v, err := strconv.ParseFloat(rec[2], 64)
		if err != nil {
			return nil, fmt.Errorf("sample: line %d: value: %w", line, err)
		}
		out = append(out, HeartRate{FitbitID: rec[0], Time: t, Value: v})
	}
}
