package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/export"
	"github.com/vitalshq/vitals/internal/postgres"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// cmdExport writes everything held about one user as a FHIR R4 Bundle
// (GDPR Art. 15 and 20):
//
//	vitals export --tenant T --user U [--out FILE]
func cmdExport(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.NewFlags("vitals export")
	s.ClickHouseFlags(fs)
	s.PostgresFlags(fs)
	var tenant, user, out string
	fs.String(&tenant, "tenant", "", "the user's tenant")
	fs.String(&user, "user", "", "the user's id")
	fs.String(&out, "out", "", "file to write the Bundle to (default: standard output)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if tenant == "" || user == "" {
		return errors.New("--tenant and --user are required")
	}
	conn, err := warehouse.Open(ctx, s.Warehouse())
	if err != nil {
		return err
	}
	defer conn.Close()
	qctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	b, err := export.Export(qctx, conn, s.ClickHouseDatabase, tenant, user)
	if err != nil {
		return err
	}
	// Who read the person's data is recorded before it is handed out; no
	// record, no export (docs/security.md).
	if err := auditExport(qctx, s.PostgresURL, tenant, user, out, len(b.Entry)); err != nil {
		return err
	}
	w := stdout
	if out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(b)
}

// auditExport appends the access record of an export of user's data.
func auditExport(ctx context.Context, pgURL, tenant, user, out string, entries int) error {
	pool, err := postgres.Open(ctx, pgURL)
	if err != nil {
		return fmt.Errorf("export not written: the access audit trail is unavailable: %w", err)
	}
	defer pool.Close()
	store, err := audit.NewStore(ctx, pool)
	if err != nil {
		return fmt.Errorf("export not written: the access audit trail is unavailable: %w", err)
	}
	target := "format=fhir-r4-bundle"
	if out != "" {
		target += " to=file"
	}
	r := audit.CommandRecord("export", tenant, user, target)
	n := int64(entries)
	r.Rows = &n
	if _, err := store.Append(ctx, r); err != nil {
		return fmt.Errorf("export not written: cannot record it in the access audit trail: %w", err)
	}
	return nil
}

// cmdDataKeys manages the users' data keys (docs/privacy.md); `vitals keys`
// is the gateways' API keys:
//
//	vitals datakeys status
//	vitals datakeys rewrap --kek-file NEW --kek-previous-file OLD
func cmdDataKeys(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "status" && args[0] != "rewrap") {
		return errors.New("usage: vitals datakeys status|rewrap [flags]")
	}
	sub := args[0]
	fs, s := cmdline.NewFlags("vitals datakeys " + sub)
	s.PostgresFlags(fs)
	var previous, tenant string
	batch := 1000
	if sub == "rewrap" {
		fs.String(&previous, "kek-previous-file", "", "file holding the key-encryption key the data keys are wrapped by now (--kek-file is the new one)")
		fs.Int(&batch, "batch", batch, "keys rewrapped per transaction")
		fs.String(&tenant, "tenant", "", "rewrap only this tenant's keys (default: every tenant's)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg := s.UserKeys()
	if previous != "" {
		cfg.Keyring.PreviousKEKFiles = []string{previous}
	}
	log, err := s.Logger()
	if err != nil {
		return err
	}
	store, closeStore, err := s.OpenUserKeys(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer closeStore()
	if sub == "rewrap" {
		n, err := store.Rewrap(ctx, batch, tenant)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "rewrapped %d data keys\n", n)
	}
	counts, err := store.Counts(ctx)
	if err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(stdout, "%-24s %d data keys\n", k, counts[k])
	}
	return nil
}
