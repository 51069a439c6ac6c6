package components

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/route53"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optdestroy"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	awsstandin "github.com/agentkeys/agentkeys-infra/test/providers/aws"
)

// engineEnv points the Automation API at the tools make deps installs (the
// CLI, and the moto-backed aws stand-in in the project's PULUMI_HOME);
// missing tools skip, or fail under AGENTKEYS_E2E=1.
func engineEnv(t *testing.T) auto.LocalWorkspaceOption {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	cli, home := os.Getenv("AGENTKEYS_PULUMI"), os.Getenv("AGENTKEYS_PULUMI_HOME")
	if cli == "" {
		cli = filepath.Join(root, "bin", "pulumi")
	}
	if home == "" {
		home = filepath.Join(root, ".pulumi-home")
	}
	plugin := filepath.Join(home, "plugins", "resource-aws-v6.83.4", "pulumi-resource-aws")
	for _, p := range []string{cli, plugin} {
		if _, err := os.Stat(p); err != nil {
			msg := p + " is missing (install: make deps)"
			if os.Getenv("AGENTKEYS_E2E") == "1" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	t.Setenv("PATH", filepath.Dir(cli)+string(os.PathListSeparator)+os.Getenv("PATH"))
	return auto.EnvVars(map[string]string{
		"PULUMI_HOME": home, "PULUMI_BACKEND_URL": "file://" + t.TempDir(), "PULUMI_CONFIG_PASSPHRASE": "test",
		"PULUMI_SKIP_UPDATE_CHECK": "true", "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
	})
}

// A destroy under the real engine, against moto: the EIP the stack adopted
// by import (here the operator's, attached and tagged by the old scripts)
// stays allocated, tagged and on its instance; the records go. An EIP the
// stack allocated itself is released.
func TestDestroyRetainsAnAdoptedEIP(t *testing.T) {
	env := engineEnv(t)
	mototest.StartWith(t, mototest.Options{Python: awsstandin.MotoFills})
	ctx := context.Background()
	cfg := mototest.Config(t)
	ec, r53 := ec2.NewFromConfig(cfg), route53.NewFromConfig(cfg)
	zone, err := r53.CreateHostedZone(ctx, &route53.CreateHostedZoneInput{Name: aws.String(testZone), CallerReference: aws.String("t")})
	if err != nil {
		t.Fatal(err)
	}
	zoneID := strings.TrimPrefix(aws.ToString(zone.HostedZone.Id), "/hostedzone/")
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(2), MaxCount: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	names := func(stack string) naming.Names {
		s, _ := naming.ParseStack(stack)
		return naming.Derive(s, naming.Fork{AccountID: mototest.Account, Zone: testZone, ParentZoneID: zoneID, Region: "us-east-1"})
	}
	records := func() int {
		out, err := r53.ListResourceRecordSets(ctx, &route53.ListResourceRecordSetsInput{HostedZoneId: aws.String(zoneID)})
		if err != nil {
			t.Fatal(err)
		}
		a := 0
		for _, r := range out.ResourceRecordSets {
			if r.Type == "A" {
				a++
			}
		}
		return a
	}
	stack := func(name, inst string) (auto.Stack, *EIPDecision) {
		n := names(name)
		var dec EIPDecision
		s, err := auto.UpsertStackInlineSource(ctx, name, "agentkeys", func(ctx *pulumi.Context) error {
			l, err := LookupEIPs(ctx, inst, n.EIPTag, "")
			if err != nil {
				return err
			}
			if dec, err = ChooseEIP(l); err != nil {
				return err
			}
			_, err = NewNetwork(ctx, "net", &NetworkArgs{Names: n, InstanceID: inst, EIP: dec})
			return err
		}, env)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetConfig(ctx, "aws:region", auto.ConfigValue{Value: "us-east-1"}); err != nil {
			t.Fatal(err)
		}
		return s, &dec
	}

	// test-2 adopts the EIP the old scripts attached and tagged.
	inst2, inst3 := aws.ToString(run.Instances[0].InstanceId), aws.ToString(run.Instances[1].InstanceId)
	n2 := names("test-2")
	old, err := ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n2.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: old.AllocationId, InstanceId: aws.String(inst2)}); err != nil {
		t.Fatal(err)
	}
	s2, dec2 := stack("test-2", inst2)
	if _, err := s2.Up(ctx, optup.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("up test-2: %v", err)
	}
	if dec2.Rung != EIPAttached || dec2.AllocationID != aws.ToString(old.AllocationId) || records() != 9 {
		t.Fatalf("up test-2: decision %+v, %d A records", dec2, records())
	}
	// test-3 has no EIP: the stack allocates one.
	s3, dec3 := stack("test-3", inst3)
	if _, err := s3.Up(ctx); err != nil {
		t.Fatalf("up test-3: %v", err)
	}
	if dec3.Rung != EIPNew || records() != 18 {
		t.Fatalf("up test-3: decision %+v, %d A records", dec3, records())
	}

	if _, err := s2.Destroy(ctx, optdestroy.ProgressStreams(testWriter{t})); err != nil {
		t.Fatalf("destroy test-2: %v", err)
	}
	got, err := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{aws.ToString(old.AllocationId)}})
	if err != nil || len(got.Addresses) != 1 {
		t.Fatalf("the adopted EIP was released by the destroy: %v %+v", err, got)
	}
	a := got.Addresses[0]
	tags := fromTags(a.Tags)
	if aws.ToString(a.InstanceId) != inst2 || tags["Name"] != n2.EIPTag || tags["agentkeys:stack"] != "test-2" {
		t.Fatalf("after destroy: instance %q tags %v; want it on %s with its tags", aws.ToString(a.InstanceId), tags, inst2)
	}
	if records() != 9 {
		t.Fatalf("%d A records after destroying test-2, want test-3's 9", records())
	}

	// The EIP the stack allocated is the stack's to release.
	alloc3 := ""
	all, _ := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	for _, x := range all.Addresses {
		if aws.ToString(x.InstanceId) == inst3 {
			alloc3 = aws.ToString(x.AllocationId)
		}
	}
	if _, err := s3.Destroy(ctx); err != nil {
		t.Fatalf("destroy test-3: %v", err)
	}
	if _, err := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{alloc3}}); err == nil || alloc3 == "" {
		t.Fatalf("the EIP test-3 allocated (%q) survived its destroy", alloc3)
	}
	if records() != 0 {
		t.Fatalf("%d A records left", records())
	}
}

func fromTags(ts []ec2types.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

// testWriter sends engine progress to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
