package policy_test

import (
	"fmt"
	"strconv"
	"strings"
)

// A small evaluator of GitHub Actions expressions, enough for the `if:`
// conditions and env values of docs/github-actions.yml: contexts, string,
// number and boolean literals, == != < > ! && || (returning operand values,
// as GitHub does), parentheses, and always/success/startsWith/contains.
// Strings compare case-insensitively, as in GitHub.

type ghaExpr struct {
	toks []string
	pos  int
	ctx  map[string]any
}

// ghaEval evaluates src (with or without ${{ }}) against ctx, a nested map.
func ghaEval(src string, ctx map[string]any) (any, error) {
	src = strings.TrimSpace(src)
	if strings.HasPrefix(src, "${{") && strings.HasSuffix(src, "}}") && strings.Count(src, "${{") == 1 {
		src = strings.TrimSpace(src[3 : len(src)-2])
	}
	toks, err := ghaLex(src)
	if err != nil {
		return nil, err
	}
	e := &ghaExpr{toks: toks, ctx: ctx}
	v, err := e.or()
	if err != nil {
		return nil, err
	}
	if e.pos != len(e.toks) {
		return nil, fmt.Errorf("unexpected %q in %q", e.toks[e.pos], src)
	}
	return v, nil
}

func ghaLex(s string) ([]string, error) {
	var out []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '\'':
			j := i + 1
			for ; j < len(s); j++ {
				if s[j] == '\'' {
					if j+1 < len(s) && s[j+1] == '\'' {
						j++
						continue
					}
					break
				}
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string in %q", s)
			}
			out = append(out, s[i:j+1])
			i = j + 1
		case strings.HasPrefix(s[i:], "&&") || strings.HasPrefix(s[i:], "||") || strings.HasPrefix(s[i:], "==") || strings.HasPrefix(s[i:], "!="):
			out = append(out, s[i:i+2])
			i += 2
		case strings.ContainsRune("()[],!<>", rune(c)):
			out = append(out, string(c))
			i++
		default:
			j := i
			for j < len(s) && (isIdent(s[j]) || s[j] == '.' || s[j] == '*') {
				j++
			}
			if j == i {
				return nil, fmt.Errorf("unexpected %q in %q", c, s)
			}
			out = append(out, s[i:j])
			i = j
		}
	}
	return out, nil
}

func isIdent(c byte) bool {
	return c == '_' || c == '-' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

func (e *ghaExpr) peek() string {
	if e.pos < len(e.toks) {
		return e.toks[e.pos]
	}
	return ""
}

func (e *ghaExpr) next() string { t := e.peek(); e.pos++; return t }

func (e *ghaExpr) or() (any, error) {
	v, err := e.and()
	for err == nil && e.peek() == "||" {
		e.next()
		var r any
		r, err = e.and()
		if !truthy(v) {
			v = r
		}
	}
	return v, err
}

func (e *ghaExpr) and() (any, error) {
	v, err := e.unary()
	for err == nil && e.peek() == "&&" {
		e.next()
		var r any
		r, err = e.unary()
		if truthy(v) {
			v = r
		}
	}
	return v, err
}

func (e *ghaExpr) unary() (any, error) {
	if e.peek() == "!" {
		e.next()
		v, err := e.unary()
		return !truthy(v), err
	}
	return e.cmp()
}

func (e *ghaExpr) cmp() (any, error) {
	l, err := e.primary()
	if err != nil {
		return nil, err
	}
	switch op := e.peek(); op {
	case "==", "!=", "<", ">":
		e.next()
		r, err := e.primary()
		if err != nil {
			return nil, err
		}
		eq := looseEqual(l, r)
		switch op {
		case "==":
			return eq, nil
		case "!=":
			return !eq, nil
		case "<":
			return num(l) < num(r), nil
		default:
			return num(l) > num(r), nil
		}
	}
	return l, nil
}

func (e *ghaExpr) primary() (any, error) {
	t := e.next()
	switch {
	case t == "(":
		v, err := e.or()
		if e.next() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		return v, err
	case strings.HasPrefix(t, "'"):
		return strings.ReplaceAll(t[1:len(t)-1], "''", "'"), nil
	case t == "true" || t == "false":
		return t == "true", nil
	case t == "null":
		return nil, nil
	case t != "" && (t[0] >= '0' && t[0] <= '9'):
		f, err := strconv.ParseFloat(t, 64)
		return f, err
	case e.peek() == "(":
		e.next()
		var args []any
		for e.peek() != ")" {
			v, err := e.or()
			if err != nil {
				return nil, err
			}
			args = append(args, v)
			if e.peek() == "," {
				e.next()
			}
		}
		e.next()
		return ghaCall(t, args)
	default:
		v := lookup(e.ctx, t)
		for e.peek() == "[" {
			e.next()
			k, err := e.or()
			if err != nil {
				return nil, err
			}
			e.next() // ]
			m, _ := v.(map[string]any)
			v = m[fmt.Sprint(k)]
		}
		return v, nil
	}
}

func ghaCall(name string, args []any) (any, error) {
	str := func(i int) string {
		if i < len(args) && args[i] != nil {
			return fmt.Sprint(args[i])
		}
		return ""
	}
	switch strings.ToLower(name) {
	case "always", "success":
		return true, nil
	case "failure", "cancelled":
		return false, nil
	case "startswith":
		return strings.HasPrefix(strings.ToLower(str(0)), strings.ToLower(str(1))), nil
	case "contains":
		return strings.Contains(strings.ToLower(str(0)), strings.ToLower(str(1))), nil
	case "format":
		s := str(0)
		for i := 1; i < len(args); i++ {
			s = strings.ReplaceAll(s, "{"+strconv.Itoa(i-1)+"}", str(i))
		}
		return s, nil
	}
	return nil, fmt.Errorf("function %s() is not known to the test evaluator", name)
}

func lookup(ctx map[string]any, path string) any {
	var v any = ctx
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

func truthy(v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	case string:
		return t != ""
	case float64:
		return t != 0
	}
	return true
}

func num(v any) float64 {
	switch t := v.(type) {
	case float64:
		return t
	case bool:
		if t {
			return 1
		}
	case string:
		f, _ := strconv.ParseFloat(t, 64)
		return f
	}
	return 0
}

func looseEqual(a, b any) bool {
	as, aok := a.(string)
	bs, bok := b.(string)
	if aok && bok {
		return strings.EqualFold(as, bs)
	}
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return num(a) == num(b)
}
