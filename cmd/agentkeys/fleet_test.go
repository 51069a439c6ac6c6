package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/ses"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/fleet"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
	"github.com/agentkeys/agentkeys-infra/policy"
)

// fleetWorld is moto seeded like a fleet, two live broker hosts, DoH and a
// file:// Pulumi backend.
type fleetWorld struct {
	dir, doh, ca, backend string
	connect               []string
	ec                    *ec2.Client
	ip                    map[string]string // stack -> EIP
	inst                  map[string]string // stack -> instance
}

// must2 panics on a seeding error; the test fails with its text.
func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func newFleetWorld(t *testing.T) *fleetWorld {
	ctx := context.Background()
	mototest.Start(t)
	cfg := mototest.Config(t)
	w := &fleetWorld{ec: ec2.NewFromConfig(cfg), ip: map[string]string{}, inst: map[string]string{}}
	w.dir = project(t, "prod", "test-2", "test-3")
	acct := must2(os.ReadFile(filepath.Join("..", "..", "Pulumi.account.yaml")))
	if err := os.WriteFile(filepath.Join(w.dir, "Pulumi.account.yaml"), acct, 0o644); err != nil {
		t.Fatal(err)
	}
	// test-2: running, its tagged EIP on it. test-3: stopped, its EIP on another instance.
	run := func() string {
		r := must2(w.ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)}))
		return aws.ToString(r.Instances[0].InstanceId)
	}
	stray := run()
	for _, s := range []string{"test-2", "test-3"} {
		w.inst[s] = run()
		writeStack(t, w.dir, s, w.inst[s])
		n := names(t, w.dir, s)
		a := must2(w.ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n.EIPTag)}},
		}}}))
		w.ip[s] = aws.ToString(a.PublicIp)
		on := w.inst[s]
		if s == "test-3" {
			on = stray
		}
		must2(w.ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: a.AllocationId, InstanceId: aws.String(on)}))
	}
	must2(w.ec.StopInstances(ctx, &ec2.StopInstancesInput{InstanceIds: []string{w.inst["test-3"]}}))

	// The account stack's shared resources.
	im, sv := iam.NewFromConfig(cfg), ses.NewFromConfig(cfg)
	must2(im.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{Url: aws.String("https://" + policy.GitHubOIDCHost),
		ClientIDList: []string{"sts.amazonaws.com"}, ThumbprintList: []string{strings.Repeat("a", 40)}}))
	must2(im.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(naming.CIDeployRole), AssumeRolePolicyDocument: aws.String(policy.HostRoleTrust().JSON())}))
	must2(sv.CreateReceiptRuleSet(ctx, &ses.CreateReceiptRuleSetInput{RuleSetName: aws.String(naming.SharedRuleSet)}))
	must2(sv.SetActiveReceiptRuleSet(ctx, &ses.SetActiveReceiptRuleSetInput{RuleSetName: aws.String(naming.SharedRuleSet)}))

	// Live hosts: test-2 healthy; test-3's broker down, a short-lived
	// certificate and a worker record pointing elsewhere.
	n2, n3 := names(t, w.dir, "test-2"), names(t, w.dir, "test-3")
	h2 := stacktest.Start(t, n2, stacktest.Options{})
	h3 := stacktest.Start(t, n3, stacktest.Options{CertDays: map[string]int{n3.SignerHost: 3}})
	h3.Stop("broker")
	for _, h := range []*stacktest.Stack{h2, h3} {
		for _, host := range h.Names.TLSHostnames() {
			w.connect = append(w.connect, "--connect", host+"="+h.Addr)
		}
	}
	w.connect = append(w.connect, "--connect", "*=127.0.0.1:1") // prod: nothing listens
	pems := append(must2(os.ReadFile(h2.CAFile)), must2(os.ReadFile(h3.CAFile))...)
	w.ca = filepath.Join(t.TempDir(), "cas.pem")
	if err := os.WriteFile(w.ca, pems, 0o644); err != nil {
		t.Fatal(err)
	}
	recs := stacktest.Records(n2, w.ip["test-2"])
	for h, ip := range stacktest.Records(n3, w.ip["test-3"]) {
		recs[h] = ip
	}
	recs[n3.WorkerHosts["audit"]] = "198.51.100.9"
	w.doh = stacktest.DoH(t, recs)

	// A CI job holds test-2's Pulumi lock (the DIY backend's lock file).
	w.backend = t.TempDir()
	lockDir := filepath.Join(w.backend, ".pulumi", "locks", "organization", policy.PulumiProject, "test-2")
	if err := os.MkdirAll(lockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock := `{"pid":4242,"username":"runner","hostname":"fv-az123","timestamp":"2026-12-01T10:00:00Z"}`
	if err := os.WriteFile(filepath.Join(lockDir, "5b0c1f0e-0000-4000-8000-000000000001.json"), []byte(lock), 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *fleetWorld) args(extra ...string) []string {
	a := append([]string{"fleet", "--project-dir", w.dir, "--doh-url", w.doh, "--ca", w.ca, "--backend", "file://" + w.backend, "--timeout", "2s"}, w.connect...)
	return append(a, extra...)
}

func TestFleetTable(t *testing.T) {
	w := newFleetWorld(t)
	t.Setenv("PATH", "/usr/bin:/bin") // no pulumi CLI: last deploy "-"
	t.Setenv("AGENTKEYS_PULUMI", "")
	d := deps{}
	start := time.Now()
	code, out, errs := runCLI(t, d, w.args("--watch", "1ms", "--count", "2")...)
	t.Logf("fleet, 4 stacks (2 live hosts, 1 dead), two tables: %s", time.Since(start))
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errs)
	}
	if got := strings.Count(out, "STACK"); got != 2 {
		t.Fatalf("--watch --count 2 printed %d tables:\n%s", got, out)
	}
	if !strings.Contains(errs, "no pulumi CLI") {
		t.Errorf("stderr does not say outputs are unavailable: %q", errs)
	}
	lines := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			lines[f[0]] = l
		}
	}
	t.Logf("\n%s", out)
	for stack, wants := range map[string][]string{
		"account": {"rule set agentkeys active", "GitHub OIDC ok", "CI role ok", "test boundary MISSING", "free"},
		"test-2": {"running " + w.inst["test-2"], w.ip["test-2"], " ok ", "9/9 = EIP", "min 60d (broker-test-2)", "8/8 up, ready",
			"busy: runner@fv-az123 pid 4242 since 12-01 10:00Z"},
		"test-3": {"stopped " + w.inst["test-3"], "config says " + w.inst["test-3"], "drift 1/9: audit-test-3 198.51.100.9",
			"! signer-test-3 3d", "7/8 up, readyz HTTP 502; broker-test-3 HTTP 502", "free"},
		"prod": {"missing i-0123456789abcdef0", "no EIP tagged agentkeys-broker-eip", "drift 9/9: all NXDOMAIN", "! all connection refused", "0/8 up, readyz connection refused; all connection refused"},
	} {
		l, ok := lines[stack]
		if !ok {
			t.Errorf("no row for %s", stack)
			continue
		}
		for _, s := range wants {
			if !strings.Contains(l, s) {
				t.Errorf("%s row lacks %q:\n%s", stack, s, l)
			}
		}
	}

	// --json for scripts, and --stack narrows; an unknown stack is bad input.
	code, out, errs = runCLI(t, d, w.args("--json", "--stack", "test-3")...)
	var doc struct {
		Stacks []fleet.Row
	}
	if code != 0 || json.Unmarshal([]byte(out), &doc) != nil || len(doc.Stacks) != 1 {
		t.Fatalf("--json: %d %s %s", code, out, errs)
	}
	r := doc.Stacks[0]
	if r.Stack != "test-3" || r.OK || r.EC2 != "stopped "+w.inst["test-3"] || len(r.Checks) == 0 {
		t.Fatalf("test-3 json row: %+v", r)
	}
	if code, _, errs := runCLI(t, d, w.args("--stack", "test-9")...); code != exitUsage || !strings.Contains(errs, "Pulumi.test-9.yaml") {
		t.Fatalf("--stack test-9: %d %s", code, errs)
	}
	empty := t.TempDir()
	if code, _, errs := runCLI(t, d, "fleet", "--project-dir", empty); code != exitUsage || !strings.Contains(errs, "no Pulumi.<stack>.yaml") {
		t.Fatalf("empty project: %d %s", code, errs)
	}
}

// Each stack's EC2 is looked up in that stack's own region, whatever
// AWS_REGION says (mototest sets us-east-1).
func TestFleetUsesEachStacksRegion(t *testing.T) {
	mototest.Start(t)
	dir := project(t, "test-3")
	n3 := names(t, dir, "test-3")
	y := must2(os.ReadFile(filepath.Join(dir, "Pulumi.test-3.yaml")))
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.test-3.yaml"), []byte(strings.Replace(string(y), "aws:region: us-east-1", "aws:region: eu-west-1", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	euCfg := mototest.Config(t)
	euCfg.Region = "eu-west-1"
	eu := must2(ec2.NewFromConfig(euCfg).AllocateAddress(context.Background(), &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n3.EIPTag)}},
	}}}))
	t.Setenv("PATH", "/usr/bin:/bin")
	t.Setenv("AGENTKEYS_PULUMI", "")
	code, out, errs := runCLI(t, deps{}, "fleet", "--project-dir", dir, "--stack", "test-3", "--connect", "*=127.0.0.1:1", "--doh-url", stacktest.DoH(t, nil), "--timeout", "1s")
	if code != 0 || !strings.Contains(out, aws.ToString(eu.PublicIp)) || !strings.Contains(out, "not associated with any instance") {
		t.Fatalf("test-3 in eu-west-1: exit %d\n%s%s", code, out, errs)
	}
}
