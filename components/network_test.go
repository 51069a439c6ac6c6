package components

import (
	"fmt"
	"testing"

	"github.com/agentkeys/agentkeys-infra/components/componenttest"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eip is one Elastic IP in the mock account.
type eip struct{ alloc, ip, instance, name string }

func mkEIP(alloc, instance, name string) eip {
	return eip{alloc: alloc, ip: componenttest.ImportedIP(alloc), instance: instance, name: name}
}

// answerGetEips answers aws:ec2/getEips like EC2 would: every filter and tag must match.
func answerGetEips(account []eip) componenttest.InvokeFunc {
	return func(args resource.PropertyMap) (resource.PropertyMap, error) {
		var allocs, ips []resource.PropertyValue
		for _, e := range account {
			ok := true
			if f, has := args["filters"]; has {
				for _, fv := range f.ArrayValue() {
					o := fv.ObjectValue()
					name, want := o["name"].StringValue(), o["values"].ArrayValue()[0].StringValue()
					var got string
					switch name {
					case "instance-id":
						got = e.instance
					case "public-ip":
						got = e.ip
					case "allocation-id":
						got = e.alloc
					default:
						return nil, fmt.Errorf("mock getEips: unexpected filter %s", name)
					}
					ok = ok && got == want
				}
			}
			if tg, has := args["tags"]; has {
				for k, v := range tg.ObjectValue() {
					ok = ok && k == "Name" && v.StringValue() == e.name
				}
			}
			if ok {
				allocs = append(allocs, resource.NewStringProperty(e.alloc))
				ips = append(ips, resource.NewStringProperty(e.ip))
			}
		}
		return resource.PropertyMap{
			"id":            resource.NewStringProperty("us-east-1"),
			"allocationIds": resource.NewArrayProperty(allocs),
			"publicIps":     resource.NewArrayProperty(ips),
		}, nil
	}
}

func TestChooseEIPLadder(t *testing.T) {
	a := EIPRef{"eipalloc-a", "198.51.100.1"}
	b := EIPRef{"eipalloc-b", "198.51.100.2"}
	c := EIPRef{"eipalloc-c", "198.51.100.3"}
	cases := []struct {
		name   string
		l      EIPLookups
		rung   EIPRung
		alloc  string
		warns  int
		errHas []string
	}{
		{name: "attached wins over tag and config", l: EIPLookups{InstanceID: "i-1", Tag: "t", Attached: []EIPRef{a}, Tagged: []EIPRef{b}, Configured: c.PublicIP, ConfiguredMatches: []EIPRef{c}}, rung: EIPAttached, alloc: "eipalloc-a", warns: 2},
		{name: "attached and tagged agree", l: EIPLookups{InstanceID: "i-1", Tag: "t", Attached: []EIPRef{a}, Tagged: []EIPRef{a}}, rung: EIPAttached, alloc: "eipalloc-a"},
		{name: "tagged", l: EIPLookups{Tag: "t", Tagged: []EIPRef{b}}, rung: EIPTagged, alloc: "eipalloc-b"},
		{name: "configured address", l: EIPLookups{Configured: c.PublicIP, ConfiguredMatches: []EIPRef{c}}, rung: EIPConfigured, alloc: "eipalloc-c"},
		{name: "configured allocation id agrees", l: EIPLookups{Configured: "eipalloc-c", ConfiguredMatches: []EIPRef{c}}, rung: EIPConfigured, alloc: "eipalloc-c"},
		{name: "new", l: EIPLookups{InstanceID: "i-1", Tag: "t"}, rung: EIPNew},
		{name: "two attached", l: EIPLookups{InstanceID: "i-1", Attached: []EIPRef{a, b}}, errHas: []string{"eipalloc-a", "eipalloc-b", "i-1", "disassociate"}},
		{name: "two tagged", l: EIPLookups{Tag: "agentkeys-broker-eip-test", Tagged: []EIPRef{b, a}}, errHas: []string{"eipalloc-a", "eipalloc-b", "Name=agentkeys-broker-eip-test", "delete-tags"}},
		{name: "configured unknown", l: EIPLookups{Configured: "192.0.2.9"}, errHas: []string{"192.0.2.9", "not an Elastic IP"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ChooseEIP(tc.l)
			if tc.errHas != nil {
				require.Error(t, err)
				for _, s := range tc.errHas {
					assert.Contains(t, err.Error(), s)
				}
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.rung, d.Rung)
			assert.Equal(t, tc.alloc, d.AllocationID)
			assert.Equal(t, tc.rung != EIPNew, d.Adopt())
			assert.Len(t, d.Warnings, tc.warns, "%v", d.Warnings)
		})
	}
}

// TestNetworkAdoptLadder runs lookups, decision and component under the mock
// engine for each rung, against a mock account of EIPs.
func TestNetworkAdoptLadder(t *testing.T) {
	cases := []struct {
		name       string
		stack      string
		configured string
		account    []eip
		wantImport string // "" = new allocation
		wantErr    []string
	}{
		{name: "A attached", stack: "test-2", account: []eip{mkEIP("eipalloc-on", testInst, ""), mkEIP("eipalloc-other", "i-prod", "agentkeys-broker-eip")}, wantImport: "eipalloc-on"},
		{name: "B tagged", stack: "test", account: []eip{mkEIP("eipalloc-tag", "", "agentkeys-broker-eip-test"), mkEIP("eipalloc-prod", "i-prod", "agentkeys-broker-eip")}, wantImport: "eipalloc-tag"},
		{name: "C configured address", stack: "prod", configured: componenttest.ImportedIP("eipalloc-cfg"), account: []eip{mkEIP("eipalloc-cfg", "", "")}, wantImport: "eipalloc-cfg"},
		{name: "C configured allocation", stack: "base", configured: "eipalloc-cfg", account: []eip{mkEIP("eipalloc-cfg", "", "")}, wantImport: "eipalloc-cfg"},
		{name: "D new", stack: "test-2", account: []eip{mkEIP("eipalloc-prod", "i-prod", "agentkeys-broker-eip")}},
		{name: "two tagged", stack: "test-2", account: []eip{mkEIP("eipalloc-x", "", "agentkeys-broker-eip-test-2"), mkEIP("eipalloc-y", "", "agentkeys-broker-eip-test-2")}, wantErr: []string{"eipalloc-x", "eipalloc-y"}},
		{name: "two attached", stack: "prod", account: []eip{mkEIP("eipalloc-x", testInst, ""), mkEIP("eipalloc-y", testInst, "")}, wantErr: []string{"eipalloc-x", "eipalloc-y"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n := namesFor(t, tc.stack)
			rec := newRec(tc.stack)
			rec.Invokes["aws:ec2/getEips:getEips"] = answerGetEips(tc.account)
			err := rec.Run(func(ctx *pulumi.Context) error {
				l, err := LookupEIPs(ctx, testInst, n.EIPTag, tc.configured)
				if err != nil {
					return err
				}
				d, err := ChooseEIP(l)
				if err != nil {
					return err
				}
				net, err := NewNetwork(ctx, "net", &NetworkArgs{Names: n, InstanceID: testInst, EIP: d, ProdPosture: n.Stack.ProdPosture()})
				if err != nil {
					return err
				}
				ip := await(t, ctx, net.PublicIp)
				wantIP := componenttest.MockPublicIP
				if tc.wantImport != "" {
					wantIP = componenttest.ImportedIP(tc.wantImport)
				}
				assert.Equal(t, wantIP, ip.Value)
				names := await(t, ctx, net.RecordNames)
				assert.ElementsMatch(t, n.Hostnames(), names.Value)
				return nil
			})
			if tc.wantErr != nil {
				require.Error(t, err)
				for _, s := range tc.wantErr {
					assert.Contains(t, err.Error(), s)
				}
				assert.Empty(t, rec.ByType("aws:ec2/eip:Eip"), "nothing may be declared when the ladder fails")
				return
			}
			require.NoError(t, err)

			e := mustFind(t, rec, "aws:ec2/eip:Eip", "net-eip")
			assert.Equal(t, tc.wantImport, e.ImportID, "adopted EIPs are imported, never re-allocated")
			assert.Equal(t, n.Stack.ProdPosture(), e.Protect)
			assert.Contains(t, e.IgnoreChanges, "tags")
			if tc.wantImport == "" {
				// CI may allocate only with the test Name tag in the request.
				assert.Equal(t, map[string]any{"Name": n.EIPTag, "agentkeys:stack": tc.stack}, e.Plain()["tags"], "a new allocation carries its tags")
			} else {
				assert.Nil(t, e.Plain()["tags"], "an imported EIP's inputs carry no tags (they would fail the import)")
			}

			nameTag := mustFind(t, rec, "aws:ec2/tag:Tag", "net-eip-tag-name")
			assert.Equal(t, n.EIPTag, nameTag.Str("value"))
			assert.True(t, nameTag.DependsOn(e.URN))
			stackTag := mustFind(t, rec, "aws:ec2/tag:Tag", "net-eip-tag-agentkeys-stack")
			assert.Equal(t, tc.stack, stackTag.Str("value"))

			assoc := mustFind(t, rec, "aws:ec2/eipAssociation:EipAssociation", "net-eip-assoc")
			// A destroy releases only what the stack allocated; an adopted
			// EIP, its tags and its association stay with the operator (§11).
			adopted := tc.wantImport != ""
			for _, r := range []componenttest.Resource{e, nameTag, stackTag, assoc} {
				assert.Equal(t, adopted, r.RetainOnDelete, "%s retainOnDelete", r.Name)
			}
			for _, r := range rec.ByType("aws:route53/record:Record") {
				assert.False(t, r.RetainOnDelete, "%s: the stack's records go with it", r.Name)
			}
			assert.Equal(t, testInst, assoc.Str("instanceId"))
			assert.Equal(t, e.ID, assoc.Str("allocationId"))
			assert.True(t, assoc.DependsOn(e.URN))

			recs := rec.ByType("aws:route53/record:Record")
			require.Len(t, recs, 9)
			var hosts []string
			for _, r := range recs {
				hosts = append(hosts, r.Str("name"))
				assert.Equal(t, "A", r.Str("type"))
				assert.Equal(t, testZoneID, r.Str("zoneId"))
				assert.EqualValues(t, 300, componenttest.Unwrap(r.Inputs["ttl"]).NumberValue())
				ip := componenttest.MockPublicIP
				if tc.wantImport != "" {
					ip = componenttest.ImportedIP(tc.wantImport)
				}
				assert.Equal(t, []string{ip}, strs(r.Inputs["records"]), "%s must point at this stack's one EIP", r.Str("name"))
				assert.True(t, r.DependsOn(e.URN), "%s must wait for the EIP", r.Name)
				assert.True(t, r.DependsOn(assoc.URN), "%s must wait for the association", r.Name)
			}
			assert.ElementsMatch(t, n.Hostnames(), hosts)
			assertParented(t, rec, "agentkeys:index:Network", 1)
		})
	}
}

func TestNetworkWarnsWhenTagIsStale(t *testing.T) {
	n := namesFor(t, "test-2")
	l := EIPLookups{InstanceID: testInst, Tag: n.EIPTag, Attached: []EIPRef{{"eipalloc-on", "198.51.100.7"}}, Tagged: []EIPRef{{"eipalloc-old", "198.51.100.8"}}}
	d, err := ChooseEIP(l)
	require.NoError(t, err)
	require.Len(t, d.Warnings, 1)
	assert.Contains(t, d.Warnings[0], "eipalloc-old")
	assert.Contains(t, d.Warnings[0], "stale tag")
}

func TestNetworkRejectsMissingDecision(t *testing.T) {
	rec := newRec("test")
	err := rec.Run(func(ctx *pulumi.Context) error {
		_, err := NewNetwork(ctx, "net", &NetworkArgs{Names: namesFor(t, "test"), InstanceID: testInst})
		return err
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ChooseEIP")
}

func TestLookupUnknownInvokeFails(t *testing.T) {
	rec := newRec("test")
	err := rec.Run(func(ctx *pulumi.Context) error {
		_, err := LookupEIPs(ctx, testInst, "t", "")
		return err
	})
	require.Error(t, err, "an unanswered invoke must fail the run")
}
