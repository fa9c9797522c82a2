package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/envflag"
	"github.com/vitalshq/vitals/internal/queryclient"
	"github.com/vitalshq/vitals/internal/tlsconf"
	"github.com/vitalshq/vitals/query"
)

// cmdQuery runs the query service (`vitals query [flags]`), or with a
// command of queryclient.Commands asks it.
func cmdQuery(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) > 0 && slices.Contains(queryclient.Commands, args[0]) {
		return queryClient(ctx, args[0], args[1:], stdout)
	}
	return queryRole.command(ctx, args, stdout)
}

// queryServiceFlags are the query service's flags, with the groups whose
// progress read-your-writes waits for.
func queryServiceFlags(s *cmdline.Settings, fs *envflag.Set) {
	s.ClickHouseFlags(fs)
	s.QueryFlags(fs)
	d := query.DefaultConfig()
	fs.String(&s.ProcessorGroup, "processor-group", d.ProcessorGroup, "processor consumer group whose checkpoints read-your-writes waits for")
	fs.String(&s.ProjectorGroup, "projector-group", d.ProjectorGroup, "projector consumer group whose commits read-your-writes waits for")
}

// queryClient asks a running query service and prints the answer as a
// table (or the JSON itself with --json).
func queryClient(ctx context.Context, sub string, args []string, stdout io.Writer) error {
	fs, _ := cmdline.NewFlags("vitals query " + sub)
	var base string
	var raw bool
	var timeout time.Duration
	fs.String(&base, "query-url", "http://"+query.DefaultConfig().Addr, "base URL of the query service")
	fs.Bool(&raw, "json", false, "print the JSON answer instead of a table")
	fs.Duration(&timeout, "query-client-timeout", 60*time.Second, "bound on the request")
	var ca string
	fs.String(&ca, "query-tls-ca", "", "PEM file of the certificate authorities an https --query-url's certificate must chain to (empty: the system's)")
	values := map[string]*string{}
	for _, p := range queryclient.Params {
		if p.Only == nil || slices.Contains(p.Only, sub) {
			values[p.Name] = new(string)
			fs.String(values[p.Name], p.Name, "", p.Usage)
		}
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	token := os.Getenv(queryclient.TokenEnv)
	if token == "" {
		return fmt.Errorf("set %s to an analyst token (vitals tokens create --tenant T --name N)", queryclient.TokenEnv)
	}
	v := url.Values{}
	for name, p := range values {
		if *p != "" {
			v.Set(strings.ReplaceAll(name, "-", "_"), *p)
		}
	}
	path, err := queryclient.Path(sub, v)
	if err != nil {
		return err
	}
	client := http.DefaultClient
	if ca != "" {
		if !strings.HasPrefix(base, "https://") {
			return errors.New("--query-tls-ca is set but --query-url is not https: the token would be sent in clear")
		}
		tc, err := tlsconf.Client(ca, "")
		if err != nil {
			return err
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment}}
	}
	body, err := queryclient.GetWith(ctx, client, base+path, token, timeout)
	if err != nil {
		return err
	}
	if raw {
		_, err = stdout.Write(body)
		return err
	}
	return queryclient.Print(stdout, sub, body)
}
