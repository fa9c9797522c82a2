package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/vitalshq/vitals/ingest"
	"github.com/vitalshq/vitals/internal/eventlog"
	"github.com/vitalshq/vitals/internal/sample/sampletest"
	"github.com/vitalshq/vitals/internal/tlsconf"
	"github.com/vitalshq/vitals/internal/warehouse"
	"github.com/vitalshq/vitals/query"
)

// secureEnv is what `deploy/stack.sh env --secure` prints: the settings of
// a pipeline that uses only the stack's secure listeners. It fails the
// test when they are not up (`bash deploy/stack.sh up --secure`; make
// test starts them).
func secureEnv(t *testing.T) map[string]string {
	t.Helper()
	script, err := filepath.Abs("../../deploy/stack.sh")
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("bash", script, "env", "--secure")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("deploy/stack.sh env --secure: %v\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "=")
		if ok {
			env[k] = strings.Trim(v, "'")
		}
	}
	return env
}

// secureStack is a test's slice of the stack reached only through the
// secure listeners: Kafka SASL_SSL, ClickHouse TLS with a password,
// PostgreSQL TLS (verify-full), and ingest and query serving HTTPS.
type secureStack struct {
	*stack
	env    map[string]string
	plain  eventlog.Config // the same topics through the plain listener, for the checks
	plainW warehouse.Config
	client *http.Client // trusts the stack's CA
}

func newSecureStack(t *testing.T) *secureStack {
	s := newStack(t) // reachability and cleanup through the plain listeners (skips with -short)
	env := secureEnv(t)
	ss := &secureStack{stack: s, env: env, plain: s.kafka, plainW: s.wh}
	s.kafka.Brokers = eventlog.ParseBrokers(env["VITALS_KAFKA_BROKERS"])
	s.kafka.Security = eventlog.Security{Protocol: env["VITALS_KAFKA_SECURITY_PROTOCOL"], Mechanism: env["VITALS_KAFKA_SASL_MECHANISM"],
		Username: env["VITALS_KAFKA_SASL_USERNAME"], Password: env["VITALS_KAFKA_SASL_PASSWORD"], CAFile: env["VITALS_KAFKA_TLS_CA"]}
	s.wh.Addr, s.wh.TLS, s.wh.TLSCA = env["VITALS_CLICKHOUSE_ADDR"], true, env["VITALS_CLICKHOUSE_TLS_CA"]
	s.wh.User, s.wh.Password = env["VITALS_CLICKHOUSE_USER"], env["VITALS_CLICKHOUSE_PASSWORD"]
	s.pgURL = env["VITALS_PG_URL"]
	// The stack's cleanup deletes topics with a plain client: give it the
	// plain brokers back first (cleanups run last-in first-out).
	t.Cleanup(func() { s.kafka = ss.plain })
	tc, err := tlsconf.Client(env["VITALS_QUERY_TLS_CA"], "")
	if err != nil {
		t.Fatal(err)
	}
	ss.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	return ss
}

// startIngestTLS starts ingest on HTTPS and returns its base URL.
func (ss *secureStack) startIngestTLS(ctx context.Context) string {
	cfg := ss.ingestConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = ss.env["VITALS_INGEST_TLS_CERT"], ss.env["VITALS_INGEST_TLS_KEY"]
	base, _ := ss.startIngestWith(ctx, cfg)
	return base
}

// startQueryTLS starts the query service on HTTPS and returns its base URL.
func (ss *secureStack) startQueryTLS(ctx context.Context) string {
	cfg := ss.queryConfig()
	cfg.TLSCertFile, cfg.TLSKeyFile = ss.env["VITALS_QUERY_TLS_CERT"], ss.env["VITALS_QUERY_TLS_KEY"]
	return ss.startQueryWith(ctx, cfg)
}

// do sends a request with the CA-trusting client and decodes a JSON answer.
func (ss *secureStack) do(method, u, token string, body any, out any) int {
	ss.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			ss.t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		ss.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := ss.client.Do(req)
	if err != nil {
		ss.t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil && resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			ss.t.Fatal(err)
		}
	}
	return resp.StatusCode
}

// TestSecurePipeline runs the whole pipeline through the secure listeners
// only: a gateway posts real readings over HTTPS, ingest produces them to
// Kafka over SASL_SSL (SCRAM-SHA-512), the processor keeps its state in
// PostgreSQL over TLS, the projector writes ClickHouse over TLS with a
// password, and an analyst reads exact percentiles over HTTPS. Every
// role is given the secure addresses alone, so any connection made
// without TLS would be refused by the port it reached. Then it checks
// that nothing falls back to plaintext: TLS clients at the plain ports
// and plain clients at the secure ports fail, as do a wrong SCRAM
// password and a plaintext request to the HTTPS listeners.
func TestSecurePipeline(t *testing.T) {
	ss := newSecureStack(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	ingestURL := ss.startIngestTLS(ctx)
	ss.startProcessor(ctx, ss.processorConfig())
	ss.startProjector(ctx, ss.id+"-projector")
	queryURL := ss.startQueryTLS(ctx)

	all := sampletest.HeartRates(t)
	rows := all[:500]
	user := rows[0].UserID()
	var resp ingest.BatchResponse
	pairing := map[string]any{"gateway_id": "gw-tls", "events": []any{map[string]any{"event_id": "tls-paired", "user_id": user,
		"device_id": rows[0].DeviceID(), "kind": "paired", "occurred_at": "2016-01-01T00:00:00Z"}}}
	if code := ss.do(http.MethodPost, ingestURL+"/v1/device-events", ss.key, pairing, &resp); code != http.StatusOK || resp.Accepted != 1 {
		t.Fatalf("pairing over HTTPS: %d %+v", code, resp)
	}
	var items []wireReading
	var values []float64
	for _, r := range rows {
		items = append(items, wire(r))
		values = append(values, r.Value)
	}
	if code := ss.do(http.MethodPost, ingestURL+"/v1/readings", ss.key, map[string]any{"gateway_id": "gw-tls", "readings": items}, &resp); code != http.StatusOK || resp.Accepted != len(items) {
		t.Fatalf("readings over HTTPS: %d, %d accepted", code, resp.Accepted)
	}
	from := rows[0].Time.Truncate(24 * time.Hour)
	path := fmt.Sprintf("%s/v1/users/%s/percentiles?%s", queryURL, url.PathEscape(user), url.Values{"metric": {"heart_rate"},
		"from": {from.Format(time.RFC3339)}, "to": {from.Add(24 * time.Hour).Format(time.RFC3339)}, "p": {"50,90,99"}}.Encode())
	var res query.PercentilesResponse
	eventually(t, 90*time.Second, "the readings to be queryable over HTTPS", func() (bool, string) {
		code := ss.do(http.MethodGet, path, ss.queryToken, nil, &res)
		return code == http.StatusOK && res.Count == uint64(len(values)), fmt.Sprintf("status %d, %d of %d", code, res.Count, len(values))
	})
	want := nearestRank(values, []float64{50, 90, 99})
	for i, p := range res.Percentiles {
		if p.Value != want[i] {
			t.Errorf("p%g = %g over the secure pipeline, computed independently %g", p.P, p.Value, want[i])
		}
	}

	// No plaintext: HTTP to the HTTPS listeners is not served.
	for _, base := range []string{ingestURL, queryURL} {
		plain := "http://" + strings.TrimPrefix(base, "https://") + "/v1/users/" + user + "/summary"
		if r, err := http.Get(plain); err == nil {
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			if r.StatusCode == http.StatusOK || strings.Contains(string(b), user) {
				t.Errorf("plain HTTP to %s answered %d %q", base, r.StatusCode, b)
			}
		}
	}
	// Kafka: TLS at the plain port, plain at the SASL_SSL port, a wrong
	// password: none connects.
	kping := func(c eventlog.Config) error {
		c.DialTimeout, c.RequestTimeout = 2*time.Second, 2*time.Second
		cl, err := kgo.NewClient(c.ClientOpts(ss.log)...)
		if err != nil {
			return err
		}
		defer cl.Close()
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return cl.Ping(pctx)
	}
	if err := kping(ss.kafka); err != nil {
		t.Fatalf("the secure Kafka settings no longer connect: %v", err)
	}
	kafkaWrong := wrongWays(ss.kafka, ss.plain,
		func(c *eventlog.Config, at eventlog.Config) { c.Brokers = at.Brokers },
		func(c *eventlog.Config) { c.Security.Password = "not-the-password" },
		[3]string{"SASL_SSL at the plain port", "PLAINTEXT at the SASL_SSL port", "a wrong SCRAM password"})
	for name, c := range kafkaWrong {
		if err := kping(c); err == nil {
			t.Errorf("Kafka with %s connected", name)
		}
	}
	// ClickHouse likewise.
	chWrong := wrongWays(ss.wh, ss.plainW,
		func(c *warehouse.Config, at warehouse.Config) { c.Addr = at.Addr },
		func(c *warehouse.Config) { c.Password = "not-the-password" },
		[3]string{"TLS at the plain port", "plain at the secure port", "a wrong password"})
	for name, c := range chWrong {
		c.DialTimeout = 2 * time.Second
		if conn, err := warehouse.Open(ctx, c); err == nil {
			conn.Close()
			t.Errorf("ClickHouse with %s connected", name)
		}
	}
	// A role given TLS settings under PLAINTEXT does not start.
	bad := ingest.DefaultConfig()
	bad.Kafka, bad.PostgresURL = ss.plain, ss.pgURL
	bad.Kafka.Security = eventlog.Security{CAFile: ss.env["VITALS_KAFKA_TLS_CA"]}
	if srv, err := ingest.New(ctx, bad, ss.log); err == nil {
		srv.Close()
		t.Error("ingest started with TLS settings and the PLAINTEXT protocol")
	}
}

// wrongWays is, by the given names, the three wrong ways to reach a
// server that has a secure and a plain listener: the secure settings at
// the plain address, the plain settings at the secure address (moveTo
// points c at the address of at), and the secure settings with a wrong
// password (set by badPassword).
func wrongWays[C any](secure, plain C, moveTo func(c *C, at C), badPassword func(c *C), names [3]string) map[string]C {
	secureAtPlain, plainAtSecure, wrong := secure, plain, secure
	moveTo(&secureAtPlain, plain)
	moveTo(&plainAtSecure, secure)
	badPassword(&wrong)
	return map[string]C{names[0]: secureAtPlain, names[1]: plainAtSecure, names[2]: wrong}
}
