package main

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

func TestAttachProfileCommand(t *testing.T) {
	mototest.StartPlain(t)
	ctx := context.Background()
	cfg := mototest.Config(t)
	if _, err := iam.NewFromConfig(cfg).CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String("agentkeys-test-broker-ssm-2")}); err != nil {
		t.Fatal(err)
	}
	run, err := ec2.NewFromConfig(cfg).RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1), InstanceType: types.InstanceTypeT3Small})
	if err != nil {
		t.Fatal(err)
	}
	dir := projectWith(t, "test-2", *run.Instances[0].InstanceId)
	for i, want := range []string{"changed: ", "ok: "} {
		code, out, errs := runCLI(t, deps{}, "attach-profile", "--project-dir", dir, "--stack", "test-2")
		if code != 0 || !strings.HasPrefix(out, want) || !strings.Contains(out, "agentkeys-test-broker-ssm-2") {
			t.Fatalf("run %d: exit %d, out %q, err %q", i+1, code, out, errs)
		}
	}
	if code, _, errs := runCLI(t, deps{}, "attach-profile", "--project-dir", dir); code != exitUsage || !strings.Contains(errs, "--stack") {
		t.Fatalf("no --stack: %d %s", code, errs)
	}
}
