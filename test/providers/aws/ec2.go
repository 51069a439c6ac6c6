package aws

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

func ec2Types(p *awsProvider) []*standin.Type {
	return []*standin.Type{eipType(p), eipAssociationType(p), tagType(p)}
}

func ec2Tags(m map[string]string) []ec2types.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []ec2types.Tag
	for _, k := range keys {
		out = append(out, ec2types.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func fromEC2Tags(ts []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// publicDNS is the provider's computed public_dns (ec2 meta: region-dependent).
func publicDNS(region, ip string) string {
	if ip == "" {
		return ""
	}
	host := "ec2-" + strings.ReplaceAll(ip, ".", "-")
	if region == "us-east-1" {
		return host + ".compute-1.amazonaws.com"
	}
	return host + "." + region + ".compute.amazonaws.com"
}

func describeAddress(ctx context.Context, c *clients, in *ec2.DescribeAddressesInput) (*ec2types.Address, error) {
	out, err := c.ec2.DescribeAddresses(ctx, in)
	if notFound(err, "InvalidAllocationID.NotFound", "InvalidAddress.NotFound", "InvalidAssociationID.NotFound") {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(out.Addresses) == 0 {
		return nil, nil
	}
	return &out.Addresses[0], nil
}

// eipType is aws:ec2/eip:Eip (internal/service/ec2/ec2_eip.go): address,
// domain, pools and network border group replace; the association fields
// (instance, networkInterface) are Optional+Computed; tags update.
func eipType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		a, err := describeAddress(ctx, c, &ec2.DescribeAddressesInput{AllocationIds: []string{id}})
		if err != nil || a == nil {
			return nil, err
		}
		ip := aws.ToString(a.PublicIp)
		return mk(map[string]any{"allocationId": a.AllocationId, "publicIp": ip, "domain": string(a.Domain),
			"associationId": a.AssociationId, "instance": aws.ToString(a.InstanceId), "networkInterface": aws.ToString(a.NetworkInterfaceId),
			"privateIp": aws.ToString(a.PrivateIpAddress), "publicDns": publicDNS(c.region, ip),
			"networkBorderGroup": aws.ToString(a.NetworkBorderGroup), "publicIpv4Pool": aws.ToString(a.PublicIpv4Pool),
			"arn": c.arn("ec2", c.region, "elastic-ip/"+id), "tags": fromEC2Tags(a.Tags), "tagsAll": fromEC2Tags(a.Tags)}), nil
	}
	return &standin.Type{
		Token: "aws:ec2/eip:Eip",
		Inputs: []string{"address", "associateWithPrivateIp", "customerOwnedIpv4Pool", "domain", "instance", "ipamPoolId",
			"networkBorderGroup", "networkInterface", "publicIpv4Pool", "tags", "vpc"},
		ForceNew:         []string{"address", "customerOwnedIpv4Pool", "domain", "ipamPoolId", "networkBorderGroup", "publicIpv4Pool", "vpc"},
		OptionalComputed: []string{"domain", "instance", "networkBorderGroup", "networkInterface", "publicIpv4Pool", "vpc"},
		Validate: func(in props) []plugin.CheckFailure {
			return oneOf(in, "domain", "vpc", "standard")
		},
		Computed: []string{"allocationId", "arn", "associationId", "carrierIp", "customerOwnedIp", "privateDns", "privateIp",
			"ptrRecord", "publicDns", "publicIp", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			input := &ec2.AllocateAddressInput{Domain: ec2types.DomainTypeVpc}
			if d := str(in, "domain"); d == "standard" {
				input.Domain = ec2types.DomainTypeStandard
			}
			if has(in, "address") {
				input.Address = aws.String(str(in, "address"))
			}
			if tags := standin.StrMap(in, "tags"); len(tags) > 0 {
				input.TagSpecifications = []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeElasticIp, Tags: ec2Tags(tags)}}
			}
			out, err := c.ec2.AllocateAddress(ctx, input)
			if err != nil {
				return "", nil, err
			}
			id := aws.ToString(out.AllocationId)
			if inst := str(in, "instance"); inst != "" {
				if _, err := c.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(id), InstanceId: aws.String(inst)}); err != nil {
					return id, nil, err
				}
			}
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, olds, news props, changed []string) (props, error) {
			c := p.get()
			if contains(changed, "tags") {
				old, new := standin.StrMap(olds, "tagsAll"), standin.StrMap(news, "tags")
				var remove []ec2types.Tag
				for k := range old {
					if _, ok := new[k]; !ok {
						remove = append(remove, ec2types.Tag{Key: aws.String(k)})
					}
				}
				if len(remove) > 0 {
					if _, err := c.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{id}, Tags: remove}); err != nil {
						return nil, err
					}
				}
				if len(new) > 0 {
					if _, err := c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{id}, Tags: ec2Tags(new)}); err != nil {
						return nil, err
					}
				}
			}
			if contains(changed, "instance") && str(news, "instance") != "" {
				if _, err := c.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(id), InstanceId: aws.String(str(news, "instance"))}); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			c := p.get()
			// The provider disassociates an address it associated itself
			// (instance or networkInterface set in its inputs) before release.
			if a, _ := describeAddress(ctx, c, &ec2.DescribeAddressesInput{AllocationIds: []string{id}}); a != nil && a.AssociationId != nil && str(state, "instance") != "" {
				_, _ = c.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: a.AssociationId})
			}
			_, err := c.ec2.ReleaseAddress(ctx, &ec2.ReleaseAddressInput{AllocationId: aws.String(id)})
			if notFound(err, "InvalidAllocationID.NotFound") {
				return nil
			}
			return err
		},
	}
}

// eipAssociationType is aws:ec2/eipAssociation:EipAssociation
// (internal/service/ec2/ec2_eip_association.go): every input replaces.
func eipAssociationType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		a, err := describeAddress(ctx, c, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("association-id"), Values: []string{id}}}})
		if err != nil || a == nil {
			return nil, err
		}
		return mk(map[string]any{"allocationId": aws.ToString(a.AllocationId), "instanceId": aws.ToString(a.InstanceId),
			"networkInterfaceId": aws.ToString(a.NetworkInterfaceId), "privateIpAddress": aws.ToString(a.PrivateIpAddress),
			"publicIp": aws.ToString(a.PublicIp)}), nil
	}
	return &standin.Type{
		Token:            "aws:ec2/eipAssociation:EipAssociation",
		Inputs:           []string{"allocationId", "allowReassociation", "instanceId", "networkInterfaceId", "privateIpAddress", "publicIp"},
		ForceNew:         []string{"allocationId", "allowReassociation", "instanceId", "networkInterfaceId", "privateIpAddress", "publicIp"},
		OptionalComputed: []string{"allocationId", "instanceId", "networkInterfaceId", "privateIpAddress", "publicIp"},
		Validate: func(in props) []plugin.CheckFailure {
			if !has(in, "allocationId") && !has(in, "publicIp") && !has(in, "instanceId") && !has(in, "networkInterfaceId") {
				return []plugin.CheckFailure{standin.Fail("allocationId", "one of allocationId, publicIp, instanceId or networkInterfaceId must be set")}
			}
			return nil
		},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			input := &ec2.AssociateAddressInput{}
			if has(in, "allocationId") {
				input.AllocationId = aws.String(str(in, "allocationId"))
			}
			if has(in, "publicIp") {
				input.PublicIp = aws.String(str(in, "publicIp"))
			}
			if has(in, "instanceId") {
				input.InstanceId = aws.String(str(in, "instanceId"))
			}
			if has(in, "networkInterfaceId") {
				input.NetworkInterfaceId = aws.String(str(in, "networkInterfaceId"))
			}
			if has(in, "privateIpAddress") {
				input.PrivateIpAddress = aws.String(str(in, "privateIpAddress"))
			}
			if has(in, "allowReassociation") {
				input.AllowReassociation = aws.Bool(standin.Bool(in, "allowReassociation"))
			}
			out, err := c.ec2.AssociateAddress(ctx, input)
			if err != nil {
				return "", nil, err
			}
			id := aws.ToString(out.AssociationId)
			if id == "" {
				return "", nil, fmt.Errorf("AssociateAddress returned no association id")
			}
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Delete: func(ctx context.Context, id string, _ props) error {
			_, err := p.get().ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(id)})
			if notFound(err, "InvalidAssociationID.NotFound") {
				return nil
			}
			return err
		},
	}
}

// tagType is aws:ec2/tag:Tag (internal/service/ec2/tag.go): resourceId and
// key replace, the value updates; the ID is "<resourceId>,<key>".
func tagType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		res, key, _ := strings.Cut(id, ",")
		out, err := c.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []ec2types.Filter{
			{Name: aws.String("resource-id"), Values: []string{res}}, {Name: aws.String("key"), Values: []string{key}}}})
		if err != nil {
			return nil, err
		}
		for _, t := range out.Tags {
			if aws.ToString(t.ResourceId) == res && aws.ToString(t.Key) == key {
				return mk(map[string]any{"resourceId": res, "key": key, "value": aws.ToString(t.Value)}), nil
			}
		}
		return nil, nil
	}
	put := func(ctx context.Context, in props) error {
		_, err := p.get().ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{str(in, "resourceId")},
			Tags: []ec2types.Tag{{Key: aws.String(str(in, "key")), Value: aws.String(str(in, "value"))}}})
		return err
	}
	return &standin.Type{
		Token:    "aws:ec2/tag:Tag",
		Inputs:   []string{"key", "resourceId", "value"},
		Required: []string{"key", "resourceId", "value"},
		ForceNew: []string{"key", "resourceId"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			if err := put(ctx, in); err != nil {
				return "", nil, err
			}
			id := str(in, "resourceId") + "," + str(in, "key")
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, _ []string) (props, error) {
			if err := put(ctx, news); err != nil {
				return nil, err
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			res, key, _ := strings.Cut(id, ",")
			_, err := p.get().ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{res}, Tags: []ec2types.Tag{{Key: aws.String(key)}}})
			return err
		},
	}
}

// getEips is aws:ec2/getEips (data source internal/service/ec2/ec2_eips_data_source.go):
// filters and tags narrow DescribeAddresses; the id is the region.
func getEips(p *awsProvider) standin.Invoke {
	return func(ctx context.Context, args props) (props, error) {
		c := p.get()
		var filters []ec2types.Filter
		for _, f := range standin.Objs(args, "filters") {
			filters = append(filters, ec2types.Filter{Name: aws.String(str(f, "name")), Values: strs(f, "values")})
		}
		tags := standin.StrMap(args, "tags")
		keys := make([]string, 0, len(tags))
		for k := range tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			filters = append(filters, ec2types.Filter{Name: aws.String("tag:" + k), Values: []string{tags[k]}})
		}
		out, err := c.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: filters})
		if err != nil {
			return nil, fmt.Errorf("reading EC2 EIPs: %w", err)
		}
		allocs, ips := []string{}, []string{}
		for _, a := range out.Addresses {
			if a.Domain == ec2types.DomainTypeVpc {
				allocs = append(allocs, aws.ToString(a.AllocationId))
			}
			ips = append(ips, aws.ToString(a.PublicIp))
		}
		res := mk(map[string]any{"id": c.region, "allocationIds": allocs, "publicIps": ips})
		if has(args, "filters") {
			res["filters"] = args["filters"]
		}
		if tags != nil {
			res["tags"] = standin.V(tags)
		}
		return res, nil
	}
}
