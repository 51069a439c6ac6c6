package main

import (
	"bytes"
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

	"github.com/agentkeys/agentkeys-infra/internal/testkit/agentkeysws"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/stacktest"
)

// project writes Pulumi.<stack>.yaml files into a temp project dir.
func project(t *testing.T, stacks ...string) string {
	dir := t.TempDir()
	for _, s := range stacks {
		writeStack(t, dir, s, "i-0123456789abcdef0")
	}
	return dir
}

// projectWith writes one stack whose broker is instanceID.
func projectWith(t *testing.T, stack, instanceID string) string {
	dir := t.TempDir()
	writeStack(t, dir, stack, instanceID)
	return dir
}

func writeStack(t *testing.T, dir, s, instanceID string) {
	{
		y := "config:\n  aws:region: us-east-1\n  agentkeys:accountId: \"" + mototest.Account + "\"\n  agentkeys:zone: example.test\n  agentkeys:parentZoneId: Z0EXAMPLE0ZONE0ID\n  agentkeys:instanceId: " + instanceID + "\n"
		if err := os.WriteFile(filepath.Join(dir, "Pulumi."+s+".yaml"), []byte(y), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func names(t *testing.T, dir, stack string) naming.Names {
	tg, err := stackcfg.Load(dir, stack)
	if err != nil {
		t.Fatal(err)
	}
	return tg.Names
}

func runCLI(t *testing.T, d deps, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb, d)
	return code, out.String(), errb.String()
}

func TestMain(m *testing.M) {
	code := m.Run()
	agentkeysws.Cleanup()
	os.Exit(code)
}

func TestVerifyCommandHealthyAndBroken(t *testing.T) {
	dir := project(t, "test-2")
	n := names(t, dir, "test-2")
	st := stacktest.Start(t, n, stacktest.Options{})
	mototest.Start(t)
	cfg := mototest.Config(t)
	_, err := iam.NewFromConfig(cfg).CreateOpenIDConnectProvider(context.Background(), &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(n.Issuer), ClientIDList: []string{naming.OIDCAudience}, ThumbprintList: []string{strings.Repeat("0", 40)},
	})
	if err != nil {
		t.Fatal(err)
	}
	// No pulumi CLI here: the EIP comes from the address tagged for the stack.
	alloc, err := ec2.NewFromConfig(cfg).AllocateAddress(context.Background(), &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	ip := aws.ToString(alloc.PublicIp)
	doh := stacktest.DoH(t, stacktest.Records(n, ip))
	args := []string{"verify", "--project-dir", dir, "--stack", "test-2", "--doh-url", doh, "--connect", "*=" + st.Addr, "--ca", st.CAFile}
	d := deps{pulumi: &stackcfg.Pulumi{Bin: "/nonexistent/pulumi", Dir: dir}}

	start := time.Now()
	code, out, errs := runCLI(t, d, args...)
	t.Logf("verify on a healthy local stack took %s", time.Since(start))
	if code != 0 {
		t.Fatalf("healthy stack: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "35/35 checks passed, 0 warnings") || strings.Contains(out, "FAIL") || !strings.Contains(out, ip+" (EC2 tag Name="+n.EIPTag+")") {
		t.Fatalf("table:\n%s", out)
	}
	if !strings.Contains(errs, "stack outputs of test-2 unavailable") {
		t.Errorf("stderr does not say why outputs were not used: %q", errs)
	}

	// A degraded tier warns (exit 0); a stopped worker fails with its unit named.
	st.DropSESCache()
	st.Stop("memory")
	code, out, errs = runCLI(t, d, append(args, "--json")...)
	if code != exitFail {
		t.Fatalf("broken stack: exit %d, want 1\n%s", code, out)
	}
	var rep struct {
		OK     bool
		Checks []struct {
			Check, Target, Status, Fix string
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	var bad []string
	for _, c := range rep.Checks {
		if c.Status != "ok" {
			bad = append(bad, c.Status+" "+c.Check+" "+c.Target)
		}
	}
	want := []string{"fail health https://" + n.WorkerHosts["memory"] + "/healthz", "warn ready auth/email_link"}
	if rep.OK || strings.Join(bad, "|") != strings.Join(want, "|") {
		t.Fatalf("rows not ok: %v, want %v", bad, want)
	}
	if !strings.Contains(errs, "1 of 35 checks failed") {
		t.Fatalf("stderr %q", errs)
	}
	// The table lists the fix of each row that is not ok.
	_, out, _ = runCLI(t, d, args...)
	if !strings.Contains(out, "fixes:") || !strings.Contains(out, "systemctl status agentkeys-worker-memory.service") || !strings.Contains(out, "WARN ready auth/email_link") {
		t.Fatalf("table without fixes:\n%s", out)
	}
	// --eip overrides, and an A record that differs from it fails.
	code, out, _ = runCLI(t, d, append(args, "--eip", "198.51.100.1")...)
	if code != exitFail || !strings.Contains(out, "want the stack's EIP = 198.51.100.1") {
		t.Fatalf("--eip: %d\n%s", code, out)
	}
}

func TestVerifyBadInput(t *testing.T) {
	dir := project(t, "test-2")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"verify"}, "--stack is required"},
		{[]string{"verify", "--stack", "staging"}, "not an AgentKeys stack name"},
		{[]string{"verify", "--stack", "test-3"}, "does not exist"},
		{[]string{"verify", "--stack", "test-2", "--resolver", "tcp://1.1.1.1"}, "--resolver"},
		{[]string{"verify", "--stack", "test-2", "--connect", "nohost"}, "want host=ip:port"},
		{[]string{"verify", "--stack", "test-2", "--ca", "/nonexistent/ca.pem"}, "--ca"},
		{[]string{"verify", "--stack", "test-2", "--eip", "broker"}, "--eip"},
	} {
		code, _, errs := runCLI(t, deps{}, append(tc.args, "--project-dir", dir)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
