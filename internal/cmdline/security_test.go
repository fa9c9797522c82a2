package cmdline

import (
	"strings"
	"testing"
)

// Security flags that contradict each other stop a role before it starts
// instead of leaving it to connect in plaintext.
func TestCheckSecurity(t *testing.T) {
	for _, tc := range []struct {
		args []string
		bad  string
	}{
		{nil, ""},
		{[]string{"--kafka-security-protocol", "SASL_SSL", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p", "--kafka-tls-ca", "ca.pem",
			"--clickhouse-tls", "--clickhouse-tls-ca", "ca.pem", "--ingest-tls-cert", "c", "--ingest-tls-key", "k"}, ""},
		{[]string{"--kafka-tls-ca", "ca.pem"}, "PLAINTEXT"},
		{[]string{"--kafka-sasl-username", "u", "--kafka-sasl-password", "p"}, "PLAINTEXT"},
		{[]string{"--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p"}, "unencrypted"},
		{[]string{"--clickhouse-tls-ca", "ca.pem"}, "unencrypted"},
		{[]string{"--query-tls-cert", "c"}, "go together"},
	} {
		fs, s := AllFlags("vitals test")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := s.CheckSecurity()
		if (err == nil) != (tc.bad == "") || (err != nil && !strings.Contains(err.Error(), tc.bad)) {
			t.Errorf("%v: %v, want an error containing %q", tc.args, err, tc.bad)
		}
	}
}
