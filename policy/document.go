// Package policy builds every IAM and S3 policy document of one AgentKeys
// stack as typed values, from naming-derived names only (no lookups), so that
// each document is complete in an offline plan and testable without the engine.
package policy

import (
	"bytes"
	"encoding/json"
	"strings"
)

// Version is the only policy language version AWS still recommends.
const Version = "2012-10-17"

// Document is an IAM or S3 policy document.
type Document struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement is one policy statement. Principal, Action and Resource hold a
// string, a []string or (Principal only) a map such as {"AWS": arn}.
type Statement struct {
	Sid       string `json:"Sid,omitempty"`
	Effect    string `json:"Effect,omitempty"`
	Principal any    `json:"Principal,omitempty"`
	Action    any    `json:"Action,omitempty"`
	Resource  any    `json:"Resource,omitempty"`
	// NotResource: every resource but these (deny-all-but statements).
	NotResource any                       `json:"NotResource,omitempty"`
	Condition   map[string]map[string]any `json:"Condition,omitempty"`
}

// JSON renders the document compactly. Struct fields keep their order and
// encoding/json sorts map keys, so equal documents render to equal bytes and
// a re-plan shows no spurious diff.
func (d Document) JSON() string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Policy variables and ARNs carry no HTML; keep '&', '<', '>' literal anyway.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		// Only strings, slices and maps of them reach here: a failure is a programming error.
		panic("policy: cannot encode document: " + err.Error())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// StatementBySid returns the statement with the given Sid and whether it exists.
func (d Document) StatementBySid(sid string) (Statement, bool) {
	for _, s := range d.Statement {
		if s.Sid == sid {
			return s, true
		}
	}
	return Statement{}, false
}

// Strings normalises a Principal/Action/Resource value ("x" or []string) to a slice.
func Strings(v any) []string {
	switch t := v.(type) {
	case nil:
		return nil
	case string:
		return []string{t}
	case []string:
		return t
	case []any:
		out := make([]string, 0, len(t))
		for _, e := range t {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
