// Package sampletest hands tests and benchmarks the bundled Fitbit sample,
// failing the test instead of returning an error, as httptest does for
// servers.
package sampletest

import (
	"testing"

	"github.com/vitalshq/vitals/internal/sample"
)

// HeartRates is every heart-rate reading of the sample; a sample that does
// not load fails tb at once.
func HeartRates(tb testing.TB) []sample.HeartRate {
	tb.Helper()
	rows, err := sample.HeartRates()
	if err != nil {
		tb.Fatalf("bundled sample: %v", err)
	}
	return rows
}
