package tenantsql

import (
	"regexp"
	"strings"
	"testing"
)

// Every tenant id gets its own identifier, however it is spelled.
func TestSlugsAreDistinctIdentifiers(t *testing.T) {
	ids := []string{"acme", "Acme", "a.b", "a_b", "a-b", "a:b", "a@b", "tenant-1", "tenant_1", strings.Repeat("x", 128), strings.Repeat("x", 127) + "y"}
	seen := map[string]string{}
	ident := regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	for _, id := range ids {
		db := Database("vitals", id)
		if !ident.MatchString(db) || len(db) > 80 {
			t.Errorf("%q: %q is not a short identifier", id, db)
		}
		if other, ok := seen[db]; ok {
			t.Errorf("%q and %q share %s", id, other, db)
		}
		seen[db] = id
	}
	if Slug("acme") != "acme" {
		t.Errorf("a plain id should be kept as it is: %q", Slug("acme"))
	}
}

func TestChecksWhatIsSplicedIntoSQL(t *testing.T) {
	if err := check("vitals", "acme'; DROP TABLE x --"); err == nil {
		t.Error("a tenant id with a quote was accepted")
	}
	if err := check("vitals; DROP", "acme"); err == nil {
		t.Error("a database name that is not an identifier was accepted")
	}
	if err := checkNetworks([]string{"10.0.0.0/8", "::/0"}); err != nil {
		t.Error(err)
	}
	if err := checkNetworks([]string{"<ip>"}); err == nil {
		t.Error("a network that is not a CIDR was accepted")
	}
}
