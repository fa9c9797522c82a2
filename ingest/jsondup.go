package ingest

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"strings"
)

// Duplicate keys.
//
// encoding/json lets the last of two equal keys win, and matches keys
// ignoring case, so {"user_id": "A", ..., "USER_ID": "B"} would be stored
// as a reading of B: the gateway meant one of the two and Vitals cannot
// know which. Such an object is refused instead. Only keys that name a
// field count: an unknown key is ignored however often it appears.

// jsonKeysOf returns the JSON names of struct v's fields, so that the lists
// of keys that count follow the wire forms.
func jsonKeysOf(v any) []string {
	t := reflect.TypeOf(v)
	keys := make([]string, 0, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			keys = append(keys, name)
		}
	}
	return keys
}

var (
	deviceKeys  = jsonKeysOf(jsonDevice{})
	profileKeys = jsonKeysOf(jsonProfile{})
)

// duplicateKey returns the first key of the JSON object raw that names,
// ignoring case as encoding/json does, one of fields already named before
// in the same object; "" when there is none, or when raw is not an object
// that a decoder can read (the caller's decoding reports that).
func duplicateKey(raw []byte, fields []string) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := make([]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		key, _ := tok.(string)
		for i, f := range fields {
			if strings.EqualFold(key, f) {
				if seen[i] {
					return key
				}
				seen[i] = true
				break
			}
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ""
		}
	}
	return ""
}

// duplicatePath returns the path (e.g. "code.coding[0].system") of the
// first key that appears twice, exactly, in one object of raw; "" when there
// is none or raw is not valid JSON. Objects nested deeper than depth are not
// looked into (depth 1: the top object's keys only; 0: no limit). It is for
// FHIR resources, whose members are read from maps, where the last of two
// equal keys wins.
func duplicatePath(raw []byte, depth int) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	path, _ := walkDuplicates(dec, "", depth)
	return path
}

// walkDuplicates reads one JSON value from dec, returning the path of the
// first repeated key within it; ok is false when the value cannot be read.
func walkDuplicates(dec *json.Decoder, at string, depth int) (path string, ok bool) {
	if depth == 1 {
		// Keys at this level only: read each member's value whole.
		return walkMembers(dec, at, func(string) (string, bool) {
			var skip json.RawMessage
			return "", dec.Decode(&skip) == nil
		})
	}
	return walkMembers(dec, at, func(child string) (string, bool) {
		return walkDuplicates(dec, child, max(depth-1, 0))
	})
}

// walkMembers reads one JSON value; for an object it checks its keys and
// reads each member's value with member, for an array each element.
func walkMembers(dec *json.Decoder, at string, member func(child string) (string, bool)) (string, bool) {
	tok, err := dec.Token()
	if err != nil {
		return "", false
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return "", false
			}
			key, _ := kt.(string)
			child := key
			if at != "" {
				child = at + "." + key
			}
			if seen[key] {
				return child, true
			}
			seen[key] = true
			if p, ok := member(child); p != "" || !ok {
				return p, ok
			}
		}
	case json.Delim('['):
		for i := 0; dec.More(); i++ {
			if p, ok := member(at + "[" + strconv.Itoa(i) + "]"); p != "" || !ok {
				return p, ok
			}
		}
	default:
		return "", true
	}
	_, err = dec.Token() // the closing delimiter
	return "", err == nil
}
