package sandbox

import (
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/vitalshq/vitals/internal/cmdline"
)

// TestNewWithoutKEK: without a key-encryption key the roles could never
// start, so New must say so at once, before it creates anything, instead
// of the run failing later on a health wait that cannot succeed.
func TestNewWithoutKEK(t *testing.T) {
	t.Setenv("VITALS_KEK_FILE", "")
	t.Setenv("VITALS_KEK", "")
	logDir := t.TempDir()
	_, err := New(t.Context(), &cmdline.Settings{}, "bench", logDir, "vitals", zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), "VITALS_KEK_FILE") {
		t.Fatalf("New without a key-encryption key: %v, want an error naming VITALS_KEK_FILE", err)
	}
}
