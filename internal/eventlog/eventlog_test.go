package eventlog

import "testing"

func TestWithOutputVersion(t *testing.T) {
	base := TopicsWithPrefix("vitals")
	for _, tc := range []struct {
		version, accepted string
		wantErr           bool
	}{
		{"v1", "vitals.readings.accepted.v1", false},
		{"v2", "vitals.readings.accepted.v2", false},
		{"v10", "vitals.readings.accepted.v10", false},
		{"2", "", true},
		{"v2.x", "", true},
		{"", "", true},
	} {
		t.Run(tc.version, func(t *testing.T) {
			got, err := base.WithOutputVersion(tc.version)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if got.AcceptedReadings != tc.accepted || got.Erasures != "vitals.erasures."+tc.version {
				t.Errorf("outputs %s, %s", got.AcceptedReadings, got.Erasures)
			}
			// The event log itself is the same for every version.
			if got.Readings != base.Readings || got.DeviceEvents != base.DeviceEvents || got.ProfileEvents != base.ProfileEvents || got.DeadLetters != base.DeadLetters {
				t.Errorf("raw topics changed: %+v", got)
			}
		})
	}
	if _, err := (Topics{AcceptedReadings: "x.v2"}).WithOutputVersion("v3"); err == nil {
		t.Error("a topic not at v1 was re-versioned")
	}
}
