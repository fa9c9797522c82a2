// Package ident is the one rule for the identifiers Vitals accepts from
// outside (tenant, user, device, event and gateway ids): 1 to 128 bytes of
// [A-Za-z0-9._:@-]. Ingest applies it to what gateways send, and the query
// service to what analysts ask for, so an id that could be stored can
// always be asked for, and nothing else reaches a query.
package ident

import "fmt"

// MaxLen is the longest identifier in bytes.
const MaxLen = 128

// Check reports why v is not a valid identifier, naming it field, or nil.
func Check(field, v string) error {
	if v == "" || len(v) > MaxLen {
		return fmt.Errorf("%s must be 1 to %d characters long, got %d", field, MaxLen, len(v))
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.', c == '_', c == ':', c == '@', c == '-':
		default:
			return fmt.Errorf("%s has a character outside [A-Za-z0-9._:@-] at byte %d", field, i)
		}
	}
	return nil
}
