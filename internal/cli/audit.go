package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vitalshq/vitals/internal/audit"
	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/postgres"
)

// cmdAudit reads the access audit trail (package audit):
//
//	vitals audit --tenant T [--user U] [--token ID] [--since t] [--until t] [--limit n] [--json]
//	vitals audit verify [--tenant T] [--anchor SEQ:HASH]
func cmdAudit(ctx context.Context, args []string, stdout io.Writer) error {
	verify := len(args) > 0 && args[0] == "verify"
	if verify {
		args = args[1:]
	}
	fs, s := cmdline.NewFlags("vitals audit")
	s.PostgresFlags(fs)
	var f audit.Filter
	var since, until, anchor string
	var raw, unidentified bool
	fs.String(&f.Tenant, "tenant", "", "tenant whose accesses to list or whose chain to verify (verify: empty for every chain)")
	if verify {
		fs.String(&anchor, "anchor", "", "a head printed by an earlier verify, SEQ:HASH, that the chain must still contain")
	} else {
		fs.String(&f.User, "user", "", "list only the accesses to this person's data")
		fs.String(&f.Actor, "token", "", "list only the accesses made with this analyst token id")
		fs.String(&since, "since", "", "list accesses from this time on (RFC 3339 or a date)")
		fs.String(&until, "until", "", "list accesses before this time (RFC 3339 or a date)")
		fs.Int(&f.Limit, "limit", 1000, "list at most the newest n records (0: all)")
		fs.Bool(&raw, "json", false, "print JSON lines, with the hashes")
		fs.Bool(&unidentified, "unidentified", false, "list the chain of callers who could not be identified (no or an unknown token) instead of --tenant")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	var err error
	if f.Since, err = parseWhen("since", since); err == nil {
		f.Until, err = parseWhen("until", until)
	}
	if err != nil {
		return err
	}
	pool, err := postgres.Open(ctx, s.PostgresURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	actx, cancel := context.WithTimeout(ctx, 10*time.Minute) // a verify reads every record
	defer cancel()
	store, err := audit.NewStore(actx, pool)
	if err != nil {
		return err
	}
	if verify {
		return verifyTrail(actx, store, f.Tenant, anchor, stdout)
	}
	if f.Tenant == "" && !unidentified {
		return errors.New("audit needs --tenant (or --unidentified for the callers without a valid token)")
	}
	recs, err := store.List(actx, f)
	if err != nil {
		return err
	}
	if raw {
		enc := json.NewEncoder(stdout)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	return printRecords(stdout, recs)
}

// parseWhen reads an optional time flag.
func parseWhen(name, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, time.DateOnly} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("--%s %q: want RFC 3339 (2026-11-22T07:00:00Z) or a date (2026-11-22)", name, v)
}

// printRecords prints records as a table, oldest first.
func printRecords(w io.Writer, recs []audit.Record) error {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tTOKEN\tNAME\tACTION\tUSER\tCOHORT\tMETRIC\tFROM\tTO\tROWS\tSTATUS\tOUTCOME\tCODE")
	day := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, r := range recs {
		rows := "-"
		if r.Rows != nil {
			rows = strconv.FormatInt(*r.Rows, 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", r.Seq, r.At.Format(time.RFC3339), dash(r.Actor),
			dash(r.ActorName), r.Action, dash(r.User), dash(r.Cohort), dash(r.Metric), day(r.From), day(r.To), rows, r.Status, r.Outcome, dash(r.Code))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d access(es)\n", len(recs))
	return err
}

// verifyTrail verifies tenant's chain, or every chain, prints each
// chain's state and head, and fails if any is broken or the anchor is not
// in the chain.
func verifyTrail(ctx context.Context, store *audit.Store, tenant, anchor string, w io.Writer) error {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = store.Tenants(ctx); err != nil {
			return err
		}
	}
	broken := 0
	for _, t := range tenants {
		c, err := store.Verify(ctx, t)
		if err != nil {
			return err
		}
		name := t
		if name == "" {
			name = "(unidentified callers)"
		}
		state := "intact"
		if !c.OK() {
			state, broken = "BROKEN", broken+1
		}
		fmt.Fprintf(w, "%s: %d records, %s; head %d:%x\n", name, c.Records, state, c.HeadSeq, c.HeadHash)
		for _, p := range c.Problems {
			fmt.Fprintf(w, "  record %d: %s\n", p.Seq, p.Reason)
		}
	}
	if anchor != "" {
		if tenant == "" {
			return errors.New("--anchor needs --tenant: an anchor is a head of one chain")
		}
		if err := checkAnchor(ctx, store, tenant, anchor); err != nil {
			return err
		}
		fmt.Fprintf(w, "anchor %s: found in the chain\n", anchor)
	}
	if broken > 0 {
		return fmt.Errorf("%d of %d audit chain(s) broken: records were changed, removed or inserted", broken, len(tenants))
	}
	return nil
}

// checkAnchor checks that record SEQ of tenant's chain still has HASH.
func checkAnchor(ctx context.Context, store *audit.Store, tenant, anchor string) error {
	seqs, hexHash, ok := strings.Cut(anchor, ":")
	seq, err := strconv.ParseInt(seqs, 10, 64)
	want, herr := hex.DecodeString(hexHash)
	if !ok || err != nil || herr != nil {
		return fmt.Errorf("--anchor %q: want SEQ:HASH as verify prints a head", anchor)
	}
	got, err := store.HashAt(ctx, tenant, seq)
	if err != nil {
		return fmt.Errorf("anchor %s: %w", anchor, err)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("anchor %s: record %d now hashes %x: the chain was rewritten after the anchor was taken", anchor, seq, got)
	}
	return nil
}
