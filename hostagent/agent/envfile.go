package agent

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

// Environment files in systemd's EnvironmentFile= grammar (systemd
// src/basic/env-file.c, parse_env_file_internal): KEY=VALUE lines, '#' and
// ';' comment lines, whitespace around key and unquoted value dropped, a
// backslash escaping the next character (a trailing one joins lines), and
// single- or double-quoted values that may span lines. The agent writes
// BROKER_CAP_PUBKEY_PEM, a multi-line PEM, that way.

// ParseEnv parses an environment file into KEY=VALUE strings, in order (a
// later assignment of a key wins, as in systemd).
func ParseEnv(b []byte) ([]string, error) {
	var out []string
	s := string(b)
	i := 0
	line := 1
	for i < len(s) {
		// Skip blank space and comment lines.
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
			if s[i] == '\n' {
				line++
			}
			i++
		}
		if i >= len(s) {
			break
		}
		if s[i] == '#' || s[i] == ';' {
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		}
		start := i
		for i < len(s) && s[i] != '=' && s[i] != '\n' {
			i++
		}
		if i >= len(s) || s[i] != '=' {
			return nil, fmt.Errorf("line %d: %q has no '='", line, strings.TrimSpace(s[start:i]))
		}
		key := strings.TrimSpace(s[start:i])
		i++
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		var val strings.Builder
		lastNonSpace := 0
		for i < len(s) && s[i] != '\n' {
			c := s[i]
			switch c {
			case '\'':
				j := strings.IndexByte(s[i+1:], '\'')
				if j < 0 {
					return nil, fmt.Errorf("line %d: unterminated single quote in %s", line, key)
				}
				seg := s[i+1 : i+1+j]
				line += strings.Count(seg, "\n")
				val.WriteString(seg)
				lastNonSpace = val.Len()
				i += j + 2
				continue
			case '"':
				i++
				for {
					if i >= len(s) {
						return nil, fmt.Errorf("line %d: unterminated double quote in %s", line, key)
					}
					d := s[i]
					if d == '"' {
						i++
						break
					}
					if d == '\\' && i+1 < len(s) {
						n := s[i+1]
						switch {
						case n == '\n':
							line++
						case strings.IndexByte("\"\\`$", n) >= 0:
							val.WriteByte(n)
						default:
							val.WriteByte('\\')
							val.WriteByte(n)
						}
						i += 2
						continue
					}
					if d == '\n' {
						line++
					}
					val.WriteByte(d)
					i++
				}
				lastNonSpace = val.Len()
				continue
			case '\\':
				if i+1 < len(s) {
					if s[i+1] == '\n' {
						line++
					} else {
						val.WriteByte(s[i+1])
						lastNonSpace = val.Len()
					}
					i += 2
					continue
				}
				i++
				continue
			}
			val.WriteByte(c)
			if c != ' ' && c != '\t' && c != '\r' {
				lastNonSpace = val.Len()
			}
			i++
		}
		v := val.String()[:lastNonSpace]
		if key == "" || strings.ContainsAny(key, " \t") {
			return nil, fmt.Errorf("line %d: %q is not a variable name", line, key)
		}
		out = append(out, key+"="+v)
	}
	return out, nil
}

// ReadEnvFile parses the environment file at path.
func ReadEnvFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	kv, err := ParseEnv(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return kv, nil
}

// EnvMap parses an environment file into a map (later assignments win).
func EnvMap(b []byte) (map[string]string, error) {
	kv, err := ParseEnv(b)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range kv {
		k, v, _ := strings.Cut(l, "=")
		m[k] = v
	}
	return m, nil
}

// bare are the characters a value may hold unquoted.
func bare(v string) bool {
	for _, c := range v {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.,:/@+=%", c)) {
			return false
		}
	}
	return true
}

// QuoteEnv renders a value for an environment file: bare when safe, else
// double-quoted with \" \\ \` \$ escaped (newlines kept).
func QuoteEnv(v string) string {
	if bare(v) {
		return v
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "`", "\\`", `$`, `\$`)
	return `"` + r.Replace(v) + `"`
}

// RenderEnv renders m, keys sorted, after a comment header.
func RenderEnv(header string, m map[string]string) []byte {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(header, "\n"), "\n") {
		if l != "" {
			b.WriteString("# " + l + "\n")
		}
	}
	for _, k := range keys {
		b.WriteString(k + "=" + QuoteEnv(m[k]) + "\n")
	}
	return []byte(b.String())
}
