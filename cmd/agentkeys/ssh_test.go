package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/agentkeys/agentkeys-infra/internal/testkit/mototest"
	"github.com/agentkeys/agentkeys-infra/ops/sshx"
	"github.com/agentkeys/agentkeys-infra/ops/stackcfg"
	"github.com/agentkeys/agentkeys-infra/ops/testkit/sshdtest"
)

// call is one AWS request seen on the wire: its action and the access key
// that signed it.
type call struct {
	Action, AccessKey                        string
	InstanceId, InstanceOSUser, SSHPublicKey string
}

// eicProxy forwards every AWS call to moto (which accepts SendSSHPublicKey but
// delivers nothing), records who made which call, and, like the real
// service, makes a pushed key usable: it appends it to the test sshd's
// authorized_keys.
func eicProxy(t *testing.T, motoURL string, sshd *sshdtest.Server) (string, func() []call) {
	u, _ := url.Parse(motoURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var calls []call
	akid := regexp.MustCompile(`Credential=([A-Z0-9a-z]+)/`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var c call
		if tgt := r.Header.Get("X-Amz-Target"); tgt != "" {
			c.Action = tgt[strings.LastIndex(tgt, ".")+1:]
			_ = json.Unmarshal(body, &c)
		} else if q, err := url.ParseQuery(string(body)); err == nil {
			c.Action = q.Get("Action")
		}
		if m := akid.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
			c.AccessKey = m[1]
		}
		mu.Lock()
		calls = append(calls, c)
		mu.Unlock()
		if c.Action == "SendSSHPublicKey" {
			sshd.Authorize(t, c.SSHPublicKey)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []call { mu.Lock(); defer mu.Unlock(); return append([]call(nil), calls...) }
}

func pushes(cs []call) []call {
	var out []call
	for _, c := range cs {
		if c.Action == "SendSSHPublicKey" {
			out = append(out, c)
		}
	}
	return out
}

// ssh works with nothing but the stack's SSH-user profile: no default
// credentials in the environment, every AWS call signed with that profile's
// key, and no call beyond DescribeInstances (only without an address in
// the outputs or config) and SendSSHPublicKey: what ssh-broker.sh's
// `aws ec2-instance-connect ssh` needs.
func TestSSHThroughInstanceConnectAndFallback(t *testing.T) {
	sshBin := mototest.Require(t, "ssh", "apt-get install -y openssh-client")
	sshd := sshdtest.Start(t)
	motoURL := mototest.Start(t)
	ctx := context.Background()

	// The broker: an instance with the stack's tagged EIP attached.
	ec := ec2.NewFromConfig(mototest.Config(t))
	run, err := ec.RunInstances(ctx, &ec2.RunInstancesInput{ImageId: aws.String("ami-12c6146b"), MinCount: aws.Int32(1), MaxCount: aws.Int32(1)})
	if err != nil {
		t.Fatal(err)
	}
	id := aws.ToString(run.Instances[0].InstanceId)
	dir := projectWith(t, "test-2", id)
	n := names(t, dir, "test-2")
	alloc, err := ec.AllocateAddress(ctx, &ec2.AllocateAddressInput{TagSpecifications: []ec2types.TagSpecification{{
		ResourceType: ec2types.ResourceTypeElasticIp, Tags: []ec2types.Tag{{Key: aws.String("Name"), Value: aws.String(n.EIPTag)}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: alloc.AllocationId, InstanceId: aws.String(id)}); err != nil {
		t.Fatal(err)
	}
	desc, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	public := aws.ToString(desc.Reservations[0].Instances[0].PublicIpAddress)

	proxy, calls := eicProxy(t, motoURL, sshd)
	t.Setenv("AWS_ENDPOINT_URL", proxy)
	// Only the stack's SSH-user profile: no default credentials anywhere.
	t.Setenv("AWS_ACCESS_KEY_ID", "")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "")
	creds := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(creds, []byte("[agentkeys-broker-test-2]\naws_access_key_id = AKIASSHUSERTEST2\naws_secret_access_key = x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", creds)

	// ssh dials 127.0.0.1 whatever address agentkeys names (HostName), and
	// checks the test sshd's host key under one alias.
	kh, err := os.ReadFile(sshd.KnownHosts)
	if err != nil {
		t.Fatal(err)
	}
	alias := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(alias, []byte("agentkeys-broker "+strings.SplitN(string(kh), " ", 2)[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	me, _ := user.Current()
	base := []string{"ssh", "test-2", "--project-dir", dir, "--port", strconv.Itoa(sshd.Port), "--user", me.Username,
		"-o", "HostName=127.0.0.1", "-o", "HostKeyAlias=agentkeys-broker", "-o", "UserKnownHostsFile=" + alias,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"}
	// No pulumi CLI: no stack outputs; no agentkeys:eipAddress either.
	d := deps{sshBin: sshBin, pulumi: &stackcfg.Pulumi{Bin: "/nonexistent/pulumi", Dir: dir}}

	code, out, errs := runCLI(t, d, append(base, "--", "echo", "ok-from-broker")...)
	if code != 0 || strings.TrimSpace(out) != "ok-from-broker" {
		t.Fatalf("instance connect: exit %d, out %q, err %q", code, out, errs)
	}
	if !strings.Contains(errs, "ssh "+me.Username+"@"+public+" (DescribeInstances "+id+")") || !strings.Contains(errs, "with profile agentkeys-broker-test-2") {
		t.Fatalf("stderr %q: want the address from DescribeInstances and the profile", errs)
	}
	cs := calls()
	if len(cs) != 2 || cs[0].Action != "DescribeInstances" || cs[1].Action != "SendSSHPublicKey" {
		t.Fatalf("AWS calls %+v, want DescribeInstances then SendSSHPublicKey", cs)
	}
	for _, c := range cs {
		if c.AccessKey != "AKIASSHUSERTEST2" {
			t.Fatalf("%s signed with %q, want the SSH user's key only", c.Action, c.AccessKey)
		}
	}
	p := pushes(cs)
	if p[0].InstanceId != id || p[0].InstanceOSUser != me.Username || !strings.HasPrefix(p[0].SSHPublicKey, "ssh-ed25519 ") {
		t.Fatalf("push %+v", p[0])
	}

	// With the address in config (or the stack output), the push is the only call.
	y, _ := os.ReadFile(filepath.Join(dir, "Pulumi.test-2.yaml"))
	if err := os.WriteFile(filepath.Join(dir, "Pulumi.test-2.yaml"), append(y, []byte("  agentkeys:eipAddress: "+aws.ToString(alloc.PublicIp)+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	flagged := append([]string{"ssh", "--stack", "test-2"}, base[2:]...)
	before := len(calls())
	code, _, errs = runCLI(t, d, append(flagged, "--", "true")...)
	if code != 0 || !strings.Contains(errs, "@"+aws.ToString(alloc.PublicIp)+" (agentkeys:eipAddress)") {
		t.Fatalf("second session: %d %s", code, errs)
	}
	// One-time: the next session pushes a different key.
	if cs := calls()[before:]; len(cs) != 1 || cs[0].Action != "SendSSHPublicKey" || cs[0].SSHPublicKey == p[0].SSHPublicKey {
		t.Fatalf("calls %+v: want one push of a new key", cs)
	}
	// The remote command's exit status comes back.
	if code, _, _ := runCLI(t, d, append(base, "--", "exit", "7")...); code != 7 {
		t.Fatalf("remote exit status: %d, want 7", code)
	}

	// Fallback: the operator's key, no AWS call at all.
	keyDir := t.TempDir()
	pem, pub, err := sshx.OneTimeKey(keyDir)
	if err != nil {
		t.Fatal(err)
	}
	sshd.Authorize(t, pub)
	before = len(calls())
	code, out, errs = runCLI(t, d, append(base, "--fallback", "--key", pem, "--", "echo", "fallback-ok")...)
	if code != 0 || strings.TrimSpace(out) != "fallback-ok" || len(calls()) != before {
		t.Fatalf("fallback: exit %d out %q err %q calls %d->%d", code, out, errs, before, len(calls()))
	}
	if code, _, errs := runCLI(t, d, "ssh", "test-2", "--project-dir", dir, "--fallback"); code != exitUsage || !strings.Contains(errs, "--key") {
		t.Fatalf("fallback without key: %d %s", code, errs)
	}

	// Without the profile the push fails with a pointer, before ssh runs.
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	if code, _, errs := runCLI(t, d, append(base, "--", "true")...); code != exitFail || !strings.Contains(errs, "agentkeys-broker-test-2") {
		t.Fatalf("missing profile: %d %s", code, errs)
	}
}
