package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/vitalshq/vitals/internal/cmdline"
	"github.com/vitalshq/vitals/internal/tenantsql"
	"github.com/vitalshq/vitals/internal/warehouse"
)

// cmdSQLUsers manages tenants' direct SQL access to ClickHouse (package
// tenantsql):
//
//	vitals sql-users grant --tenant T     the tenant's database (made if missing) and its user; prints the password once
//	vitals sql-users revoke --tenant T    removes the user and the tenant's database
//	vitals sql-users resync --tenant T    rebuilds the tenant's copies (after a replay or a migration)
//	vitals sql-users list
func cmdSQLUsers(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: vitals sql-users grant|revoke|resync|list [flags]")
	}
	sub := args[0]
	fs, s := cmdline.NewFlags("vitals sql-users " + sub)
	s.ClickHouseFlags(fs)
	var tenant, store, usersDir, networks string
	if sub != "list" {
		fs.String(&tenant, "tenant", "", "the tenant")
	}
	if sub == "grant" || sub == "revoke" {
		fs.String(&store, "sql-users-store", "auto", "how users are made: file (users.d, ClickHouse 18.16), sql (CREATE USER, 20.5 and later) or auto (by the server's version)")
		fs.String(&usersDir, "clickhouse-users-dir", "", "the server's users.d directory, for the file store (the local stack's: .stack/clickhouse/users.d)")
	}
	if sub == "grant" {
		fs.String(&networks, "sql-user-networks", "::/0", "comma-separated CIDRs the user may connect from")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := s.CheckSecurity(); err != nil {
		return err
	}
	if sub != "list" && tenant == "" {
		return fmt.Errorf("sql-users %s needs --tenant", sub)
	}
	cfg := s.Warehouse()
	conn, err := warehouse.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	octx, cancel := context.WithTimeout(ctx, 30*time.Minute) // a backfill copies the tenant's rows
	defer cancel()
	db, user := tenantsql.Database(cfg.Database, tenant), tenantsql.Database(cfg.Database, tenant)
	switch sub {
	case "grant":
		users, err := userStore(octx, conn, store, usersDir)
		if err != nil {
			return err
		}
		return grantSQLUser(octx, cfg, conn, users, tenant, user, strings.Split(networks, ","), stdout)
	case "revoke":
		users, err := userStore(octx, conn, store, usersDir)
		if err != nil {
			return err
		}
		if err := users.Revoke(octx, user); err != nil {
			return err
		}
		if err := waitGone(octx, cfg, user); err != nil {
			return err
		}
		if err := tenantsql.Drop(octx, conn, cfg.Database, tenant); err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "revoked: ClickHouse user %s removed, database %s dropped\n", user, db)
		return err
	case "resync":
		st, err := tenantsql.Resync(octx, conn, cfg.Database, tenant)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "resynced %s: %d rows copied into %s\n", st.Database, st.Rows, strings.Join(st.Created, ", "))
		return err
	case "list":
		ts, err := tenantsql.List(octx, conn, cfg.Database)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENANT\tDATABASE AND USER")
		for _, t := range ts {
			fmt.Fprintf(tw, "%s\t%s\n", t.ID, t.Database)
		}
		return tw.Flush()
	}
	return fmt.Errorf("unknown sql-users command %q: want grant, revoke, resync or list", sub)
}

// userStore picks how users are made.
func userStore(ctx context.Context, conn driver.Conn, store, dir string) (tenantsql.Users, error) {
	if store == "auto" {
		sql, v, err := tenantsql.HasSQLUsers(ctx, conn)
		if err != nil {
			return nil, err
		}
		if store = "file"; sql {
			store = "sql"
		}
		if store == "file" && dir == "" {
			return nil, fmt.Errorf("ClickHouse %s keeps users in files: give --clickhouse-users-dir (its users.d directory)", v)
		}
	}
	switch store {
	case "file":
		if dir == "" {
			return nil, errors.New("the file store needs --clickhouse-users-dir")
		}
		return tenantsql.FileUsers{Dir: dir}, nil
	case "sql":
		return tenantsql.SQLUsers{Conn: conn}, nil
	}
	return nil, fmt.Errorf("--sql-users-store %q: want auto, file or sql", store)
}

// grantSQLUser provisions the tenant's database and user and prints the
// password once.
func grantSQLUser(ctx context.Context, cfg warehouse.Config, conn driver.Conn, users tenantsql.Users, tenant, user string,
	networks []string, stdout io.Writer) error {
	st, err := tenantsql.Provision(ctx, conn, cfg.Database, tenant)
	if err != nil {
		return err
	}
	password, err := tenantsql.NewPassword()
	if err != nil {
		return err
	}
	if err := users.Grant(ctx, user, st.Database, password, networks); err != nil {
		return err
	}
	if err := waitLogin(ctx, cfg, user, password, st.Database); err != nil {
		return err
	}
	copied := "none (all existed)"
	if len(st.Created) > 0 {
		copied = fmt.Sprintf("%s (%d rows)", strings.Join(st.Created, ", "), st.Rows)
	}
	_, err = fmt.Fprintf(stdout, "tenant %s: database %s, copies made: %s\nClickHouse user %s may read %s only; its password is shown only now:\n%s\n",
		tenant, st.Database, copied, user, st.Database, password)
	return err
}

// waitLogin waits up to 30 s until user can log in: a users.d file takes
// effect when the server reloads its users.
func waitLogin(ctx context.Context, cfg warehouse.Config, user, password, db string) error {
	cfg.User, cfg.Password, cfg.DialTimeout, cfg.SessionDatabase = user, password, 3*time.Second, db
	return cmdline.Poll(ctx, 500*time.Millisecond, 30*time.Second, func() (bool, error) {
		conn, err := warehouse.Open(ctx, cfg)
		if err == nil {
			conn.Close()
		}
		return err == nil, err
	}, "user "+user+" cannot log in (is the users directory the server's?) after 30 s")
}

// waitGone waits up to 30 s until the server no longer knows user. 18.16
// says so (code 192, unknown user); current releases answer every failed
// login alike (516), and drop SQL users at once.
func waitGone(ctx context.Context, cfg warehouse.Config, user string) error {
	cfg.User, cfg.Password, cfg.DialTimeout = user, "not-the-password", 3*time.Second
	return cmdline.Poll(ctx, 500*time.Millisecond, 30*time.Second, func() (bool, error) {
		conn, err := warehouse.Open(ctx, cfg)
		if err == nil {
			conn.Close()
			return false, errors.New("logged in")
		}
		msg := err.Error()
		return strings.Contains(msg, "code: 192") || strings.Contains(msg, "code: 516"), err
	}, "the server still knows user "+user+" after 30 s")
}
