package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/infra/isolation"
	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
)

const (
	// Each side's secrets provider (scripts/bootstrap-state.sh).
	testKMSProvider = "awskms://alias/agentkeys-pulumi-test?region=us-east-1"
	prodKMSProvider = "awskms://alias/agentkeys-pulumi-prod?region=us-east-1"
	commandType     = "command:remote:Command"
	copyType        = "command:remote:CopyToRemote"
)

// TestEngineDeploy is the README's "How it is used" through `agentkeys
// deploy` and the real engine: PR preview, up from an empty account, a
// no-op up and preview, a redeploy, drift, destroy, parallel slots, an
// unreachable host and the refusals that protect shared and production
// resources. Its figures are printed last by `make test-engine`.
func TestEngineDeploy(t *testing.T) {
	used := map[string]bool{}
	eip2, eip3, eip4, eip5 := freeLoopback(t, used), freeLoopback(t, used), freeLoopback(t, used), freeLoopback(t, used)
	e := newEngineRun(t, map[string]string{"agentkeys-broker-eip-test-2": eip2, "agentkeys-broker-eip-test-3": eip3,
		"agentkeys-broker-eip-test-4": eip4, "agentkeys-broker-eip-test-5": eip5})
	defer e.writeFigures()
	zone := e.zone()
	ctx := context.Background()

	// The account stack's committed file fits moto's account as it is.
	copyFile(t, filepath.Join(repoRoot(t), "Pulumi.account.yaml"), filepath.Join(e.project, "Pulumi.account.yaml"))
	h2 := e.hostStack("test-2", zone, eip2)
	h3 := e.hostStack("test-3", zone, eip3)
	// test-4's EIP has no host behind it.
	e.stackFile("test-4", "Pulumi.test-2.yaml", map[string]string{"agentkeys:instanceId": e.instance(), "agentkeys:parentZoneId": zone},
		map[string]string{"agentkeys:sshUser": sshUser, "agentkeys:sshHostKey": h2.h.HostKey},
		map[string]string{"agentkeys:sshPrivateKey": h2.h.UserKey}, true)
	// test-5's EIP leads to test-2's host: the wrong host.
	forward(t, h2.h, eip5)
	e.stackFile("test-5", "Pulumi.test-2.yaml", map[string]string{"agentkeys:instanceId": e.instance(), "agentkeys:parentZoneId": zone},
		map[string]string{"agentkeys:sshUser": sshUser, "agentkeys:sshHostKey": h2.h.HostKey, "agentkeys:agentkeysRepo": "file://" + h2.bare,
			"agentkeys:dnsResolver": "127.0.0.1:53"},
		map[string]string{"agentkeys:sshPrivateKey": h2.h.UserKey}, true)
	// prod as committed (its KMS provider, no encryptedkey yet) with this account's ids; no SSH key: no bring-up.
	e.stackFile("prod", "Pulumi.prod.yaml", map[string]string{"agentkeys:instanceId": e.instance(), "agentkeys:parentZoneId": zone}, nil, nil, false)
	committed := e.projectFiles()

	// 1. The pull-request preview, from an empty backend.
	summary := filepath.Join(t.TempDir(), "summary.md")
	outs := e.mustDeploy("preview", "--stack", "account,test-2", "--summary", summary)
	require.Len(t, outs, 2)
	p2 := outs[1]
	assert.Positive(t, p2.Preview.Counts["create"], "test-2 previews its creates")
	assert.Contains(t, strings.Join(stepsOf(p2.Preview, true), "\n"), "create "+commandType+" agentkeys-host-apply", "the preview shows the bring-up")
	require.NotEmpty(t, p2.Notes, "test-2's preview explains the OIDC provider it cannot show")
	assert.Contains(t, p2.Notes[0], "oidc-provider/broker-test-2.example.org")
	assert.Contains(t, p2.Notes[0], "serving OIDC discovery over TLS")
	md, err := os.ReadFile(summary)
	require.NoError(t, err)
	assert.Contains(t, string(md), "| test-2 | ok | "+itoa(p2.Preview.Counts["create"])+" |", "the summary's counts are the engine's")
	assert.Contains(t, string(md), "**test-2** (note): the IAM OIDC provider")
	assert.Contains(t, string(md), "aws:iam/role:Role", "the summary lists the engine's steps")

	// 2. The account stack, then test-2 from an empty account; each stack
	// was created with the secrets provider its file names.
	e.mustDeploy("up", "--stack", "account", "--yes")
	assert.Equal(t, prodKMSProvider, stackSecretsProvider(t, e.backend, "account"))
	// Its file has no encryptedkey: the next run takes the data key the
	// state was written with instead of minting another into its copy.
	key := stackDataKey(t, e.backend, "account")
	outs = e.mustDeploy("up", "--stack", "account", "--yes")
	assert.Empty(t, stepsOf(outs[0].Result, true))
	assert.Equal(t, key, stackDataKey(t, e.backend, "account"), "the account stack kept its data key")
	start := time.Now()
	outs = e.mustDeploy("up", "--stack", "test-2")
	e.figure("engine_up_s", secs(time.Since(start)))
	up := outs[0].Result
	var bringUp []string
	for _, s := range up.Steps {
		if s.Type == commandType || s.Type == copyType {
			bringUp = append(bringUp, s.Op+" "+s.URN[strings.LastIndex(s.URN, "::")+2:])
		}
	}
	assert.ElementsMatch(t, []string{"create agentkeys-host-stage", "create agentkeys-host-agent", "create agentkeys-host-apply"}, bringUp,
		"the bring-up ran through the real pulumi-command provider")
	assert.Equal(t, "[secret]", up.Outputs["daemonSecretKey"], "secret outputs stay secret")
	assert.Contains(t, up.Outputs["hostBringUp"], "pending", "DNS points elsewhere: no certificate, federation pending")
	spec, err := os.ReadFile(filepath.Join(h2.h.Etc, "agentkeys", "hostspec.json"))
	require.NoError(t, err, "the bring-up installed the spec over SSH")
	assert.Contains(t, string(spec), `"https://broker-test-2.example.org"`)
	assert.FileExists(t, filepath.Join(h2.h.Root, "etc/systemd/system/agentkeys-broker.service"), "the agent converged the host")
	live := e.live()
	_, lack := present(e.claims("test-2"), live)
	assert.Empty(t, lack, "the account holds every physical name the offline plan declares for test-2")
	assert.ElementsMatch(t, []string{"CNAME dkim", "CNAME dkim", "CNAME dkim"}, extras(live, e.claims("account"), e.claims("test-2")),
		"beyond the account stack and test-2, the account holds only test-2's DKIM records (named by tokens SES computes)")
	ck := checkpoint(t, e.backend, "test-2")
	assert.NotContains(t, ck, "PRIVATE KEY", "the SSH key is encrypted in the state")
	assert.Equal(t, testKMSProvider, stackSecretsProvider(t, e.backend, "test-2"))
	e.operator("attach-profile", "--stack", "test-2")
	e.operator("audit", "--stack", "test-2")
	creds := e.pulumi("stack", "output", "--show-secrets", "credentials", "--stack", "test-2")
	assert.Contains(t, creds, "[agentkeys-daemon-test-2]")
	assert.Regexp(t, `aws_secret_access_key = \S{20,}`, creds, "the README's credentials output decrypts with the stack's KMS key")

	// 3. Nothing changed: every resource the same, and the preview agrees.
	start = time.Now()
	outs = e.mustDeploy("up", "--stack", "test-2")
	e.figure("engine_noop_up_s", secs(time.Since(start)))
	noop := outs[0].Result
	e.figure("engine_noop_changes", noop.Counts["update"]+noop.Counts["replace"])
	assert.Empty(t, stepsOf(noop, true), "a second up changes nothing (no perpetual diff)")
	resources := noop.Counts["same"]
	outs = e.mustDeploy("preview", "--stack", "test-2")
	e.figure("engine_preview_changes", outs[0].Preview.changes())
	assert.Empty(t, stepsOf(outs[0].Preview, true), "preview reports no changes")

	// 4. A new agentkeys:redeploy re-runs the bring-up and nothing else.
	redeploy := filepath.Join(e.project, "Pulumi.test-2.yaml")
	b, _ := os.ReadFile(redeploy)
	edited := strings.Replace(string(b), "\nconfig:\n", "\nconfig:\n  agentkeys:redeploy: \"2\"\n", 1)
	require.NotEqual(t, string(b), edited)
	require.NoError(t, os.WriteFile(redeploy, []byte(edited), 0o644))
	committed["Pulumi.test-2.yaml"] = edited
	outs = e.mustDeploy("up", "--stack", "test-2")
	for _, s := range stepsOf(outs[0].Result, true) {
		assert.True(t, strings.Contains(s, " command:remote:"), "a redeploy changed more than the bring-up: %s", s)
	}
	assert.Positive(t, outs[0].Result.Counts["replace"], "the bring-up re-ran: %v", outs[0].Result.Counts)

	// 5. Drift: an inline policy deleted by hand is reported by refresh and restored by up.
	_, err = e.aws.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String("agentkeys-data-role-test-2"), PolicyName: aws.String("agentkeys-data-role-test-2-inline")})
	require.NoError(t, err)
	outs = e.mustDeploy("refresh", "--stack", "test-2")
	assert.Contains(t, strings.Join(stepsOf(outs[0].Result, true), "\n"), "aws:iam/rolePolicy:RolePolicy agentkeys-data-data-role-policy",
		"refresh reports the deleted inline policy: %v", outs[0].Result.Counts)
	outs = e.mustDeploy("up", "--stack", "test-2")
	assert.Equal(t, []string{"create aws:iam/rolePolicy:RolePolicy agentkeys-data-data-role-policy"}, stepsOf(outs[0].Result, true))
	_, err = e.aws.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String("agentkeys-data-role-test-2"), PolicyName: aws.String("agentkeys-data-role-test-2-inline")})
	assert.NoError(t, err, "up restored the inline policy")

	// 6. Destroy leaves nothing of test-2 and keeps the account's resources.
	e.mustDeploy("destroy", "--stack", "test-2")
	live = e.live()
	have, _ := present(e.claims("test-2"), live)
	// The EIP existed before the stack (adopted by import): §11 leaves it to
	// the operator, so it stays, tagged (components.Network retains it).
	var left, retained []string
	for _, h := range have {
		if strings.HasPrefix(h, "eip-tag:") {
			retained = append(retained, h)
		} else {
			left = append(left, h)
		}
	}
	e.figure("engine_destroy_leftovers", len(left))
	assert.Empty(t, left, "test-2 resources left after destroy")
	assert.NotEmpty(t, retained, "the adopted EIP is retained with its tag")
	assert.True(t, live["role:github-actions-agentkeys-deploy"] && live["ses-rule-set:agentkeys"], "destroying test-2 kept the account stack's resources")

	// 7. Two test slots in parallel.
	outs = e.mustDeploy("up", "--stack", "test-2,test-3", "--parallel", "2")
	require.Len(t, outs, 2)
	for i, h := range []*fixture{h2, h3} {
		spec, err := os.ReadFile(filepath.Join(h.h.Etc, "agentkeys", "hostspec.json"))
		require.NoError(t, err)
		assert.Contains(t, string(spec), `"https://broker-`+outs[i].Stack+`.example.org"`, "%s's host got its own spec", outs[i].Stack)
	}
	live = e.live()
	for _, s := range []string{"test-2", "test-3"} {
		_, lack := present(e.claims(s), live)
		assert.Empty(t, lack, "%s complete after the parallel up", s)
	}
	e.mustDeploy("destroy", "--stack", "test-3")
	live = e.live()
	_, lack = present(e.claims("test-2"), live)
	assert.Empty(t, lack, "destroying test-3 touched test-2")
	have, _ = present(e.claims("test-3"), live)
	assert.Empty(t, have, "test-3 left resources")

	// 8. An unreachable host fails the bring-up, boundedly, with the cause.
	start = time.Now()
	code, outs, _ := e.deploy("up", "--stack", "test-4")
	took := time.Since(start)
	require.Equal(t, 1, code)
	assert.Equal(t, "failed", outs[0].Status)
	assert.Contains(t, outs[0].Reason, "connection refused", "the dial error is the cause")
	assert.Contains(t, outs[0].Reason, "failed attempts")
	assert.Less(t, took, 90*time.Second, "the bring-up of an unreachable host gives up within its documented budget (about 21 s of retries, %d dials)", components.SSHDialRetries+1)
	t.Logf("unreachable host: up failed after %s", took.Round(time.Second))
	e.mustDeploy("destroy", "--stack", "test-4")

	// A wrong host (test-2's, under test-5's EIP) refuses before it changes anything.
	code, outs, _ = e.deploy("up", "--stack", "test-5")
	require.Equal(t, 1, code)
	assert.Equal(t, "failed", outs[0].Status)
	assert.Contains(t, outs[0].Reason, "test-2", "the refusal names the stack the host belongs to")
	assert.NotContains(t, outs[0].Reason, "connection refused")
	t.Logf("wrong host: %s", tail(outs[0].Reason, 600))
	spec, err = os.ReadFile(filepath.Join(h2.h.Etc, "agentkeys", "hostspec.json"))
	require.NoError(t, err)
	assert.Contains(t, string(spec), `"https://broker-test-2.example.org"`, "the wrong host still holds test-2's spec")
	e.mustDeploy("destroy", "--stack", "test-5")

	// 9. The account stack: refused while a broker stack exists, and refused
	// for its protected resources with nothing deleted.
	code, outs, _ = e.deploy("destroy", "--stack", "account", "--allow-replace")
	assert.Equal(t, 3, code)
	assert.Contains(t, outs[0].Reason, "test-2")
	e.mustDeploy("destroy", "--stack", "test-2")
	code, outs, _ = e.deploy("destroy", "--stack", "account", "--allow-replace")
	assert.Equal(t, 3, code)
	assert.Contains(t, outs[0].Reason, "protected")
	assert.Contains(t, outs[0].Reason, "nothing was deleted")
	live = e.live()
	assert.True(t, live["role:github-actions-agentkeys-deploy"] && live["ses-rule-set:agentkeys"], "a refused destroy deleted nothing")

	// 10. prod: its protected buckets and EIP make destroy refuse up front.
	e.mustDeploy("up", "--stack", "prod", "--yes")
	for _, args := range [][]string{{"--stack", "prod"}, {"--stack", "prod", "--allow-replace"}} {
		code, outs, _ = e.deploy("destroy", args...)
		assert.Equal(t, 3, code, "destroy %v", args)
		assert.Equal(t, "refused", outs[0].Status)
	}
	assert.Contains(t, outs[0].Reason, "agentkeys-vault-bucket")
	_, lack = present(e.claims("prod"), e.live())
	assert.Empty(t, lack, "a refused destroy of prod deleted nothing")
	assert.Equal(t, prodKMSProvider, stackSecretsProvider(t, e.backend, "prod"))

	// No command rewrote a stack file (provider line, comments, key order).
	assert.Equal(t, committed, e.projectFiles())
	e.figure("engine_resources", resources)
}

func itoa(n int) string { return strconv.Itoa(n) }

func secs(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }

// extras lists what moto holds beyond the claims (zone apex records
// aside), DKIM records as "CNAME dkim".
func extras(live map[string]bool, claims ...[]isolation.Claim) []string {
	want := map[string]bool{"bucket:agentkeys-pulumi-state-" + mototest.Account: true}
	for _, cs := range claims {
		for _, c := range cs {
			want[c.Kind+":"+c.Name] = true
		}
	}
	var out []string
	for k := range live {
		switch {
		case want[k], strings.HasPrefix(k, "dns-record:NS "), strings.HasPrefix(k, "dns-record:SOA "):
		case strings.HasPrefix(k, "dns-record:CNAME ") && strings.Contains(k, "._domainkey."):
			out = append(out, "CNAME dkim")
		default:
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// pulumi runs the Pulumi CLI in the project directory, as an operator
// would (the backend, home and AWS environment of the run).
func (e *engineRun) pulumi(args ...string) string {
	e.t.Helper()
	cmd := exec.Command(e.tools.CLI, append(args, "--non-interactive")...)
	cmd.Dir = e.project
	cmd.Env = append(os.Environ(), "PULUMI_BACKEND_URL=file://"+e.backend, "PULUMI_HOME="+e.tools.PulumiHome, "PULUMI_SKIP_UPDATE_CHECK=true")
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("pulumi %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// stackDataKey is the encrypted data key a stack's state records.
func stackDataKey(t *testing.T, backend, stack string) string {
	t.Helper()
	var ck struct {
		Checkpoint struct {
			Latest struct {
				SecretsProviders struct {
					State struct {
						EncryptedKey string `json:"encryptedkey"`
					} `json:"state"`
				} `json:"secrets_providers"`
			} `json:"latest"`
		} `json:"checkpoint"`
	}
	require.NoError(t, json.Unmarshal([]byte(checkpoint(t, backend, stack)), &ck))
	k := ck.Checkpoint.Latest.SecretsProviders.State.EncryptedKey
	require.NotEmpty(t, k, "%s's state records no data key", stack)
	return k
}

// operator runs an operator command (agentkeys CMD ARGS) that must succeed.
func (e *engineRun) operator(args ...string) {
	e.t.Helper()
	cmd := exec.Command(e.agentkeys, append(args, "--project-dir", e.project)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("agentkeys %v: %v\n%s", args, err, out)
	}
}

// checkpoint is a stack's state file in the file backend.
func checkpoint(t *testing.T, backend, stack string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(backend, ".pulumi", "stacks", "*", stack+".json"))
	require.Len(t, m, 1, "state file of %s", stack)
	b, err := os.ReadFile(m[0])
	require.NoError(t, err)
	return string(b)
}

// stackSecretsProvider is the secrets provider a stack's state records.
func stackSecretsProvider(t *testing.T, backend, stack string) string {
	t.Helper()
	var ck struct {
		Checkpoint struct {
			Latest *struct {
				SecretsProviders *struct {
					Type  string `json:"type"`
					State struct {
						URL string `json:"url"`
					} `json:"state"`
				} `json:"secrets_providers"`
			} `json:"latest"`
		} `json:"checkpoint"`
	}
	require.NoError(t, json.Unmarshal([]byte(checkpoint(t, backend, stack)), &ck))
	if ck.Checkpoint.Latest == nil || ck.Checkpoint.Latest.SecretsProviders == nil {
		return ""
	}
	return ck.Checkpoint.Latest.SecretsProviders.State.URL
}
