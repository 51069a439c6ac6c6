package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"golang.org/x/crypto/ssh"

	hostagente2e "github.com/agentkeys/agentkeys-infra/hostagent/e2e"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/infra/program"
)

// moduleDir is the project directory (Pulumi.<stack>.yaml) from this package.
const moduleDir = "../.."

// stackConfig is the stack's committed config plus the keys a real
// deployment sets: the SSH user and key, the host key to pin, the AgentKeys
// repository and the DNS resolver the certificate step asks.
func stackConfig(t *testing.T, stack string, set map[string]string) map[string]string {
	t.Helper()
	raw, err := config.ReadStackFile(moduleDir, stack)
	must(t, err)
	vals := map[string]string{}
	for k, v := range raw.Values {
		vals[k] = v
	}
	for k, v := range set {
		vals["agentkeys:"+k] = v
	}
	return vals
}

// declare runs the program for stack under the mock engine as an update;
// summary is what the apply command "printed" (the cloud's answer).
func declare(t *testing.T, stack string, vals map[string]string, summary string) *plan.Plan {
	t.Helper()
	return declareWith(t, stack, vals, summary, nil)
}

// declareWith is declare with more invoke answers (the live certificate chain).
func declareWith(t *testing.T, stack string, vals map[string]string, summary string, extra map[string]plan.Answer) *plan.Plan {
	t.Helper()
	cfg, err := config.Parse(stack, vals)
	must(t, err)
	answers := map[string]plan.Answer{
		"aws:ec2/getEips:getEips": func(resource.PropertyMap) (resource.PropertyMap, error) {
			return resource.NewPropertyMapFromMap(map[string]any{"allocationIds": []any{}, "publicIps": []any{}}), nil
		},
		// A fresh account: no OIDC provider yet.
		"aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider": func(args resource.PropertyMap) (resource.PropertyMap, error) {
			return nil, fmt.Errorf("reading IAM OIDC Provider (%s): NoSuchEntity", args["arn"].StringValue())
		},
	}
	for k, a := range extra {
		answers[k] = a
	}
	p, err := plan.Run(stack, program.Declare, plan.Options{
		Config: vals, SecretKeys: []string{"agentkeys:sshPrivateKey"},
		Answers: answers,
		State: func(typ, name string, in resource.PropertyMap) resource.PropertyMap {
			switch typ {
			case "aws:ec2/eip:Eip":
				return resource.NewPropertyMapFromMap(map[string]any{"publicIp": hostAddr, "allocationId": "eipalloc-0123456789abcdef0"})
			case "command:remote:Command":
				return resource.NewPropertyMapFromMap(map[string]any{"stdout": summary, "stderr": ""})
			case "aws:iam/role:Role":
				return resource.NewPropertyMapFromMap(map[string]any{"arn": "arn:aws:iam::123456789012:role/" + in["name"].StringValue()})
			case "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
				return resource.NewPropertyMapFromMap(map[string]any{"arn": cfg.Names().OIDCProviderARN})
			case "aws:iam/accessKey:AccessKey":
				return resource.NewPropertyMapFromMap(map[string]any{"secret": "secret-" + name})
			case "aws:sesv2/emailIdentity:EmailIdentity":
				return resource.NewPropertyMapFromMap(map[string]any{"dkimSigningAttributes": map[string]any{"tokens": []any{"t0", "t1", "t2"}}})
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("plan %s: %v", stack, err)
	}
	return p
}

// connection is a declared pulumi-command connection.
type connection struct {
	Host, User, PrivateKey, HostKey string
	Port                            int
}

// remoteStep is one declared remote resource: a copy (Content to Path) or a
// command (Script), in the order the engine would run them.
type remoteStep struct {
	Name    string
	Conn    connection
	Path    string // copy: remotePath
	Content []byte // copy: the asset's bytes
	Script  string // command: create
	Stdin   string // command: stdin
	Env     map[string]string
}

func (s remoteStep) isCopy() bool { return s.Script == "" }

func plain(v resource.PropertyValue) resource.PropertyValue {
	for {
		switch {
		case v.IsSecret():
			v = v.SecretValue().Element
		case v.IsOutput():
			v = v.OutputValue().Element
		default:
			return v
		}
	}
}

func str(m resource.PropertyMap, k string) string {
	v, ok := m[resource.PropertyKey(k)]
	if !ok {
		return ""
	}
	v = plain(v)
	if v.IsString() {
		return v.StringValue()
	}
	if v.IsNumber() {
		return fmt.Sprint(v.NumberValue())
	}
	return ""
}

func conn(t *testing.T, r *plan.Resource) connection {
	t.Helper()
	v := plain(r.Raw()["connection"])
	if !v.IsObject() {
		t.Fatalf("%s: connection is not a known object: %v", r.Name, v)
	}
	m := v.ObjectValue()
	c := connection{Host: str(m, "host"), User: str(m, "user"), PrivateKey: str(m, "privateKey"), HostKey: str(m, "hostKey"), Port: 22}
	if p := plain(m["port"]); p.IsNumber() {
		c.Port = int(p.NumberValue())
	}
	if c.Host == "" || c.User == "" || c.PrivateKey == "" {
		t.Fatalf("%s: connection lacks host, user or private key", r.Name)
	}
	return c
}

// bringUpSteps extracts the declared copies and command in dependency order
// (each step after every step it depends on), with the assets' bytes.
func bringUpSteps(t *testing.T, p *plan.Plan) []remoteStep {
	t.Helper()
	rs := append(p.Find("command:remote:CopyToRemote", ""), p.Find("command:remote:Command", "")...)
	if len(rs) == 0 {
		t.Fatal("the program declares no remote resources (is agentkeys:sshPrivateKey set?)")
	}
	// Topological order, ties in URN order: what the engine may run first.
	var ordered []*plan.Resource
	for len(rs) > 0 {
		next := -1
		for i, r := range rs {
			ready := true
			for j, o := range rs {
				if i != j && p.DependsOn(r.URN, o.URN) {
					ready = false
				}
			}
			if ready {
				next = i
				break
			}
		}
		if next < 0 {
			t.Fatal("the remote resources depend on each other in a cycle")
		}
		ordered = append(ordered, rs[next])
		rs = append(rs[:next:next], rs[next+1:]...)
	}
	rs = ordered
	var out []remoteStep
	for _, r := range rs {
		raw := r.Raw()
		s := remoteStep{Name: r.Name, Conn: conn(t, r)}
		if r.Type == "command:remote:CopyToRemote" {
			src := plain(raw["source"])
			if !src.IsAsset() {
				t.Fatalf("%s: source is not an asset: %v", r.Name, src)
			}
			a := src.AssetValue()
			switch {
			case a.IsText():
				s.Content = []byte(a.Text)
			case a.IsPath():
				b, err := os.ReadFile(a.Path)
				must(t, err)
				s.Content = b
			default:
				t.Fatalf("%s: unsupported asset %v", r.Name, a)
			}
			s.Path = str(raw, "remotePath")
			if s.Path == "" {
				t.Fatalf("%s: no remotePath", r.Name)
			}
		} else {
			s.Script = str(raw, "create")
			if s.Script == "" {
				t.Fatalf("%s: no create script", r.Name)
			}
			s.Stdin = str(raw, "stdin")
			if env := plain(raw["environment"]); env.IsObject() {
				s.Env = map[string]string{}
				for k, v := range env.ObjectValue() {
					s.Env[string(k)] = plain(v).StringValue()
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// declaredSpec is the host spec the program stages on the host (the stage
// command's stdin).
func declaredSpec(t *testing.T, steps []remoteStep) *spec.HostSpec {
	t.Helper()
	for _, s := range steps {
		if !s.isCopy() && s.Stdin != "" {
			sp, err := spec.Decode(strings.NewReader(s.Stdin))
			if err != nil {
				t.Fatalf("declared host spec: %v", err)
			}
			return sp
		}
	}
	t.Fatal("no declared command passes the host spec on stdin")
	return nil
}

// sshClient connects as the declared connection says: user, private key,
// host key pinned when declared; dialed inside the host's namespace.
func sshClient(ctx context.Context, h *host, c connection) (*ssh.Client, error) {
	signer, err := ssh.ParsePrivateKey([]byte(c.PrivateKey))
	if err != nil {
		return nil, fmt.Errorf("declared private key: %w", err)
	}
	cb := ssh.InsecureIgnoreHostKey() // pulumi-command without HostKey
	if c.HostKey != "" {
		pk, _, _, _, err := ssh.ParseAuthorizedKey([]byte(c.HostKey))
		if err != nil {
			return nil, fmt.Errorf("declared host key: %w", err)
		}
		cb = ssh.FixedHostKey(pk)
	}
	addr := fmt.Sprintf("%s:%d", c.Host, c.Port)
	nc, err := hostagente2e.DialInNetns(h.NetNS, addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	cc, chans, reqs, err := ssh.NewClientConn(nc, addr, &ssh.ClientConfig{User: c.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: cb, Timeout: 10 * time.Second})
	if err != nil {
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(cc, chans, reqs), nil
}

// result is what one declared step did on the host.
type result struct {
	Name           string
	Stdout, Stderr string
	Took           time.Duration
	Err            error
}

// sftpCopy does what pulumi-command's CopyToRemote does with a file asset:
// over the sftp subsystem, into dest (or dest/<name> when dest is a
// directory), creating the file but no missing parent directory.
func sftpCopy(cl *ssh.Client, s remoteStep) (r result) {
	r.Name = s.Name
	start := time.Now()
	defer func() { r.Took = time.Since(start) }()
	sc, err := sftp.NewClient(cl, sftp.UseConcurrentWrites(true))
	if err != nil {
		r.Err = fmt.Errorf("sftp subsystem: %w", err)
		return r
	}
	defer sc.Close()
	dest := s.Path
	if st, err := sc.Stat(dest); err == nil && st.IsDir() {
		dest = path.Join(dest, path.Base(s.Path))
	}
	f, err := sc.Create(dest)
	if err != nil {
		r.Err = fmt.Errorf("failed to create remote file %s: %w", dest, err)
		return r
	}
	defer f.Close()
	if _, err := f.ReadFrom(bytes.NewReader(s.Content)); err != nil {
		r.Err = fmt.Errorf("copy to %s: %w", dest, err)
	}
	return r
}

// run executes one declared step over a new session, bounded by ctx: a copy
// through sftp as the provider does, a command's script verbatim with its
// declared stdin.
func run(ctx context.Context, cl *ssh.Client, s remoteStep) result {
	if s.isCopy() {
		return sftpCopy(cl, s)
	}
	r := result{Name: s.Name}
	sess, err := cl.NewSession()
	if err != nil {
		r.Err = err
		return r
	}
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errb
	cmdline := s.Script
	if s.Stdin != "" {
		sess.Stdin = strings.NewReader(s.Stdin)
	}
	for k, v := range s.Env {
		if err := sess.Setenv(k, v); err != nil {
			r.Err = fmt.Errorf("setenv %s (sshd AcceptEnv): %w", k, err)
			return r
		}
	}
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- sess.Run(cmdline) }()
	select {
	case r.Err = <-done:
	case <-ctx.Done():
		sess.Signal(ssh.SIGKILL)
		cl.Close()
		r.Err = fmt.Errorf("%s: %w", s.Name, ctx.Err())
	}
	r.Took = time.Since(start)
	r.Stdout, r.Stderr = out.String(), errb.String()
	return r
}

// replay runs every declared step in order, as `pulumi up` would, stopping
// at the first failure. The last result is the apply command's.
func replay(t *testing.T, h *host, steps []remoteStep, timeout time.Duration) []result {
	t.Helper()
	for _, s := range steps {
		// Without the sandbox hook the agent would converge this machine.
		if s.isCopy() && path.Base(s.Path) == "agentkeys-hostagent" && !bytes.Contains(s.Content, []byte(hostagentRootEnv)) {
			t.Fatalf("the declared agent binary lacks the %s test hook; refusing to run it on this machine", hostagentRootEnv)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var out []result
	for _, s := range steps {
		cl, err := sshClient(ctx, h, s.Conn)
		if err != nil {
			out = append(out, result{Name: s.Name, Err: fmt.Errorf("ssh %s@%s:%d: %w", s.Conn.User, s.Conn.Host, s.Conn.Port, err)})
			return out
		}
		r := run(ctx, cl, s)
		cl.Close()
		out = append(out, r)
		if r.Err != nil {
			return out
		}
	}
	return out
}

func exitStatus(err error) int {
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus()
	}
	if err != nil {
		return -1
	}
	return 0
}
