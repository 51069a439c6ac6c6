package components

import (
	"fmt"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// BrokerStackArgs is everything one broker stack is built from.
type BrokerStackArgs struct {
	Names       naming.Names
	ProdPosture bool
	InstanceID  string
	EIP         EIPDecision
	// HostSpec renders the host agent's spec for the stack's public address.
	HostSpec func(publicIP string) (string, error)
	// Host configures the bring-up over SSH; nil leaves it pending (no key yet).
	Host *BrokerHostArgs
}

// BrokerHostArgs configures the SSH bring-up of the broker host.
type BrokerHostArgs struct {
	User        string
	PrivateKey  pulumi.StringInput
	HostKey     string
	Port        int
	AgentBinary string
	AgentHash   string
	Redeploy    string
}

// BrokerStack composes one stack in the order of a bring-up: EIP and DNS,
// principals, mail, data classes, the host over SSH, then OIDC federation.
type BrokerStack struct {
	pulumi.ResourceState

	Network     *Network
	Principals  *Principals
	Mail        *MailBackend
	DataClasses map[string]*DataClassRole
	Host        *HostBringUp
	Federation  *OidcFederation

	Outputs map[string]pulumi.Input
}

// NewBrokerStack declares one broker stack.
func NewBrokerStack(ctx *pulumi.Context, name string, args *BrokerStackArgs, opts ...pulumi.ResourceOption) (*BrokerStack, error) {
	if args == nil || args.HostSpec == nil {
		return nil, fmt.Errorf("broker stack %s: args with a HostSpec renderer are required", name)
	}
	n := args.Names
	c := &BrokerStack{DataClasses: map[string]*DataClassRole{}}
	if err := ctx.RegisterComponentResource("agentkeys:index:BrokerStack", name, c, opts...); err != nil {
		return nil, err
	}
	p := pulumi.Parent(c)
	var err error
	if c.Network, err = NewNetwork(ctx, name+"-network", &NetworkArgs{
		Names: n, InstanceID: args.InstanceID, EIP: args.EIP, ProdPosture: args.ProdPosture,
	}, p); err != nil {
		return nil, err
	}
	if c.Principals, err = NewPrincipals(ctx, name+"-principals", &PrincipalsArgs{
		Names: n, InstanceID: args.InstanceID,
	}, p); err != nil {
		return nil, err
	}
	if c.Mail, err = NewMailBackend(ctx, name+"-mail", &MailBackendArgs{
		Names: n, ProdPosture: args.ProdPosture, PolicyDependsOn: []pulumi.Resource{c.Principals.DataRole},
	}, p); err != nil {
		return nil, err
	}
	for _, cl := range naming.DataClasses {
		d, err := NewDataClassRole(ctx, name+"-"+cl.Name, &DataClassRoleArgs{
			Names: n, Class: cl, ProdPosture: args.ProdPosture, TrustDependsOn: []pulumi.Resource{c.Principals.DaemonUser},
		}, p)
		if err != nil {
			return nil, err
		}
		c.DataClasses[cl.Name] = d
	}

	hostnames := pulumi.StringMap{}
	for _, h := range n.Hostnames() {
		hostnames[h] = pulumi.String("pending: host bring-up")
	}
	c.Outputs = map[string]pulumi.Input{
		"stack":             pulumi.String(n.Stack.Name),
		"brokerUrl":         pulumi.String(n.Issuer),
		"issuer":            pulumi.String(n.Issuer),
		"eip":               c.Network.PublicIp,
		"eipAllocationId":   c.Network.AllocationId,
		"eipRung":           pulumi.String(string(args.EIP.Rung) + ": " + args.EIP.Reason),
		"mailDomain":        pulumi.String(n.MailDomain),
		"sender":            pulumi.String(n.Sender),
		"dataRoleArn":       c.Principals.DataRoleArn,
		"hostRoleArn":       c.Principals.HostRoleArn,
		"instanceProfile":   c.Principals.InstanceProfileName,
		"mailBucket":        c.Mail.BucketName,
		"daemonAccessKeyId": c.Principals.DaemonAccessKeyId,
		"sshAccessKeyId":    c.Principals.SSHAccessKeyId,
		"credentials":       c.Principals.Credentials(),
	}
	buckets, roles := pulumi.StringMap{}, pulumi.StringMap{}
	for k, d := range c.DataClasses {
		buckets[k] = d.BucketName
		roles[k] = d.RoleArn
	}
	c.Outputs["dataBuckets"] = buckets
	c.Outputs["classRoleArns"] = roles

	if args.Host == nil {
		c.Outputs["hostBringUp"] = pulumi.String("pending: agentkeys:sshPrivateKey is not set (pulumi config set --secret agentkeys:sshPrivateKey < broker.pem)")
		c.Outputs["federation"] = pulumi.String("pending: the broker host has not been brought up")
		c.Outputs["hostnames"] = hostnames
		return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"issuer": pulumi.String(n.Issuer)})
	}

	spec := c.Network.PublicIp.ApplyT(func(ip string) (string, error) { return args.HostSpec(ip) }).(pulumi.StringOutput)
	deps := []pulumi.Resource{c.Principals.InstanceProfile}
	for _, r := range c.Network.Records {
		deps = append(deps, r)
	}
	if c.Host, err = NewHostBringUp(ctx, name+"-host", &HostBringUpArgs{
		Host: c.Network.PublicIp, Port: args.Host.Port, User: args.Host.User, PrivateKey: args.Host.PrivateKey,
		HostKey: args.Host.HostKey, AgentBinary: args.Host.AgentBinary, AgentHash: args.Host.AgentHash,
		Spec: spec, Redeploy: args.Host.Redeploy, DependsOn: deps,
	}, p); err != nil {
		return nil, err
	}
	if c.Federation, err = NewOidcFederation(ctx, name+"-oidc", &OidcFederationArgs{
		Names: n, DependsOn: []pulumi.Resource{c.Host},
	}, p); err != nil {
		return nil, err
	}
	c.Outputs["hostBringUp"] = c.Host.Status
	c.Outputs["hostSummary"] = c.Host.Summary
	c.Outputs["oidcProviderArn"] = c.Federation.ProviderArn
	c.Outputs["hostnames"] = c.Host.Summary.ApplyT(HostnameStates(n)).(pulumi.StringMapOutput)
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{"issuer": pulumi.String(n.Issuer), "hostBringUp": c.Host.Status})
}

// HostnameStates maps each public hostname to its TLS state from the agent's summary.
func HostnameStates(n naming.Names) func(summary string) map[string]string {
	return func(summary string) map[string]string {
		out := map[string]string{}
		issued, skipped := hostsOf(summary)
		for _, h := range n.Hostnames() {
			switch {
			case h == n.MCPHost:
				out[h] = "dns-only"
			case issued[h]:
				out[h] = "tls"
			case skipped[h] != "":
				out[h] = "http-only: " + skipped[h]
			default:
				out[h] = "unknown"
			}
		}
		return out
	}
}
