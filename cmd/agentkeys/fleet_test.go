package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/deploy"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
)

type historyFake struct{ cliFake }

func (*historyFake) LastDeploy(_ context.Context, s string) (deploy.LastDeploy, bool, error) {
	if s != "test-2" {
		return deploy.LastDeploy{}, false, nil
	}
	return deploy.LastDeploy{Kind: "update", Result: "succeeded", End: time.Date(2026, 11, 27, 9, 30, 0, 0, time.UTC)}, true, nil
}

func TestFleetTable(t *testing.T) {
	dir := project(t, "prod", "test-2", "test-3")
	n2 := names(t, dir, "test-2")
	n3 := names(t, dir, "test-3")
	healthy := stacktest.Start(t, n2, stacktest.Options{})
	sick := stacktest.Start(t, n3, stacktest.Options{})
	sick.Stop("broker")
	mototest.Start(t)
	ec := ec2.NewFromConfig(mototest.Config(t))
	alloc, err := ec.AllocateAddress(context.Background(), &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n2.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	d := deps{engine: func(string, io.Writer) deploy.Engine { return &historyFake{} }}
	code, out, errs := runCLI(t, d, "fleet", "--project-dir", dir, "--ca", healthy.CAFile,
		"--connect", n2.BrokerHost+"="+healthy.Addr, "--connect", n3.BrokerHost+"="+sick.Addr,
		"--connect", "broker.example.test=127.0.0.1:1", "--watch", "1ms", "--count", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if got := strings.Count(out, "STACK"); got != 2 {
		t.Fatalf("--watch --count 2 printed %d tables:\n%s", got, out)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	ip := aws.ToString(alloc.PublicIp)
	if l := lines["test-2"]; !strings.Contains(l, ip) || !strings.Contains(l, "healthy") || !strings.Contains(l, "update succeeded 2026-11-27 09:30Z") {
		t.Errorf("test-2 row: %q", l)
	}
	if l := lines["test-3"]; !strings.Contains(l, "down:") || strings.Contains(l, "healthy") {
		t.Errorf("test-3 row (different CA, 502): %q", l)
	}
	if l := lines["prod"]; !strings.Contains(l, "prod") || !strings.Contains(l, "down:") || !strings.HasSuffix(strings.TrimSpace(l), "-") {
		t.Errorf("prod row: %q", l)
	}

	// --stack narrows the table; an unknown stack is bad input.
	code, out, errs = runCLI(t, d, "fleet", "--project-dir", dir, "--ca", healthy.CAFile,
		"--connect", n2.BrokerHost+"="+healthy.Addr, "--stack", "test-2")
	if code != 0 || !strings.Contains(out, "test-2") || strings.Contains(out, "test-3") || strings.Contains(out, "prod") {
		t.Fatalf("--stack test-2: exit %d\n%s%s", code, out, errs)
	}
	if code, _, errs := runCLI(t, d, "fleet", "--project-dir", dir, "--stack", "test-9"); code != exitUsage || !strings.Contains(errs, "Pulumi.test-9.yaml") {
		t.Fatalf("--stack test-9: %d %s", code, errs)
	}

	// Each stack's EIP is looked up in that stack's own region, whatever
	// AWS_REGION says (mototest sets us-east-1).
	y, err := os.ReadFile(filepath.Join(dir, "Pulumi.test-3.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.test-3.yaml"), []byte(strings.Replace(string(y), "aws:region: us-east-1", "aws:region: eu-west-1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	euCfg := mototest.Config(t)
	euCfg.Region = "eu-west-1"
	eu, err := ec2.NewFromConfig(euCfg).AllocateAddress(context.Background(), &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n3.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, d, "fleet", "--project-dir", dir, "--stack", "test-3", "--connect", "*=127.0.0.1:1")
	if code != 0 || !strings.Contains(out, aws.ToString(eu.PublicIp)) {
		t.Fatalf("test-3 in eu-west-1: exit %d\n%s%s", code, out, errs)
	}

	empty := t.TempDir()
	if code, _, errs := runCLI(t, d, "fleet", "--project-dir", empty); code != exitUsage || !strings.Contains(errs, "no Pulumi.<stack>.yaml") {
		t.Fatalf("empty project: %d %s", code, errs)
	}
}
