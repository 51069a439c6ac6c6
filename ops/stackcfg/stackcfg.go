// Package stackcfg resolves a stack name to what the operator commands need:
// its derived names plus the deployed facts names cannot derive (instance id,
// configured EIP), read through infra/config from Pulumi.<stack>.yaml.
package stackcfg

import (
	"context"
	"fmt"
	"net"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Target is one stack as the operator tools see it.
type Target struct {
	Names      naming.Names
	InstanceID string
	EIP        string // configured address (agentkeys:eipAddress), "" when not set
	Config     *config.Config
}

// Load reads and validates projectDir/Pulumi.<stack>.yaml.
func Load(projectDir, stack string) (Target, error) {
	if _, err := naming.ParseStack(stack); err != nil {
		return Target{}, err
	}
	c, err := config.LoadFile(projectDir, stack)
	if err != nil {
		return Target{}, err
	}
	return Target{Names: c.Names(), InstanceID: c.InstanceID, EIP: c.EIPAddress, Config: c}, nil
}

// Stacks lists every valid stack name with a Pulumi.<stack>.yaml in projectDir.
func Stacks(projectDir string) ([]string, error) {
	all, err := config.StackFiles(projectDir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range all {
		if _, err := naming.ParseStack(s); err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

// AddressAPI is the EC2 call that finds a stack's tagged EIP.
type AddressAPI interface {
	DescribeAddresses(context.Context, *ec2.DescribeAddressesInput, ...func(*ec2.Options)) (*ec2.DescribeAddressesOutput, error)
}

// EIP is a stack's Elastic IP and where it was read from.
type EIP struct {
	IP, AllocationID, InstanceID string
	Source                       string
}

// FindEIP returns the stack's EIP: the stack output eip (what the program
// manages), else the address EC2 carries with the stack's Name tag (the
// program writes it), else agentkeys:eipAddress. outs and ec may be nil.
func FindEIP(ctx context.Context, t Target, outs Outputs, ec AddressAPI) (EIP, error) {
	if ip := outs.String("eip"); net.ParseIP(ip) != nil {
		return EIP{IP: ip, AllocationID: outs.String("eipAllocationId"), Source: "stack output eip"}, nil
	}
	var tagErr error
	if ec != nil {
		out, err := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{t.Names.EIPTag}}}})
		switch {
		case err != nil:
			tagErr = fmt.Errorf("EC2 DescribeAddresses tag:Name=%s: %v", t.Names.EIPTag, err)
		case len(out.Addresses) == 1:
			a := out.Addresses[0]
			return EIP{IP: aws.ToString(a.PublicIp), AllocationID: aws.ToString(a.AllocationId), InstanceID: aws.ToString(a.InstanceId),
				Source: "EC2 tag Name=" + t.Names.EIPTag}, nil
		case len(out.Addresses) > 1:
			tagErr = fmt.Errorf("%d EIPs carry the tag Name=%s; exactly one must (pulumi up --stack %s reports which)", len(out.Addresses), t.Names.EIPTag, t.Names.Stack.Name)
		}
	}
	if t.EIP != "" && net.ParseIP(t.EIP) != nil {
		return EIP{IP: t.EIP, Source: "config agentkeys:eipAddress"}, nil
	}
	if tagErr != nil {
		return EIP{}, tagErr
	}
	return EIP{}, fmt.Errorf("stack %s has no known EIP: no stack output eip (is it deployed? `pulumi stack output eip --stack %s`), no EIP tagged Name=%s, no agentkeys:eipAddress; pass --eip", t.Names.Stack.Name, t.Names.Stack.Name, t.Names.EIPTag)
}
