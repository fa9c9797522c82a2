package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/postgres"
)

// cmdKeys manages gateway API keys:
//
//	vitals keys create --tenant T --name N   prints the new key once
//	vitals keys list [--tenant T]
//	vitals keys revoke KEY_ID
func cmdKeys(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: vitals keys create|list|revoke [flags]")
	}
	sub := args[0]
	fs, s := newFlags("keys " + sub)
	s.pgFlags(fs)
	var tenant, name string
	if sub == "create" || sub == "list" {
		fs.String(&tenant, "tenant", "", "tenant the key belongs to")
		fs.String(&name, "name", "", "what the key is for, e.g. the gateway's name")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, s.pgURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	store, err := ingest.NewKeyStore(octx, pool, 0)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if tenant == "" || name == "" {
			return fmt.Errorf("keys create needs --tenant and --name")
		}
		full, k, err := store.Create(octx, tenant, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created key %s for tenant %s (%s); it is shown only now:\n%s\n", k.ID, k.Tenant, k.Name, full)
		return nil
	case "list":
		keys, err := store.List(octx, tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "KEY ID\tTENANT\tNAME\tCREATED\tREVOKED")
		for _, k := range keys {
			revoked := "-"
			if k.RevokedAt != nil {
				revoked = k.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Tenant, k.Name, k.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: vitals keys revoke KEY_ID")
		}
		ok, err := store.Revoke(octx, fs.Arg(0))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no key %s", fs.Arg(0))
		}
		fmt.Fprintf(stdout, "revoked key %s\n", fs.Arg(0))
		return nil
	}
	return fmt.Errorf("unknown keys command %q: want create, list or revoke", sub)
}
