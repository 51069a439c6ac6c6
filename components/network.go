package components

import (
	"fmt"
	"sort"
	"strings"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/route53"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// EIPRef is one Elastic IP as a lookup reports it.
type EIPRef struct {
	AllocationID string
	PublicIP     string
}

// EIPLookups is what the account says about the candidate EIPs, gathered by
// LookupEIPs before any resource is declared.
type EIPLookups struct {
	InstanceID string   // configured broker instance ("" when none)
	Tag        string   // Name tag of this stack's EIP
	Attached   []EIPRef // EIPs associated with InstanceID
	Tagged     []EIPRef // EIPs tagged Name=Tag
	// Configured is the operator's address or allocation id ("" when none) and
	// ConfiguredMatches what the account holds for it.
	Configured        string
	ConfiguredMatches []EIPRef
}

// EIPRung is the step of the adopt ladder that decided.
type EIPRung string

const (
	EIPAttached   EIPRung = "attached"   // already on the instance: adopt
	EIPTagged     EIPRung = "tagged"     // tagged for this stack: adopt
	EIPConfigured EIPRung = "configured" // the configured address: adopt
	EIPNew        EIPRung = "new"        // allocate
)

// EIPDecision is the outcome of the ladder.
type EIPDecision struct {
	Rung         EIPRung
	AllocationID string // "" for EIPNew
	PublicIP     string // "" for EIPNew
	Reason       string
	Warnings     []string
}

// Adopt reports whether the decision imports an existing EIP.
func (d EIPDecision) Adopt() bool { return d.Rung != EIPNew && d.AllocationID != "" }

func ids(refs []EIPRef) string {
	var s []string
	for _, r := range refs {
		s = append(s, r.AllocationID+" ("+r.PublicIP+")")
	}
	sort.Strings(s)
	return strings.Join(s, ", ")
}

// ChooseEIP walks the adopt ladder: the EIP on the instance, else the one
// tagged for this stack, else the configured one, else a new one. More than one
// match on a rung is an error: guessing could point this stack's DNS at
// another stack's host.
func ChooseEIP(l EIPLookups) (EIPDecision, error) {
	var d EIPDecision
	switch {
	case len(l.Attached) > 1:
		return d, fmt.Errorf("instance %s has %d Elastic IPs associated: %s; a broker has exactly one: disassociate the others (aws ec2 disassociate-address) and re-run", l.InstanceID, len(l.Attached), ids(l.Attached))
	case len(l.Attached) == 1:
		d = EIPDecision{Rung: EIPAttached, AllocationID: l.Attached[0].AllocationID, PublicIP: l.Attached[0].PublicIP,
			Reason: "already associated with instance " + l.InstanceID}
	case len(l.Tagged) > 1:
		return d, fmt.Errorf("%d Elastic IPs are tagged Name=%s: %s; keep the tag on this stack's broker address only (aws ec2 delete-tags --resources <allocation-id> --tags Key=Name) or associate the right one with the instance, then re-run", len(l.Tagged), l.Tag, ids(l.Tagged))
	case len(l.Tagged) == 1:
		d = EIPDecision{Rung: EIPTagged, AllocationID: l.Tagged[0].AllocationID, PublicIP: l.Tagged[0].PublicIP,
			Reason: "tagged Name=" + l.Tag}
	case l.Configured != "" && len(l.ConfiguredMatches) > 1:
		return d, fmt.Errorf("configured EIP %s matches %d Elastic IPs: %s; configure the allocation id instead", l.Configured, len(l.ConfiguredMatches), ids(l.ConfiguredMatches))
	case l.Configured != "" && len(l.ConfiguredMatches) == 1:
		d = EIPDecision{Rung: EIPConfigured, AllocationID: l.ConfiguredMatches[0].AllocationID, PublicIP: l.ConfiguredMatches[0].PublicIP,
			Reason: "configured as " + l.Configured}
	case l.Configured != "":
		return d, fmt.Errorf("configured EIP %s is not an Elastic IP of this account and region; allocate it or remove the setting to get a new one", l.Configured)
	default:
		return EIPDecision{Rung: EIPNew, Reason: "no EIP on the instance, none tagged Name=" + l.Tag + ", none configured"}, nil
	}
	// A higher rung won: say what it overrode, so a stale tag or config is noticed.
	for _, t := range l.Tagged {
		if t.AllocationID != d.AllocationID {
			d.Warnings = append(d.Warnings, fmt.Sprintf("EIP %s (%s) is also tagged Name=%s but %s (%s) was chosen (%s); remove the stale tag", t.AllocationID, t.PublicIP, l.Tag, d.AllocationID, d.PublicIP, d.Reason))
		}
	}
	if l.Configured != "" && l.Configured != d.AllocationID && l.Configured != d.PublicIP {
		d.Warnings = append(d.Warnings, fmt.Sprintf("configured EIP %s ignored: %s (%s) is %s", l.Configured, d.AllocationID, d.PublicIP, d.Reason))
	}
	return d, nil
}

// LookupEIPs runs the lookups ChooseEIP needs (ec2.GetEips with an
// instance-id filter, a Name tag, and the configured public-ip or
// allocation-id). Call it before declaring the Network component.
func LookupEIPs(ctx *pulumi.Context, instanceID, tag, configured string, opts ...pulumi.InvokeOption) (EIPLookups, error) {
	l := EIPLookups{InstanceID: instanceID, Tag: tag, Configured: configured}
	get := func(args *ec2.GetEipsArgs) ([]EIPRef, error) {
		r, err := ec2.GetEips(ctx, args, opts...)
		if err != nil {
			return nil, err
		}
		if len(r.AllocationIds) != len(r.PublicIps) {
			return nil, fmt.Errorf("getEips returned %d allocation ids and %d addresses", len(r.AllocationIds), len(r.PublicIps))
		}
		var out []EIPRef
		for i := range r.AllocationIds {
			out = append(out, EIPRef{AllocationID: r.AllocationIds[i], PublicIP: r.PublicIps[i]})
		}
		return out, nil
	}
	var err error
	if instanceID != "" {
		if l.Attached, err = get(&ec2.GetEipsArgs{Filters: []ec2.GetEipsFilter{{Name: "instance-id", Values: []string{instanceID}}}}); err != nil {
			return l, fmt.Errorf("looking up EIPs of instance %s: %w", instanceID, err)
		}
	}
	if l.Tagged, err = get(&ec2.GetEipsArgs{Tags: map[string]string{"Name": tag}}); err != nil {
		return l, fmt.Errorf("looking up EIPs tagged Name=%s: %w", tag, err)
	}
	if configured != "" {
		filter := "public-ip"
		if strings.HasPrefix(configured, "eipalloc-") {
			filter = "allocation-id"
		}
		if l.ConfiguredMatches, err = get(&ec2.GetEipsArgs{Filters: []ec2.GetEipsFilter{{Name: filter, Values: []string{configured}}}}); err != nil {
			return l, fmt.Errorf("looking up configured EIP %s: %w", configured, err)
		}
	}
	return l, nil
}

// NetworkArgs configures the broker EIP and the stack's A records.
type NetworkArgs struct {
	Names       naming.Names
	InstanceID  string
	EIP         EIPDecision // from ChooseEIP
	ProdPosture bool        // protect the EIP: DNS and certificates hang on it
}

// Network is the stack's one Elastic IP, its association with the broker
// instance and the nine A records that point at it.
type Network struct {
	pulumi.ResourceState

	Eip          *ec2.Eip
	Association  *ec2.EipAssociation
	Records      []*route53.Record // in naming.Names.Hostnames() order
	PublicIp     pulumi.StringOutput
	AllocationId pulumi.StringOutput
	RecordNames  pulumi.StringArrayOutput
}

// RecordLabels are the logical labels of the A records, in Hostnames() order.
func RecordLabels() []string { return append([]string{"broker", "signer", "mcp"}, naming.Workers...) }

// NewNetwork declares the EIP (imported when the ladder adopted one), its
// tags, its association with the instance, and the nine A records.
func NewNetwork(ctx *pulumi.Context, name string, args *NetworkArgs, opts ...pulumi.ResourceOption) (*Network, error) {
	if args == nil || args.InstanceID == "" || args.EIP.Rung == "" {
		return nil, fmt.Errorf("network %s: InstanceID and an EIP decision (ChooseEIP) are required", name)
	}
	n := args.Names
	c := &Network{}
	if err := ctx.RegisterComponentResource("agentkeys:index:Network", name, c, opts...); err != nil {
		return nil, err
	}
	p := pulumi.Parent(c)
	// Tags are managed by ec2.Tag, not on the Eip: an imported EIP's live tags
	// would otherwise differ from the inputs and fail the import.
	eopts := []pulumi.ResourceOption{p, pulumi.IgnoreChanges([]string{"tags"})}
	// An adopted EIP existed before the stack: a destroy leaves it, its
	// tags and its association to the operator (§11: "EC2 + EIP: manual"),
	// so DNS elsewhere and the next `pulumi up` (rung A or B) still find it.
	var keep []pulumi.ResourceOption
	if args.EIP.Adopt() {
		eopts = append(eopts, pulumi.Import(pulumi.ID(args.EIP.AllocationID)))
		keep = append(keep, pulumi.RetainOnDelete(true))
	}
	eopts = append(eopts, keep...)
	if args.ProdPosture {
		eopts = append(eopts, pulumi.Protect(true))
	}
	eargs := &ec2.EipArgs{Domain: pulumi.String("vpc")}
	if !args.EIP.Adopt() {
		// A new allocation carries its tags in the request: the CI role may
		// allocate only addresses tagged for a test stack.
		eargs.Tags = pulumi.StringMap{"Name": pulumi.String(n.EIPTag), "agentkeys:stack": pulumi.String(n.Stack.Name)}
	}
	eip, err := ec2.NewEip(ctx, name+"-eip", eargs, eopts...)
	if err != nil {
		return nil, err
	}
	c.Eip = eip
	for _, t := range []struct{ key, value string }{{"Name", n.EIPTag}, {"agentkeys:stack", n.Stack.Name}} {
		if _, err := ec2.NewTag(ctx, name+"-eip-tag-"+strings.ReplaceAll(strings.ToLower(t.key), ":", "-"), &ec2.TagArgs{
			ResourceId: eip.AllocationId, Key: pulumi.String(t.key), Value: pulumi.String(t.value),
		}, append([]pulumi.ResourceOption{p}, keep...)...); err != nil {
			return nil, err
		}
	}
	if c.Association, err = ec2.NewEipAssociation(ctx, name+"-eip-assoc", &ec2.EipAssociationArgs{
		AllocationId: eip.AllocationId,
		InstanceId:   pulumi.String(args.InstanceID),
	}, append([]pulumi.ResourceOption{p}, keep...)...); err != nil {
		return nil, err
	}
	labels := RecordLabels()
	var recordNames pulumi.StringArray
	for i, h := range n.Hostnames() {
		r, err := route53.NewRecord(ctx, name+"-a-"+labels[i], &route53.RecordArgs{
			ZoneId:  pulumi.String(n.Fork.ParentZoneID),
			Name:    pulumi.String(h),
			Type:    pulumi.String("A"),
			Ttl:     pulumi.Int(300),
			Records: pulumi.StringArray{eip.PublicIp},
			// The old scripts UPSERTed these names; take them over instead of failing.
			AllowOverwrite: pulumi.Bool(true),
		}, p, pulumi.DependsOn([]pulumi.Resource{c.Association}))
		if err != nil {
			return nil, err
		}
		c.Records = append(c.Records, r)
		recordNames = append(recordNames, r.Name)
	}
	c.PublicIp = eip.PublicIp
	c.AllocationId = eip.AllocationId
	c.RecordNames = recordNames.ToStringArrayOutput()
	for _, w := range args.EIP.Warnings {
		_ = ctx.Log.Warn(w, &pulumi.LogArgs{Resource: c})
	}
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"publicIp":     c.PublicIp,
		"allocationId": c.AllocationId,
		"eipRung":      pulumi.String(string(args.EIP.Rung)),
		"recordNames":  c.RecordNames,
	})
}
