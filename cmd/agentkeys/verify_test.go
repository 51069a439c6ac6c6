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
	"github.com/aws/aws-sdk-go-v2/service/iam"

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

func TestVerifyCommandHealthyAndBroken(t *testing.T) {
	dir := project(t, "test-2")
	n := names(t, dir, "test-2")
	st := stacktest.Start(t, n, stacktest.Faults{})
	mototest.Start(t)
	_, err := iam.NewFromConfig(mototest.Config(t)).CreateOpenIDConnectProvider(context.Background(), &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(n.Issuer), ClientIDList: []string{naming.OIDCAudience}, ThumbprintList: []string{strings.Repeat("0", 40)},
	})
	if err != nil {
		t.Fatal(err)
	}
	doh := stacktest.DoH(t, stacktest.Records(n, "127.0.0.1"))
	args := []string{"verify", "--project-dir", dir, "--stack", "test-2", "--doh-url", doh, "--connect", "*=" + st.Addr, "--ca", st.CAFile}

	start := time.Now()
	code, out, errs := runCLI(t, deps{}, args...)
	t.Logf("verify on a healthy local stack took %s", time.Since(start))
	if code != 0 {
		t.Fatalf("healthy stack: exit %d\n%s\n%s", code, out, errs)
	}
	if !strings.Contains(out, "28/28 checks passed") || strings.Contains(out, "FAIL") {
		t.Fatalf("table:\n%s", out)
	}

	st.SetFaults(stacktest.Faults{Unhealthy: map[string]int{n.WorkerHosts["memory"]: 503}})
	code, out, errs = runCLI(t, deps{}, append(args, "--json")...)
	if code != exitFail {
		t.Fatalf("broken stack: exit %d, want 1\n%s", code, out)
	}
	var rep struct {
		OK     bool
		Checks []struct {
			Check, Target string
			OK            bool
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, out)
	}
	var failed []string
	for _, c := range rep.Checks {
		if !c.OK {
			failed = append(failed, c.Check+" "+c.Target)
		}
	}
	if rep.OK || len(failed) != 1 || failed[0] != "healthz https://"+n.WorkerHosts["memory"]+"/healthz" {
		t.Fatalf("failed rows %v", failed)
	}
	if !strings.Contains(errs, "1 of 28 checks failed") {
		t.Fatalf("stderr %q", errs)
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
	} {
		code, _, errs := runCLI(t, deps{}, append(tc.args, "--project-dir", dir)...)
		if code != exitUsage || !strings.Contains(errs, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tc.args, code, errs, tc.want)
		}
	}
}
