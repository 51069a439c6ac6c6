package offline

import (
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-tls/sdk/v5/go/tls"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// State is the account a plan assumes.
type State string

const (
	// FirstUp is an account without this stack's resources, as the first
	// `pulumi up` sees it: a preview, cloud-assigned values unknown.
	FirstUp State = "first-up"
	// Converged is the stack after its first bring-up: the OIDC provider is
	// in the account, the host reports the broker serving TLS, every data and
	// class role trusts only the provider, the data role's inline grant is
	// gone; every cloud-assigned value is a stand-in, so each policy reads in
	// full.
	Converged State = "converged"
)

// ParseState reads a state name; "" is FirstUp.
func ParseState(s string) (State, error) {
	switch State(s) {
	case "", FirstUp:
		return FirstUp, nil
	case Converged:
		return Converged, nil
	}
	return "", fmt.Errorf("unknown state %q: use %s (the first `pulumi up`, the default) or %s (after the first bring-up)", s, FirstUp, Converged)
}

// StackIn plans the stack whose file Pulumi.<stack>.yaml is in dir, in state st.
func StackIn(dir, stack string, st State) (*plan.Plan, error) {
	if st == FirstUp {
		return Stack(dir, stack)
	}
	if stack == program.AccountStackName {
		return nil, fmt.Errorf("state %s is for broker stacks: the account stack has no bring-up; plan it without a state", st)
	}
	if _, err := naming.ParseStack(stack); err != nil {
		return nil, err
	}
	raw, err := config.ReadStackFile(dir, stack)
	if err != nil {
		return nil, err
	}
	return run(stack, raw, modeConverged)
}

// standinChain is the certificate chain the converged plan's broker serves
// (a root and an intermediate made for this purpose): offline there is no
// live chain, and the provider's thumbprint must still be a known value.
//
//go:embed standin-chain.pem
var standinChain []byte

func standinCertificates() ([]any, string, error) {
	var certs []any
	var parsed []tls.GetCertificateCertificate
	for rest := standinChain; ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c := string(pem.EncodeToMemory(b))
		certs = append(certs, map[string]any{"certPem": c})
		parsed = append(parsed, tls.GetCertificateCertificate{CertPem: c})
	}
	thumb, err := components.TopIntermediateThumbprint(parsed)
	if err != nil {
		return nil, "", fmt.Errorf("offline: the stand-in chain: %w", err)
	}
	return certs, thumb, nil
}

func convergedNotes(notes []string, n naming.Names) []string {
	return append(notes,
		fmt.Sprintf("offline: converged view: the stack as after its first bring-up: the account holds the OIDC provider %s, the host agent reports every hostname issued and the broker's discovery served over TLS, so every data and class role trusts only the provider and the data role's inline grant is gone", n.OIDCProviderARN),
		"offline: converged view: cloud-assigned values (ARNs, ids, the EIP, DKIM tokens, the provider's thumbprint from a stand-in chain) are stand-ins; the policy documents are exactly what the stack converges to",
	)
}

// convergedOptions turns o into an update against an account that plays
// the cloud with stand-in values.
func convergedOptions(o plan.Options, n naming.Names, configured string) (plan.Options, error) {
	certs, thumb, err := standinCertificates()
	if err != nil {
		return o, err
	}
	o.Preview = false
	o.Answers = answers(configured, true, thumb)
	o.Answers["tls:index/getCertificate:getCertificate"] = func(args resource.PropertyMap) (resource.PropertyMap, error) {
		if u := args["url"]; !u.IsString() || u.StringValue() != n.Issuer {
			return nil, fmt.Errorf("offline: no stand-in chain for %v (only %s)", args["url"], n.Issuer)
		}
		return resource.NewPropertyMapFromMap(map[string]any{"certificates": certs, "id": n.Issuer}), nil
	}
	eip := components.EIPRef{AllocationID: "eipalloc-0c0ffee0c0ffee000", PublicIP: "203.0.113.200"}
	if configured != "" {
		eip = AssumedEIP(configured)
	}
	// After the first up the stack's EIP is associated with the instance and
	// tagged (and is the configured one): every rung of the ladder finds it.
	o.Answers["aws:ec2/getEips:getEips"] = func(resource.PropertyMap) (resource.PropertyMap, error) {
		return resource.NewPropertyMapFromMap(map[string]any{
			"allocationIds": []any{eip.AllocationID}, "publicIps": []any{eip.PublicIP}, "id": n.Region,
		}), nil
	}
	summary, err := healthySummary(n)
	if err != nil {
		return o, err
	}
	o.State = convergedCloud(n, eip, summary)
	return o, nil
}

// healthySummary is the agent's report of a bring-up that issued every
// hostname and fetched the broker's discovery over TLS.
func healthySummary(n naming.Names) (string, error) {
	s := agent.Summary{Stack: n.Stack.Name, Issuer: n.Issuer, Steps: []agent.Result{},
		Hosts:  agent.HostsSummary{Issued: []string{}, Skipped: map[string]string{}},
		Health: map[string]agent.HealthCheck{agent.HealthBrokerTLS: {URL: n.Issuer + "/.well-known/openid-configuration", OK: true}}}
	for _, h := range n.Hostnames() {
		if h != n.MCPHost {
			s.Hosts.Issued = append(s.Hosts.Issued, h)
		}
	}
	b, err := json.Marshal(s)
	return string(b), err
}

// convergedCloud answers each resource's cloud-assigned outputs.
func convergedCloud(n naming.Names, eip components.EIPRef, summary string) func(typ, name string, in resource.PropertyMap) resource.PropertyMap {
	str := func(in resource.PropertyMap, k string) string {
		if v, ok := in[resource.PropertyKey(k)]; ok && v.IsString() {
			return v.StringValue()
		}
		return ""
	}
	iam := func(kind, name string) string { return "arn:aws:iam::" + n.Fork.AccountID + ":" + kind + "/" + name }
	return func(typ, name string, in resource.PropertyMap) resource.PropertyMap {
		m := map[string]any{}
		switch typ {
		case "aws:ec2/eip:Eip":
			m["publicIp"], m["allocationId"] = eip.PublicIP, eip.AllocationID
		case "command:remote:Command":
			m["stdout"], m["stderr"] = "", ""
			if strings.HasSuffix(name, "-apply") {
				m["stdout"] = summary
			}
		case "aws:iam/role:Role":
			m["arn"] = iam("role", str(in, "name"))
		case "aws:iam/user:User":
			m["arn"] = iam("user", str(in, "name"))
		case "aws:iam/instanceProfile:InstanceProfile":
			m["arn"] = iam("instance-profile", str(in, "name"))
		case "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
			m["arn"] = n.OIDCProviderARN
		case "aws:iam/accessKey:AccessKey":
			m["secret"], m["sesSmtpPasswordV4"] = "offline-stand-in-secret", "offline-stand-in-secret"
		case "aws:s3/bucketV2:BucketV2":
			m["arn"] = "arn:aws:s3:::" + str(in, "bucket")
		case "aws:sesv2/emailIdentity:EmailIdentity":
			id := str(in, "emailIdentity")
			m["arn"] = "arn:aws:ses:" + n.Region + ":" + n.Fork.AccountID + ":identity/" + id
			m["dkimSigningAttributes"] = map[string]any{"tokens": []any{"offlinedkimtoken0", "offlinedkimtoken1", "offlinedkimtoken2"}}
		default:
			return nil
		}
		return resource.NewPropertyMapFromMap(m)
	}
}
