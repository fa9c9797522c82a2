package tenantsql

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Users creates and removes the ClickHouse users of tenants. Two kinds:
//
//   - FileUsers writes one XML file per user into the server's users.d
//     directory, which the server merges into its users and reloads within
//     seconds. ClickHouse 18.16 has no other way (no SQL for users); it
//     needs the directory on the server's machine.
//   - SQLUsers uses CREATE USER and GRANT (ClickHouse 20.5 and later),
//     through a connection whose user may manage access
//     (access_management).
//
// Either way the user may read the tenant's database and nothing else,
// with readonly = 1: no writes, no DDL, no settings of its own, no table
// functions (remote, url, file...).
type Users interface {
	// Grant creates user, or replaces its password, allowed to read db,
	// from the networks given (CIDRs).
	Grant(ctx context.Context, user, db, password string, networks []string) error
	// Revoke removes user; removing a missing user is no error.
	Revoke(ctx context.Context, user string) error
}

// NewPassword returns a random password of 128 bits in hex.
func NewPassword() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	return hex.EncodeToString(b), nil
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// checkNetworks validates CIDRs spliced into XML or SQL.
func checkNetworks(networks []string) error {
	if len(networks) == 0 {
		return errors.New("no networks: give at least one CIDR, e.g. ::/0 for any")
	}
	for _, n := range networks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			return fmt.Errorf("network %q: want a CIDR such as 10.0.0.0/8 or ::/0", n)
		}
	}
	return nil
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)

// FileUsers keeps users as files in a ClickHouse server's users.d
// directory.
type FileUsers struct{ Dir string }

func (f FileUsers) path(user string) string { return filepath.Join(f.Dir, user+".xml") }

// Grant writes the user's file atomically (a temporary name the server
// does not read, then a rename).
func (f FileUsers) Grant(_ context.Context, user, db, password string, networks []string) error {
	if !identRE.MatchString(user) || !identRE.MatchString(db) {
		return fmt.Errorf("user %q or database %q is not an identifier", user, db)
	}
	if err := checkNetworks(networks); err != nil {
		return err
	}
	var ips strings.Builder
	for _, n := range networks {
		fmt.Fprintf(&ips, "<ip>%s</ip>", n)
	}
	// The profile and quota are the user's own, so the file depends on
	// nothing else in the server's configuration.
	xml := fmt.Sprintf(`<?xml version="1.0"?>
<!-- Written by vitals sql-users grant: tenant analysts' user %[1]s, reading database %[2]s only. -->
<yandex>
    <profiles>
        <%[1]s>
            <readonly>1</readonly>
        </%[1]s>
    </profiles>
    <quotas>
        <%[1]s>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </%[1]s>
    </quotas>
    <users>
        <%[1]s>
            <password_sha256_hex>%[3]s</password_sha256_hex>
            <networks replace="replace">%[4]s</networks>
            <profile>%[1]s</profile>
            <quota>%[1]s</quota>
            <allow_databases>
                <database>%[2]s</database>
            </allow_databases>
        </%[1]s>
    </users>
</yandex>
`, user, db, sha256Hex(password), ips.String())
	if err := os.MkdirAll(f.Dir, 0o755); err != nil {
		return fmt.Errorf("users directory: %w", err)
	}
	tmp := f.path(user) + ".tmp"
	if err := os.WriteFile(tmp, []byte(xml), 0o600); err != nil {
		return fmt.Errorf("write user %s: %w", user, err)
	}
	if err := os.Rename(tmp, f.path(user)); err != nil {
		return fmt.Errorf("write user %s: %w", user, err)
	}
	return nil
}

// Revoke deletes the user's file.
func (f FileUsers) Revoke(_ context.Context, user string) error {
	if !identRE.MatchString(user) {
		return fmt.Errorf("user %q is not an identifier", user)
	}
	if err := os.Remove(f.path(user)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove user %s: %w", user, err)
	}
	return nil
}

// SQLUsers manages users with SQL (ClickHouse 20.5 and later).
type SQLUsers struct{ Conn driver.Conn }

// Grant creates the user or sets its password, then grants SELECT on db
// and nothing else.
func (s SQLUsers) Grant(ctx context.Context, user, db, password string, networks []string) error {
	if !identRE.MatchString(user) || !identRE.MatchString(db) {
		return fmt.Errorf("user %q or database %q is not an identifier", user, db)
	}
	if err := checkNetworks(networks); err != nil {
		return err
	}
	hosts := make([]string, len(networks))
	for i, n := range networks {
		hosts[i] = "IP " + quote(n)
	}
	auth := fmt.Sprintf("IDENTIFIED WITH sha256_hash BY %s HOST %s", quote(sha256Hex(password)), strings.Join(hosts, ", "))
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS %s %s DEFAULT DATABASE %s SETTINGS readonly = 1", user, auth, db),
		fmt.Sprintf("ALTER USER %s %s DEFAULT DATABASE %s SETTINGS readonly = 1", user, auth, db),
		fmt.Sprintf("REVOKE ALL ON *.* FROM %s", user),
		fmt.Sprintf("GRANT SELECT ON %s.* TO %s", db, user),
	} {
		if err := s.Conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("user %s: %w", user, err)
		}
	}
	return nil
}

// Revoke drops the user.
func (s SQLUsers) Revoke(ctx context.Context, user string) error {
	if !identRE.MatchString(user) {
		return fmt.Errorf("user %q is not an identifier", user)
	}
	if err := s.Conn.Exec(ctx, "DROP USER IF EXISTS "+user); err != nil {
		return fmt.Errorf("drop user %s: %w", user, err)
	}
	return nil
}

// HasSQLUsers reports whether the server manages users with SQL: 20.5
// and later (the version string is major.minor...).
func HasSQLUsers(ctx context.Context, conn driver.Conn) (bool, string, error) {
	var v string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&v); err != nil {
		return false, "", fmt.Errorf("server version: %w", err)
	}
	parts := strings.SplitN(v, ".", 3)
	major, err1 := strconv.Atoi(parts[0])
	minor := 0
	var err2 error
	if len(parts) > 1 {
		minor, err2 = strconv.Atoi(parts[1])
	}
	if err1 != nil || err2 != nil {
		return false, v, fmt.Errorf("server version %q: not major.minor", v)
	}
	return major > 20 || major == 20 && minor >= 5, v, nil
}
