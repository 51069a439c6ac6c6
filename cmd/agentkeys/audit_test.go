package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/audit"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// The CLI maps findings to exit 1 and prints each with its fix; the finding
// logic itself is covered against seeded accounts in ops/audit.
func TestAuditCommandOnUndeployedStack(t *testing.T) {
	dir := project(t, "test-2")
	mototest.Start(t)
	d := deps{pulumi: &stackcfg.Pulumi{Bin: "/nonexistent/pulumi", Dir: dir}}
	code, out, errs := runCLI(t, d, "audit", "--project-dir", dir, "--stack", "test-2")
	if code != exitFail || !strings.Contains(errs, "findings") {
		t.Fatalf("exit %d, stderr %q", code, errs)
	}
	for _, want := range []string{"user/agentkeys-daemon-test-2", "role/agentkeys-test-broker-ssm-2", "bucket/agentkeys-mail-test-2-123456789012", "instance/i-0123456789abcdef0", "missing", "13 resources checked", "fixes:", "`pulumi up --stack test-2` creates it"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if code, _, errs := runCLI(t, d, "audit", "--project-dir", dir); code != exitUsage || !strings.Contains(errs, "--stack") {
		t.Fatalf("no --stack: %d %s", code, errs)
	}
}

// --fix shows the §7 remediation, applies it to the role the instance runs
// with (found through its tagged EIP), and audits again.
func TestAuditFixDetachesS3FullAccess(t *testing.T) {
	mototest.Start(t)
	ctx := context.Background()
	cfg := mototest.Config(t)
	im, ec := iam.NewFromConfig(cfg), ec2.NewFromConfig(cfg)
	dir := project(t, "test-2")
	n := names(t, dir, "test-2")
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(im.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(n.HostRole), AssumeRolePolicyDocument: aws.String(policy.HostRoleTrust().JSON())}))
	must(im.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(n.HostRole), PolicyArn: aws.String(audit.S3FullAccessARN)}))
	must(im.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile)}))
	must(im.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(n.InstanceProfile), RoleName: aws.String(n.HostRole)}))
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1),
		IamInstanceProfile: &ec2types.IamInstanceProfileSpecification{Name: aws.String(n.InstanceProfile)}})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	writeStack(t, dir, "test-2", id)
	alloc, err := ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	must(ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)}))

	d := deps{pulumi: &stackcfg.Pulumi{Bin: "/nonexistent/pulumi", Dir: dir}}
	cmdline := "aws iam detach-role-policy --role-name " + n.HostRole + " --policy-arn " + audit.S3FullAccessARN
	code, out, _ := runCLI(t, d, "audit", "--project-dir", dir, "--stack", "test-2")
	if code != exitFail || !strings.Contains(out, "s3-full-access") || !strings.Contains(out, cmdline+" (agentkeys audit --fix does it)  [safe") ||
		!strings.Contains(out, "14 resources checked, federated=false, runtime role "+n.HostRole) {
		t.Fatalf("audit: %d\n%s", code, out)
	}
	code, out, errs := runCLI(t, d, "audit", "--project-dir", dir, "--stack", "test-2", "--fix")
	show, after, ok := strings.Cut(out, "applying 1 safe fix(es):\n  done   "+cmdline+"\n")
	if !ok || !strings.Contains(show, "s3-full-access") || strings.Contains(after, "s3-full-access") || !strings.Contains(after, "after the fixes:") {
		t.Fatalf("--fix: exit %d\n%s\n%s", code, out, errs)
	}
	att, err := im.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(n.HostRole)})
	if err != nil || len(att.AttachedPolicies) != 0 {
		t.Fatalf("still attached: %+v %v", att, err)
	}
	// Nothing safe left: --fix is then a plain audit.
	if _, out, _ := runCLI(t, d, "audit", "--project-dir", dir, "--stack", "test-2", "--fix"); strings.Contains(out, "applying") {
		t.Fatalf("second --fix applied something:\n%s", out)
	}
}
