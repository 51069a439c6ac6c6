package audit

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
	"reflect"
	"sort"
	"strings"
)

// stmt is a live policy statement, normalised.
type stmt struct {
	Sid        string
	Effect     string
	Principals map[string][]string // "AWS"/"Federated"/"Service"/"*" -> values
	Actions    []string
	NotAction  bool
	Resources  []string
	Condition  map[string]map[string][]string
}

// parseDoc decodes a policy document as IAM returns it (URL-encoded JSON).
func parseDoc(raw string) ([]stmt, error) {
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		if u, err := url.PathUnescape(raw); err == nil {
			raw = u
		}
	}
	var doc struct {
		Statement json.RawMessage
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, fmt.Errorf("policy is not JSON: %v", err)
	}
	var list []map[string]any
	if err := json.Unmarshal(doc.Statement, &list); err != nil {
		var one map[string]any
		if err2 := json.Unmarshal(doc.Statement, &one); err2 != nil {
			return nil, fmt.Errorf("policy Statement is neither an object nor a list: %v", err)
		}
		list = []map[string]any{one}
	}
	out := make([]stmt, 0, len(list))
	for _, m := range list {
		s := stmt{Principals: map[string][]string{}, Condition: map[string]map[string][]string{}}
		s.Sid, _ = m["Sid"].(string)
		s.Effect, _ = m["Effect"].(string)
		if a, ok := m["NotAction"]; ok {
			s.NotAction, s.Actions = true, strs(a)
		} else {
			s.Actions = strs(m["Action"])
		}
		s.Resources = strs(m["Resource"])
		if _, ok := m["NotResource"]; ok {
			s.Resources = []string{"*"}
		}
		switch p := m["Principal"].(type) {
		case string:
			s.Principals["*"] = []string{p}
		case map[string]any:
			for k, v := range p {
				s.Principals[k] = strs(v)
			}
		}
		if c, ok := m["Condition"].(map[string]any); ok {
			for op, kv := range c {
				mm, _ := kv.(map[string]any)
				s.Condition[op] = map[string][]string{}
				for k, v := range mm {
					s.Condition[op][k] = strs(v)
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func strs(v any) []string {
	switch t := v.(type) {
	case string:
		return []string{t}
	case bool:
		return []string{fmt.Sprint(t)}
	case []any:
		var out []string
		for _, e := range t {
			out = append(out, strs(e)...)
		}
		return out
	}
	return nil
}

// glob matches IAM wildcards (* and ?), case-insensitively for actions.
func glob(pattern, s string, fold bool) bool {
	if fold {
		pattern, s = strings.ToLower(pattern), strings.ToLower(s)
	}
	// path.Match treats '/' specially; ARNs contain '/', so escape it away.
	const slash = "\x00"
	ok, err := path.Match(strings.ReplaceAll(escapeBrackets(pattern), "/", slash), strings.ReplaceAll(s, "/", slash))
	return err == nil && ok
}

func escapeBrackets(p string) string {
	return strings.NewReplacer("[", `\[`, "]", `\]`, `\`, `\\`).Replace(p)
}

// covers reports whether every item of live is matched by some pattern of declared.
func covers(declared, live []string, fold bool) bool {
	for _, l := range live {
		ok := false
		for _, d := range declared {
			if glob(d, l, fold) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func sortedCopy(v []string) []string {
	c := append([]string(nil), v...)
	sort.Strings(c)
	return c
}

// stmtCovered: an Allow statement is no broader than a declared one when its
// actions, resources and principals fall within the declared ones and it keeps
// every declared condition.
func stmtCovered(live stmt, declared []stmt) bool {
	if live.Effect != "Allow" {
		return true // a Deny never widens access
	}
	if live.NotAction {
		return false
	}
	for _, d := range declared {
		if d.Effect != "Allow" || d.NotAction {
			continue
		}
		if !covers(d.Actions, live.Actions, true) {
			continue
		}
		if len(d.Resources) > 0 || len(live.Resources) > 0 {
			if !covers(d.Resources, live.Resources, false) {
				continue
			}
		}
		if !principalsCovered(d.Principals, live.Principals) {
			continue
		}
		if !conditionsKept(d.Condition, live.Condition) {
			continue
		}
		return true
	}
	return false
}

func principalsCovered(d, l map[string][]string) bool {
	for k, lv := range l {
		if !covers(d[k], lv, false) {
			return false
		}
	}
	return true
}

func conditionsKept(d, l map[string]map[string][]string) bool {
	for op, kv := range d {
		for k, v := range kv {
			if !reflect.DeepEqual(sortedCopy(l[op][k]), sortedCopy(v)) {
				return false
			}
		}
	}
	return true
}

// wildcardActions lists Allow actions that contain a wildcard.
func wildcardActions(ss []stmt) []string {
	var out []string
	for _, s := range ss {
		if s.Effect != "Allow" {
			continue
		}
		if s.NotAction {
			out = append(out, "NotAction "+strings.Join(s.Actions, ","))
			continue
		}
		for _, a := range s.Actions {
			if strings.ContainsAny(a, "*?") {
				out = append(out, a)
			}
		}
	}
	return out
}

// allows reports whether the statements allow action on resource: an Allow
// matches and no Deny does. Conditions are not evaluated (the grants
// checked here carry none).
func allows(ss []stmt, action, resource string) bool {
	match := func(s stmt) bool {
		if s.NotAction {
			if covers(s.Actions, []string{action}, true) {
				return false
			}
		} else if !covers(s.Actions, []string{action}, true) {
			return false
		}
		return covers(s.Resources, []string{resource}, false)
	}
	ok := false
	for _, s := range ss {
		if !match(s) {
			continue
		}
		if s.Effect == "Deny" {
			return false
		}
		ok = ok || s.Effect == "Allow"
	}
	return ok
}

// canonStmt renders a statement with every list sorted and single values
// as one-element lists, so equal policies compare equal however they were
// spelled (AWS may reorder or unwrap).
func canonStmt(m map[string]any) (string, string) {
	var norm func(v any) any
	norm = func(v any) any {
		switch t := v.(type) {
		case string:
			return []string{t}
		case bool:
			return []string{fmt.Sprint(t)}
		case []any:
			var out []string
			for _, e := range t {
				out = append(out, strs(e)...)
			}
			sort.Strings(out)
			return out
		case map[string]any:
			o := map[string]any{}
			for k, e := range t {
				o[k] = norm(e)
			}
			return o
		}
		return v
	}
	c := map[string]any{}
	sid, _ := m["Sid"].(string)
	for k, v := range m {
		if k != "Sid" {
			c[k] = norm(v)
		}
	}
	b, _ := json.Marshal(c) // map keys are sorted by encoding/json
	return sid, string(b)
}

func statements(raw string) ([]map[string]any, error) {
	if !strings.HasPrefix(strings.TrimSpace(raw), "{") {
		if u, err := url.PathUnescape(raw); err == nil {
			raw = u
		}
	}
	var doc struct{ Statement json.RawMessage }
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		return nil, err
	}
	var list []map[string]any
	if err := json.Unmarshal(doc.Statement, &list); err != nil {
		var one map[string]any
		if err := json.Unmarshal(doc.Statement, &one); err != nil {
			return nil, err
		}
		list = []map[string]any{one}
	}
	return list, nil
}

// diffPolicies lists how the live policy differs from the declared one,
// statement by statement (matched by Sid, else by content).
func diffPolicies(declared, live string) []string {
	d, err := statements(declared)
	if err != nil {
		return []string{"declared policy does not parse: " + err.Error()}
	}
	l, err := statements(live)
	if err != nil {
		return []string{"live policy does not parse: " + err.Error()}
	}
	type entry struct{ sid, body string }
	index := func(ss []map[string]any) []entry {
		var out []entry
		for _, s := range ss {
			sid, body := canonStmt(s)
			out = append(out, entry{sid, body})
		}
		return out
	}
	de, le := index(d), index(l)
	used := make([]bool, len(le))
	var out []string
	for _, x := range de {
		found := false
		for i, y := range le {
			if !used[i] && y.body == x.body {
				used[i], found = true, true
				break
			}
		}
		if found {
			continue
		}
		changed := -1
		for i, y := range le {
			if !used[i] && x.sid != "" && y.sid == x.sid {
				changed = i
				break
			}
		}
		if changed >= 0 {
			used[changed] = true
			out = append(out, fmt.Sprintf("statement %q differs from the declared one: live %s, declared %s", x.sid, le[changed].body, x.body))
		} else {
			out = append(out, fmt.Sprintf("declared statement %q is missing: %s", x.sid, x.body))
		}
	}
	for i, y := range le {
		if !used[i] {
			out = append(out, fmt.Sprintf("statement %q is not declared: %s", y.sid, y.body))
		}
	}
	return out
}
