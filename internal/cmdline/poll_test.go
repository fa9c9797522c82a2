package cmdline

import (
	"errors"
	"testing"
	"time"
)

// Poll returns once try reports done; past the timeout it fails with the
// failure and try's last reason.
func TestPoll(t *testing.T) {
	tries := 0
	err := Poll(t.Context(), time.Millisecond, time.Minute, func() (bool, error) {
		tries++
		return tries == 3, errors.New("not yet")
	}, "never done")
	if err != nil || tries != 3 {
		t.Fatalf("Poll = %v after %d tries, want nil after 3", err, tries)
	}
	err = Poll(t.Context(), time.Millisecond, 20*time.Millisecond, func() (bool, error) {
		return false, errors.New("status 503")
	}, "x did not become healthy")
	if err == nil || err.Error() != "x did not become healthy: status 503" {
		t.Fatalf("Poll past its timeout = %v", err)
	}
}

// KeyOr hands a key a flag gave back as it is, with nothing to revoke,
// without touching PostgreSQL.
func TestKeyOrGivenKey(t *testing.T) {
	s := &Settings{PostgresURL: "postgres://nowhere.invalid/none"}
	key, revoke, err := s.KeyOr(t.Context(), "vk_given", "unused")
	if err != nil || key != "vk_given" {
		t.Fatalf("KeyOr = %q, %v", key, err)
	}
	revoke()
}
