package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/postgres"
)

// cmdKeys manages gateway API keys:
//
//	vitals keys create --tenant T --name N   prints the new key once
//	vitals keys list [--tenant T]
//	vitals keys revoke KEY_ID
func cmdKeys(ctx context.Context, args []string, stdout io.Writer) error {
	return manageCredentials(ctx, "keys", credential.GatewayKeys, args, stdout)
}

// cmdTokens manages analyst query tokens, each scoped to one tenant:
//
//	vitals tokens create --tenant T --name N   prints the new token once
//	vitals tokens list [--tenant T]
//	vitals tokens revoke TOKEN_ID
func cmdTokens(ctx context.Context, args []string, stdout io.Writer) error {
	return manageCredentials(ctx, "tokens", credential.AnalystTokens, args, stdout)
}

// manageCredentials is the create|list|revoke command of one credential
// kind; cmd is the command's name for usage messages.
func manageCredentials(ctx context.Context, cmd string, kind credential.Kind, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: vitals %s create|list|revoke [flags]", cmd)
	}
	sub := args[0]
	fs, s := cmdline.NewFlags("vitals " + cmd + " " + sub)
	s.PostgresFlags(fs)
	var tenant, name string
	if sub == "create" || sub == "list" {
		fs.String(&tenant, "tenant", "", "tenant the "+kind.Noun+" belongs to")
		fs.String(&name, "name", "", "what the "+kind.Noun+" is for, e.g. who uses it")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, s.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	store, err := credential.NewStore(octx, pool, kind, 0)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		if tenant == "" || name == "" {
			return fmt.Errorf("%s create needs --tenant and --name", cmd)
		}
		full, c, err := store.Create(octx, tenant, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "created %s %s for tenant %s (%s); it is shown only now:\n%s\n", kind.Noun, c.ID, c.Tenant, c.Name, full)
		return nil
	case "list":
		creds, err := store.List(octx, tenant)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tTENANT\tNAME\tCREATED\tREVOKED")
		for _, c := range creds {
			revoked := "-"
			if c.RevokedAt != nil {
				revoked = c.RevokedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.ID, c.Tenant, c.Name, c.CreatedAt.UTC().Format(time.RFC3339), revoked)
		}
		return tw.Flush()
	case "revoke":
		if fs.NArg() != 1 {
			return fmt.Errorf("usage: vitals %s revoke ID", cmd)
		}
		ok, err := store.Revoke(octx, fs.Arg(0))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("no %s %s", kind.Noun, fs.Arg(0))
		}
		fmt.Fprintf(stdout, "revoked %s %s\n", kind.Noun, fs.Arg(0))
		return nil
	}
	return fmt.Errorf("unknown %s command %q: want create, list or revoke", cmd, sub)
}
