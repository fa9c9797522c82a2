package audit

import (
	"os"
	"os/user"
)

// CommandRecord is the record of an access made by a command rather than
// through the query API, e.g. an export of a person's data: append it
// with Store.Append before the data is written out, and do not write the
// data if Append fails. The actor is the operating-system user and host
// that ran the command. target describes what was asked (e.g.
// "format=fhir since=2026-01-01"); it must not hold secrets, so pass a
// description rather than the raw command line (which may carry a
// database URL with its password). Rows is the caller's to set; Status is
// 200, for data handed out.
func CommandRecord(action, tenant, person, target string) Record {
	who := "unknown"
	if u, err := user.Current(); err == nil {
		who = u.Username
	}
	host, _ := os.Hostname()
	return Record{Tenant: tenant, Actor: "cmd:" + who + "@" + host, Action: action, Target: target, User: person, Status: 200}
}
