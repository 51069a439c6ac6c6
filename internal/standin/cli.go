package standin

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
)

// A small clap 4 (derive) emulation: long options with `--opt v` and
// `--opt=v`, SetTrue flags, `env = "..."` fallbacks (used when the option
// is absent from the command line, even when the variable is empty, as
// clap's add_env does), defaults, required options, value enums and
// subcommands. Errors print clap's shape on stderr and exit 2; -h/--help
// (and -V/--version where the command has `version`) print to stdout and
// exit 0.

type opt struct {
	long     string
	value    string // value name; "" = a SetTrue flag
	env      string
	def      string
	hasDef   bool
	required bool
	possible []string
	parse    func(string) error // clap's value parser for the field type
	path     bool               // a PathBuf field
}

type command struct {
	name    string
	about   string
	version string // "" = no --version
	opts    []opt
	subs    []*command
}

type matches struct {
	vals map[string]string
	from map[string]string // "cli", "env" or "default"
	sub  string
	subm *matches
}

func (m *matches) get(long string) string { return m.vals[long] }
func (m *matches) has(long string) bool   { _, ok := m.vals[long]; return ok }

// cliExit is a parse outcome that ends the process: a usage error (2) or
// help/version (0).
type cliExit struct {
	code   int
	stdout string
	stderr string
}

func (c *command) usage() string {
	u := "Usage: " + c.name
	for _, o := range c.opts {
		if !o.required {
			u += " [OPTIONS]"
			break
		}
	}
	if len(c.subs) > 0 {
		u += " [COMMAND]"
	}
	for _, o := range c.opts {
		if o.required {
			u += " " + o.display()
		}
	}
	return u
}

func (o opt) display() string {
	if o.value == "" {
		return "--" + o.long
	}
	return "--" + o.long + " <" + o.value + ">"
}

func (c *command) fail(msg string) *cliExit {
	return &cliExit{code: 2, stderr: "error: " + msg + "\n\n" + c.usage() + "\n\nFor more information, try '--help'.\n"}
}

func (c *command) help() *cliExit {
	var b strings.Builder
	if c.about != "" {
		b.WriteString(c.about + "\n\n")
	}
	b.WriteString(c.usage() + "\n")
	if len(c.subs) > 0 {
		b.WriteString("\nCommands:\n")
		for _, s := range c.subs {
			fmt.Fprintf(&b, "  %s\n", s.name)
		}
		b.WriteString("  help\n")
	}
	b.WriteString("\nOptions:\n")
	for _, o := range c.opts {
		line := "  " + o.display()
		if o.env != "" {
			line += " [env: " + o.env + "=]"
		}
		if o.hasDef {
			line += " [default: " + o.def + "]"
		}
		if len(o.possible) > 0 {
			line += " [possible values: " + strings.Join(o.possible, ", ") + "]"
		}
		b.WriteString(line + "\n")
	}
	b.WriteString("  -h, --help\n")
	if c.version != "" {
		b.WriteString("  -V, --version\n")
	}
	return &cliExit{stdout: b.String()}
}

func (c *command) opt(long string) (opt, bool) {
	for _, o := range c.opts {
		if o.long == long {
			return o, true
		}
	}
	return opt{}, false
}

func (c *command) parse(args []string) (*matches, *cliExit) {
	m := &matches{vals: map[string]string{}, from: map[string]string{}}
	set := func(o opt, v string) *cliExit {
		if m.from[o.long] == "cli" {
			return c.fail(fmt.Sprintf("the argument '%s' cannot be used multiple times", o.display()))
		}
		if err := o.check(v); err != nil {
			return c.fail(err.Error())
		}
		m.vals[o.long], m.from[o.long] = v, "cli"
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			if i+1 < len(args) {
				return nil, c.fail(fmt.Sprintf("unexpected argument '%s' found", args[i+1]))
			}
		case strings.HasPrefix(a, "--"):
			name, inline, hasInline := strings.Cut(a[2:], "=")
			if name == "help" {
				return nil, c.help()
			}
			if name == "version" && c.version != "" {
				return nil, &cliExit{stdout: c.name + " " + c.version + "\n"}
			}
			o, ok := c.opt(name)
			if !ok {
				return nil, c.fail(fmt.Sprintf("unexpected argument '--%s' found", name))
			}
			if o.value == "" {
				if hasInline {
					return nil, c.fail(fmt.Sprintf("unexpected value '%s' for '--%s' found; no more were expected", inline, name))
				}
				if e := set(o, "true"); e != nil {
					return nil, e
				}
				continue
			}
			v := inline
			if !hasInline {
				if i+1 >= len(args) || (strings.HasPrefix(args[i+1], "-") && args[i+1] != "-") {
					return nil, c.fail(fmt.Sprintf("a value is required for '%s' but none was supplied", o.display()))
				}
				i++
				v = args[i]
			}
			if e := set(o, v); e != nil {
				return nil, e
			}
		case strings.HasPrefix(a, "-") && a != "-":
			switch {
			case a == "-h":
				return nil, c.help()
			case a == "-V" && c.version != "":
				return nil, &cliExit{stdout: c.name + " " + c.version + "\n"}
			}
			return nil, c.fail(fmt.Sprintf("unexpected argument '%s' found", a))
		default:
			if len(c.subs) > 0 && a == "help" {
				return nil, c.help()
			}
			for _, s := range c.subs {
				if s.name == a {
					sub := *s
					sub.name = c.name + " " + s.name // clap's usage names the path
					sm, e := sub.parse(args[i+1:])
					if e != nil {
						return nil, e
					}
					m.sub, m.subm = a, sm
					return m, c.finish(m)
				}
			}
			return nil, c.fail(fmt.Sprintf("unexpected argument '%s' found", a))
		}
	}
	return m, c.finish(m)
}

// finish applies env fallbacks and defaults and checks required options.
func (c *command) finish(m *matches) *cliExit {
	var missing []string
	for _, o := range c.opts {
		if _, ok := m.vals[o.long]; ok {
			continue
		}
		if o.env != "" {
			if v, ok := os.LookupEnv(o.env); ok {
				if err := o.check(v); err != nil {
					return c.fail(err.Error())
				}
				m.vals[o.long], m.from[o.long] = v, "env"
				continue
			}
		}
		switch {
		case o.hasDef:
			m.vals[o.long], m.from[o.long] = o.def, "default"
		case o.required:
			missing = append(missing, "  "+o.display())
		}
	}
	if len(missing) > 0 {
		return c.fail("the following required arguments were not provided:\n" + strings.Join(missing, "\n"))
	}
	return nil
}

func (o opt) check(v string) error {
	if len(o.possible) > 0 {
		for _, p := range o.possible {
			if v == p {
				return nil
			}
		}
		return fmt.Errorf("invalid value '%s' for '%s'\n  [possible values: %s]", v, o.display(), strings.Join(o.possible, ", "))
	}
	if v == "" && o.path { // PathBufValueParser refuses an empty value
		return fmt.Errorf("a value is required for '%s' but none was supplied", o.display())
	}
	if o.parse != nil {
		if err := o.parse(v); err != nil {
			return fmt.Errorf("invalid value '%s' for '%s': %v", v, o.display(), err)
		}
	}
	return nil
}

// Value parsers, as clap's for the Rust field types.

// parseU16 is value_parser!(u16): an i64 (optional sign) in 0..=65535.
func parseU16(v string) error {
	n, err := rustInt(v, 64)
	if err != nil {
		return err
	}
	if n < 0 || n > 65535 {
		return fmt.Errorf("%d is not in 0..=65535", n)
	}
	return nil
}

// parseU64 is value_parser!(u64).
func parseU64(v string) error {
	_, err := rustUint(v)
	return err
}

// parseSocketAddr is std::net::SocketAddr's FromStr: IPv4:port or
// [IPv6(%scope-number)]:port, never a name.
func parseSocketAddr(v string) error {
	if _, err := rustSocketAddr(v); err != nil {
		return errors.New("invalid socket address syntax")
	}
	return nil
}

func rustSocketAddr(v string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(v)
	if err != nil {
		return ap, err
	}
	if z := ap.Addr().Zone(); z != "" {
		if _, err := strconv.ParseUint(z, 10, 32); err != nil {
			return ap, errors.New("non-numeric scope id")
		}
	}
	if ap.Addr().Is4() && strings.HasPrefix(v, "[") {
		return ap, errors.New("bracketed IPv4")
	}
	return ap, nil
}

// rustInt parses like Rust's i64::from_str: an optional + or - and decimal
// digits, nothing else (no spaces, no underscores).
func rustInt(v string, bits int) (int64, error) {
	s := strings.TrimPrefix(v, "+")
	if s == "" || (s != v && strings.HasPrefix(s, "-")) {
		return 0, errors.New("invalid digit found in string")
	}
	n, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return 0, rustNumErr(v, err)
	}
	return n, nil
}

// rustUint parses like Rust's u64::from_str (an optional +).
func rustUint(v string) (uint64, error) {
	s := strings.TrimPrefix(v, "+")
	if s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") {
		if v == "" {
			return 0, errors.New("cannot parse integer from empty string")
		}
		return 0, errors.New("invalid digit found in string")
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, rustNumErr(v, err)
	}
	return n, nil
}

func rustNumErr(v string, err error) error {
	if v == "" {
		return errors.New("cannot parse integer from empty string")
	}
	if errors.Is(err, strconv.ErrRange) {
		return errors.New("number too large to fit in target type")
	}
	return errors.New("invalid digit found in string")
}
