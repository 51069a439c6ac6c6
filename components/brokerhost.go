package components

import (
	"encoding/json"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-command/sdk/go/command/remote"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/spec"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Remote paths of the host bring-up. The SSH user stages files in its own
// home; only `sudo -n install` moves them to root-owned places.
const (
	AgentPath    = spec.AgentPath
	HostSpecPath = spec.DefaultPath
)

// The SSH dial budget of each bring-up command. pulumi-command v1.2.1 dials
// once, then retries SSHDialRetries times, sleeping 0.1 s growing 1.5x up to
// 5 s between attempts (pulumi sdk retry.Until), each attempt waiting at
// most SSHDialTimeoutSeconds. So an unreachable host fails the bring-up in
// about 21 s when it refuses connections, and in at most about 2.5 min
// (13 x 10 s + 21 s) when its packets are dropped; a host still booting gets
// those 21 s to start sshd.
const (
	SSHDialRetries        = 12
	SSHDialTimeoutSeconds = 10
)

// HostBringUpArgs configures the host bring-up over SSH.
type HostBringUpArgs struct {
	// Host is the address to dial (the stack's EIP).
	Host pulumi.StringInput
	Port int    // default 22
	User string // SSH user with passwordless sudo (ubuntu)
	// PrivateKey is the SSH private key (secret).
	PrivateKey pulumi.StringInput
	// HostKey pins the host's public key when set ("ssh-ed25519 AAAA...").
	HostKey string
	// AgentBinary is the local path of the linux/amd64 host agent and
	// AgentHash its sha256: the bring-up re-runs exactly when it changes.
	AgentBinary string
	AgentHash   string
	// Spec is the host spec JSON; the bring-up re-runs when it changes.
	Spec pulumi.StringInput
	// Redeploy forces a re-run when changed (agentkeys:redeploy).
	Redeploy string
	// Stack names the staging directory, so stacks never share staged files.
	Stack string
	// InstanceID re-runs the bring-up on a replaced EC2 behind the same EIP.
	InstanceID string
	// DependsOn: the A records (certificates need DNS) and the instance profile.
	DependsOn []pulumi.Resource
}

// HostBringUp copies the host agent and its spec to the broker and runs
// `agentkeys-hostagent apply` with sudo; its JSON summary is the output.
type HostBringUp struct {
	pulumi.ResourceState

	Apply *remote.Command
	// Summary is the agent's --json summary (stdout of the apply).
	Summary pulumi.StringOutput
	// BrokerTLS reports whether the agent saw the broker serve its OIDC
	// discovery over TLS: federation waits for it.
	BrokerTLS pulumi.BoolOutput
	// Status is "healthy" or "pending: <reason>".
	Status pulumi.StringOutput
}

// StageDir is where the SSH user stages the agent and spec of one stack
// before install.
func StageDir(user, stack string) string {
	home := "/home/" + user
	if user == "root" {
		home = "/root"
	}
	return home + "/.agentkeys-deploy/" + stack
}

// StageScript creates the stack's staging directory and writes the host spec
// from stdin into it. pulumi-command's CopyToRemote creates only the last
// element of a path and takes path-based assets only, so the directory and
// the spec come from this command. The staged agent is left alone: a
// connection-only change re-runs this command but not the copy.
func StageScript(stage string) string {
	return strings.Join([]string{
		"set -eu",
		"umask 077",
		"mkdir -p " + stage,
		"cat > " + path.Join(stage, "hostspec.json"),
	}, "\n")
}

// ApplyScript is the exact command line the bring-up runs on the host. The
// staged agent checks the host's identity against the staged spec first, so a
// stack pointed at another stack's host fails before anything under /etc or
// /usr/local changes.
func ApplyScript(stage string) string {
	agent, staged := path.Join(stage, "agentkeys-hostagent"), path.Join(stage, "hostspec.json")
	return strings.Join([]string{
		"set -eu",
		"chmod 0755 " + agent,
		fmt.Sprintf("sudo -n %s plan --spec %s --only identity >&2", agent, staged),
		fmt.Sprintf("sudo -n install -D -m 0755 -o root -g root %s %s", agent, AgentPath),
		fmt.Sprintf("sudo -n install -D -m 0600 -o root -g root %s %s", staged, HostSpecPath),
		fmt.Sprintf("sudo -n %s apply --spec %s --json", AgentPath, HostSpecPath),
	}, "\n")
}

// NewHostBringUp declares the copy and apply commands.
func NewHostBringUp(ctx *pulumi.Context, name string, args *HostBringUpArgs, opts ...pulumi.ResourceOption) (*HostBringUp, error) {
	if args.User == "" || args.AgentBinary == "" || args.AgentHash == "" {
		return nil, fmt.Errorf("host bring-up %s: User, AgentBinary and AgentHash are required", name)
	}
	c := &HostBringUp{}
	if err := ctx.RegisterComponentResource("agentkeys:index:HostBringUp", name, c, opts...); err != nil {
		return nil, err
	}
	port := args.Port
	if port == 0 {
		port = 22
	}
	conn := remote.ConnectionArgs{
		Host:       args.Host,
		Port:       pulumi.Float64(float64(port)),
		User:       pulumi.String(args.User),
		PrivateKey: pulumi.ToSecret(args.PrivateKey).(pulumi.StringOutput),
		// Bounded: an unreachable host fails the bring-up with the dial
		// error as its cause instead of minutes of silent retries.
		DialErrorLimit: pulumi.Int(SSHDialRetries),
		PerDialTimeout: pulumi.Int(SSHDialTimeoutSeconds),
	}
	if args.HostKey != "" {
		conn.HostKey = pulumi.String(args.HostKey)
	}
	p := pulumi.Parent(c)
	if args.Stack == "" {
		return nil, fmt.Errorf("host bring-up %s: Stack is required (it names the staging directory)", name)
	}
	stage := StageDir(args.User, args.Stack)
	// One trigger list for the three steps: any change restages both files,
	// so the apply never installs a file left from an earlier run.
	triggers := pulumi.Array{pulumi.String(args.AgentHash), args.Spec, pulumi.String(args.Redeploy), pulumi.String(args.InstanceID)}
	staged, err := remote.NewCommand(ctx, name+"-stage", &remote.CommandArgs{
		Connection:             conn,
		Create:                 pulumi.String(StageScript(stage)),
		Stdin:                  args.Spec,
		AddPreviousOutputInEnv: pulumi.Bool(false),
		Triggers:               triggers,
	}, p, pulumi.DependsOn(args.DependsOn))
	if err != nil {
		return nil, err
	}
	binCopy, err := remote.NewCopyToRemote(ctx, name+"-agent", &remote.CopyToRemoteArgs{
		Connection: conn,
		Source:     pulumi.NewFileAsset(args.AgentBinary),
		RemotePath: pulumi.String(path.Join(stage, "agentkeys-hostagent")),
		Triggers:   triggers,
	}, p, pulumi.DependsOn([]pulumi.Resource{staged}))
	if err != nil {
		return nil, err
	}
	c.Apply, err = remote.NewCommand(ctx, name+"-apply", &remote.CommandArgs{
		Connection:             conn,
		Create:                 pulumi.String(ApplyScript(stage)),
		AddPreviousOutputInEnv: pulumi.Bool(false),
		Triggers:               triggers,
	}, p, pulumi.DependsOn(append([]pulumi.Resource{staged, binCopy}, args.DependsOn...)))
	if err != nil {
		return nil, err
	}
	c.Summary = c.Apply.Stdout
	c.BrokerTLS = c.Apply.Stdout.ApplyT(func(out string) bool { return ParseHealth(out).BrokerTLS }).(pulumi.BoolOutput)
	c.Status = c.Apply.Stdout.ApplyT(func(out string) string {
		if h := ParseHealth(out); !h.BrokerTLS {
			return "pending: " + h.Reason
		}
		return "healthy"
	}).(pulumi.StringOutput)
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"summary": c.Summary, "status": c.Status})
}

// HostHealth is what the bring-up learned of the broker.
type HostHealth struct {
	BrokerTLS bool
	Reason    string
}

// ParseHealth reads the agent's JSON summary: the broker counts as serving
// TLS when its certificate is in place and the agent fetched its OIDC
// discovery through nginx over TLS (agent.HealthBrokerTLS).
func ParseHealth(summary string) HostHealth {
	var s agent.Summary
	if strings.TrimSpace(summary) == "" {
		return HostHealth{Reason: "the host bring-up has not run yet"}
	}
	if err := json.Unmarshal([]byte(summary), &s); err != nil {
		return HostHealth{Reason: "the host agent's summary is not JSON: " + err.Error()}
	}
	host := strings.TrimPrefix(s.Issuer, "https://")
	if r, ok := s.Hosts.Skipped[host]; ok {
		return HostHealth{Reason: "no certificate for " + host + ": " + r}
	}
	if !slices.Contains(s.Hosts.Issued, host) {
		return HostHealth{Reason: "no certificate for " + host + " yet"}
	}
	d, ok := s.Health[agent.HealthBrokerTLS]
	switch {
	case !ok:
		return HostHealth{Reason: "the host agent reported no TLS check of " + s.Issuer}
	case !d.OK:
		return HostHealth{Reason: "OIDC discovery over TLS at " + s.Issuer + " not healthy: " + d.Detail}
	}
	return HostHealth{BrokerTLS: true}
}

func hostsOf(summary string) (map[string]bool, map[string]string) {
	var s struct {
		Hosts struct {
			Issued  []string          `json:"issued"`
			Skipped map[string]string `json:"skipped"`
		} `json:"hosts"`
	}
	_ = json.Unmarshal([]byte(summary), &s)
	issued := map[string]bool{}
	for _, h := range s.Hosts.Issued {
		issued[h] = true
	}
	if s.Hosts.Skipped == nil {
		s.Hosts.Skipped = map[string]string{}
	}
	return issued, s.Hosts.Skipped
}
