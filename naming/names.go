package naming

import (
	"fmt"
	"strings"
)

// Fork holds the keys an operator sets when forking to another account.
type Fork struct {
	AccountID    string
	Zone         string
	ParentZoneID string
	BrokerHost   string // optional override of the derived broker host
	MailDomain   string // optional override of the derived mail domain
	Region       string
}

// Workers are the service workers co-located on the broker host, in a fixed order.
var Workers = []string{"audit", "email", "cred", "memory", "config", "classify"}

// DataClasses are the per-data-class stores (arch §17.2), in a fixed order.
var DataClasses = []DataClass{
	{Name: "vault", Prefix: "credentials"},
	{Name: "memory", Prefix: "memory"},
	{Name: "config", Prefix: "config"},
}

// DataClass is one data class: its short name and its object prefix under bots/<actor>/.
type DataClass struct {
	Name   string
	Prefix string
}

// SharedRuleSet is the SES receipt rule set every stack's rule lives in; only
// one rule set can be active per account and region, so it is shared.
const SharedRuleSet = "agentkeys"

// AccountStack is the stack that owns what broker stacks share (the rule set
// and its activation, the GitHub OIDC provider, the CI deploy role).
const AccountStack = "account"

// CIDeployRole is the GitHub Actions deploy role shared by the fleet.
const CIDeployRole = "github-actions-agentkeys-deploy"

// OIDCAudience is the client id of every broker OIDC provider.
const OIDCAudience = "sts.amazonaws.com"

// ActorTag is the session tag the broker's JWT carries for the actor omni.
const ActorTag = "agentkeys_actor_omni"

// Names is every identifier of one stack.
type Names struct {
	Stack  Stack
	Fork   Fork
	Region string

	BrokerHost  string            // also the OIDC issuer host
	Issuer      string            // https://<BrokerHost>
	MCPHost     string            // DNS only
	SignerHost  string            //
	WorkerHosts map[string]string // worker -> hostname

	MailDomain string
	Sender     string

	MailBucket  string
	DataBuckets map[string]string // data class -> bucket

	DaemonUser      string
	SSHUser         string
	DataRole        string
	DataClassRoles  map[string]string // data class -> role name
	HostRole        string
	InstanceProfile string

	EIPTag      string
	ReceiptRule string
	RuleSet     string

	OIDCProviderARN string
	DataRoleARN     string
	ClassRoleARNs   map[string]string
	HostRoleARN     string
	DaemonUserARN   string
	SSHUserARN      string
	ReceiptRuleARN  string

	OperatorEnvFile string // the legacy scripts' file this stack replaces
	BrokerHostEnv   string
}

// host builds "<svc><sfx>.<zone>" (the worker-style scheme).
func host(svc string, s Stack, zone string) string { return svc + s.Suffix + "." + zone }

// Derive computes every name of stack s from the fork keys.
func Derive(s Stack, f Fork) Names {
	region := f.Region
	if region == "" {
		region = "us-east-1"
	}
	z := f.Zone
	n := Names{Stack: s, Fork: f, Region: region, RuleSet: SharedRuleSet}
	switch {
	case s.Kind == KindProd && s.Suffix == "":
		n.BrokerHost, n.MCPHost = "broker."+z, "mcp."+z
	case s.Kind == KindTest && s.Slot == 1:
		// Slot 1 predates the fleet: its issuer is byte-frozen against its IAM provider.
		n.BrokerHost, n.MCPHost = "test-broker."+z, "test-mcp."+z
	default:
		n.BrokerHost, n.MCPHost = host("broker", s, z), host("mcp", s, z)
	}
	if f.BrokerHost != "" {
		n.BrokerHost = f.BrokerHost
	}
	n.Issuer = "https://" + n.BrokerHost
	n.SignerHost = host("signer", s, z)
	n.WorkerHosts = map[string]string{}
	for _, w := range Workers {
		n.WorkerHosts[w] = host(w, s, z)
	}
	n.MailDomain = "bots" + s.Suffix + "." + z
	if f.MailDomain != "" {
		n.MailDomain = f.MailDomain
	}
	n.Sender = "noreply" + s.Suffix + "@" + n.MailDomain

	acct := f.AccountID
	bucket := func(c string) string { return "agentkeys-" + c + s.Suffix + "-" + acct }
	n.MailBucket = bucket("mail")
	n.DataBuckets = map[string]string{}
	n.DataClassRoles = map[string]string{}
	n.ClassRoleARNs = map[string]string{}
	for _, c := range DataClasses {
		n.DataBuckets[c.Name] = bucket(c.Name)
		n.DataClassRoles[c.Name] = "agentkeys-" + c.Name + "-role" + s.Suffix
		n.ClassRoleARNs[c.Name] = RoleARN(acct, n.DataClassRoles[c.Name])
	}
	n.DaemonUser = "agentkeys-daemon" + s.Suffix
	n.SSHUser = "agentkeys-broker" + s.Suffix
	n.DataRole = "agentkeys-data-role" + s.Suffix
	switch {
	case s.Kind == KindProd && s.Suffix == "":
		n.InstanceProfile = "agentkeys-broker-host"
	case s.Kind == KindProd:
		n.InstanceProfile = "agentkeys-broker-host" + s.Suffix
	case s.Slot == 1:
		// §0.3 (later, more specific) over §0.2's agentkeys-broker-host-test.
		n.InstanceProfile = "agentkeys-test-broker-ssm"
	default:
		n.InstanceProfile = fmt.Sprintf("agentkeys-test-broker-ssm-%d", s.Slot)
	}
	n.HostRole = n.InstanceProfile
	n.EIPTag = "agentkeys-broker-eip" + s.Suffix
	n.ReceiptRule = "agentkeys-inbound" + s.Suffix

	n.OIDCProviderARN = OIDCProviderARN(acct, n.BrokerHost)
	n.DataRoleARN = RoleARN(acct, n.DataRole)
	n.HostRoleARN = RoleARN(acct, n.HostRole)
	n.DaemonUserARN = "arn:aws:iam::" + acct + ":user/" + n.DaemonUser
	n.SSHUserARN = "arn:aws:iam::" + acct + ":user/" + n.SSHUser
	n.ReceiptRuleARN = fmt.Sprintf("arn:aws:ses:%s:%s:receipt-rule-set/%s:receipt-rule/%s", region, acct, n.RuleSet, n.ReceiptRule)

	legacy := strings.TrimPrefix(s.Suffix, "-")
	if legacy == "" {
		n.OperatorEnvFile, n.BrokerHostEnv = "scripts/operator-workstation.env", "scripts/broker.env"
	} else {
		n.OperatorEnvFile = "scripts/operator-workstation." + legacy + ".env"
		n.BrokerHostEnv = "scripts/broker." + legacy + ".env"
	}
	return n
}

// RoleARN is the ARN of an IAM role in the account.
func RoleARN(acct, role string) string { return "arn:aws:iam::" + acct + ":role/" + role }

// OIDCProviderARN is the ARN AWS gives the provider of issuer host h.
func OIDCProviderARN(acct, h string) string {
	return "arn:aws:iam::" + acct + ":oidc-provider/" + h
}

// InstanceARN is the ARN of an EC2 instance.
func InstanceARN(region, acct, instanceID string) string {
	return "arn:aws:ec2:" + region + ":" + acct + ":instance/" + instanceID
}

// BucketARN is the ARN of an S3 bucket.
func BucketARN(b string) string { return "arn:aws:s3:::" + b }

// Hostnames lists the nine public hostnames of the stack in a fixed order:
// broker, signer, mcp, then the six workers.
func (n Names) Hostnames() []string {
	out := []string{n.BrokerHost, n.SignerHost, n.MCPHost}
	for _, w := range Workers {
		out = append(out, n.WorkerHosts[w])
	}
	return out
}

// TLSHostnames lists the eight hostnames served over TLS on the broker host
// (mcp is DNS only).
func (n Names) TLSHostnames() []string {
	out := []string{n.BrokerHost, n.SignerHost}
	for _, w := range Workers {
		out = append(out, n.WorkerHosts[w])
	}
	return out
}
