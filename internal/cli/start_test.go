package cli

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

func TestConstructRetriesUntilStartedOrOutOfTime(t *testing.T) {
	down := errors.New("connection refused")
	for _, tc := range []struct {
		name     string
		failures int // tries that fail before one succeeds
		timeout  time.Duration
		wantErr  bool
		wantTry  int
	}{
		{"up at once", 0, time.Second, false, 1},
		{"up after an outage", 2, 5 * time.Second, false, 3},
		{"still down when time is up", 100, 600 * time.Millisecond, true, 2},
		{"no retries with timeout 0", 100, 0, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries := 0
			v, err := construct(context.Background(), zerolog.Nop(), "role", tc.timeout, func(context.Context) (int, error) {
				tries++
				if tries <= tc.failures {
					return 0, down
				}
				return 42, nil
			})
			if (err != nil) != tc.wantErr || tries != tc.wantTry {
				t.Fatalf("err %v after %d tries; want error %v after %d", err, tries, tc.wantErr, tc.wantTry)
			}
			if err != nil && !errors.Is(err, down) {
				t.Fatalf("error %v does not wrap the constructor's", err)
			}
			if err == nil && v != 42 {
				t.Fatalf("got %d", v)
			}
		})
	}
	t.Run("canceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := construct(ctx, zerolog.Nop(), "role", time.Minute, func(context.Context) (int, error) { return 0, down })
		if err == nil {
			t.Fatal("a canceled start returned no error")
		}
	})
}
