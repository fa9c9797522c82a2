package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/credential"
	"github.com/vitalshq/vitals/internal/demo"
	"github.com/vitalshq/vitals/processor"
)

// cmdDemo runs every role in this process with a temporary gateway key
// and analyst token and runs the bundled sample through them (package
// demo): each user's heart-rate percentiles from the query service next to
// the same figures computed from the sample.
func cmdDemo(ctx context.Context, args []string, stdout io.Writer) error {
	fs, s := cmdline.AllFlags("vitals demo")
	cfg := demo.Config{}
	fs.Int(&cfg.Batch, "demo-batch", 500, "readings per POST")
	fs.Int(&cfg.Clients, "demo-clients", 4, "concurrent posting clients")
	fs.Duration(&cfg.Wait, "demo-wait", 3*time.Minute, "how long to wait for the readings to become queryable")
	var serve bool
	fs.Bool(&serve, "demo-serve", false, "keep the pipeline running afterwards and print the dashboard's address with a token, until interrupted")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if s.IngestTLSCert != "" || s.QueryTLSCert != "" {
		return errors.New("the demo's own clients speak plain HTTP on loopback: run vitals run with --ingest-tls-cert and --query-tls-cert for HTTPS listeners (docs/security.md)")
	}
	log, roles, err := parseAndStartAll(ctx, fs, s, args)
	if err != nil {
		return err
	}
	rctx, stopRoles := context.WithCancel(ctx)
	defer stopRoles()
	done := make(chan error, 1)
	go func() { done <- runRoles(rctx, log, roles...) }()
	shutdown := func() error {
		stopRoles()
		return <-done
	}
	cfg.Log = log
	// Serving, the report and the dashboard's address are printed while
	// the roles and the token still live.
	serveUntilDone := func(rep *demo.Report, token string) error {
		if !serve {
			return nil
		}
		if err := rep.Print(stdout); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\ndashboard: http://%s/dashboard/#%s\n(the token is revoked when the demo stops; Ctrl-C stops it)\n",
			s.QueryAddr, url.Values{"token": {token}}.Encode())
		<-ctx.Done()
		return nil
	}
	rep, err := runDemo(ctx, s, cfg, roles, serveUntilDone)
	if serr := shutdown(); serr != nil {
		if err == nil {
			err = serr
		} else {
			err = fmt.Errorf("%w (shutdown: %v)", err, serr)
		}
	}
	if err != nil || serve {
		return err
	}
	if err := rep.Print(stdout); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "\nto browse the data: make demo DEMO_FLAGS=--demo-serve (keeps the pipeline running and prints the dashboard's address)")
	return nil
}

// runDemo makes the demo's credentials, waits for ingest and the query
// service, runs the sample through them, and calls then before the
// credentials are revoked.
func runDemo(ctx context.Context, s *cmdline.Settings, cfg demo.Config, roles []role, then func(rep *demo.Report, token string) error) (*demo.Report, error) {
	var revoke func()
	var err error
	if cfg.Key, revoke, err = s.TempKey(ctx, "vitals demo gateway"); err != nil {
		return nil, err
	}
	defer revoke()
	if cfg.Token, revoke, err = s.TempCredential(ctx, credential.AnalystTokens, "vitals demo analyst"); err != nil {
		return nil, err
	}
	defer revoke()
	cfg.IngestURL, cfg.QueryURL = "http://"+s.IngestAddr, "http://"+s.QueryAddr
	for _, base := range []string{cfg.IngestURL, cfg.QueryURL} {
		if err := cmdline.WaitHealthy(ctx, base); err != nil {
			return nil, err
		}
	}
	for _, r := range roles {
		if p, ok := r.(*processor.Processor); ok {
			cfg.Processor = p
		}
	}
	if cfg.Processor == nil {
		return nil, errors.New("demo: no processor among the roles")
	}
	rep, err := demo.Run(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return rep, then(rep, cfg.Token)
}
