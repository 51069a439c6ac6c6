// Package offline plans a stack from its stack file without a cloud: the real
// program under the mock engine, with lookups answered as in an empty account
// (except that an EIP the stack file configures is assumed to exist).
package offline

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/components"
	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Answers are the offline answers to every invoke the program makes: the
// account has no EIP yet, so the plan shows the allocate rung of the ladder,
// and no OIDC provider for the stack's issuer.
func Answers() map[string]plan.Answer {
	return AnswersFor("")
}

// AnswersFor is Answers for a stack that configures an EIP (an address or an
// allocation id; "" for none): offline, that EIP is assumed to exist in the
// account, unassociated and untagged, so the lookup of the configured value
// answers one matching EIP and the plan shows the adopt-configured rung.
func AnswersFor(configured string) map[string]plan.Answer {
	return answers(configured, false)
}

// answers is AnswersFor; providerExists answers the OIDC provider lookup with
// the provider asked for, as the account holds it after the first bring-up
// (with thumbs as its thumbprints).
func answers(configured string, providerExists bool, thumbs ...string) map[string]plan.Answer {
	return map[string]plan.Answer{
		"aws:ec2/getEips:getEips": func(args resource.PropertyMap) (resource.PropertyMap, error) {
			var allocs, ips []any
			if configured != "" && looksUpConfigured(args, configured) {
				ref := AssumedEIP(configured)
				allocs, ips = []any{ref.AllocationID}, []any{ref.PublicIP}
			}
			return resource.NewPropertyMapFromMap(map[string]any{
				"allocationIds": allocs, "publicIps": ips, "id": "us-east-1",
			}), nil
		},
		providerLookup: func(args resource.PropertyMap) (resource.PropertyMap, error) {
			arn := ""
			if v, ok := args["arn"]; ok && v.IsString() {
				arn = v.StringValue()
			}
			if !providerExists {
				// What the AWS provider reports for an absent provider.
				return nil, fmt.Errorf("reading IAM OIDC Provider (%s): NoSuchEntity: not found", arn)
			}
			_, host, _ := strings.Cut(arn, ":oidc-provider/")
			tl := []any{}
			for _, t := range thumbs {
				tl = append(tl, t)
			}
			return resource.NewPropertyMapFromMap(map[string]any{
				"arn": arn, "id": arn, "url": host, "clientIdLists": []any{naming.OIDCAudience}, "thumbprintLists": tl,
			}), nil
		},
	}
}

const providerLookup = "aws:iam/getOpenIdConnectProvider:getOpenIdConnectProvider"

// looksUpConfigured reports whether a getEips call filters by the configured
// public-ip or allocation-id (the instance and tag lookups stay empty).
func looksUpConfigured(args resource.PropertyMap, configured string) bool {
	want := "public-ip"
	if strings.HasPrefix(configured, "eipalloc-") {
		want = "allocation-id"
	}
	f, ok := args["filters"]
	if !ok || !f.IsArray() {
		return false
	}
	for _, e := range f.ArrayValue() {
		if !e.IsObject() {
			continue
		}
		o := e.ObjectValue()
		if n, ok := o["name"]; !ok || !n.IsString() || n.StringValue() != want {
			continue
		}
		if vs, ok := o["values"]; ok && vs.IsArray() {
			for _, v := range vs.ArrayValue() {
				if v.IsString() && v.StringValue() == configured {
					return true
				}
			}
		}
	}
	return false
}

// AssumedEIP is the EIP the offline plan assumes for a configured address or
// allocation id: the configured half verbatim, the other half a stable
// stand-in (an allocation id spelling the address in hex; an address in
// TEST-NET-3 for an allocation id), so that the two agree on every run.
func AssumedEIP(configured string) components.EIPRef {
	if strings.HasPrefix(configured, "eipalloc-") {
		h := fnv.New32a()
		h.Write([]byte(configured))
		return components.EIPRef{AllocationID: configured, PublicIP: fmt.Sprintf("203.0.113.%d", 1+h.Sum32()%254)}
	}
	var n uint32
	if ip := net.ParseIP(configured).To4(); ip != nil {
		n = binary.BigEndian.Uint32(ip)
	}
	return components.EIPRef{AllocationID: fmt.Sprintf("eipalloc-%017x", n), PublicIP: configured}
}

// Stack plans the stack whose file Pulumi.<stack>.yaml is in dir.
func Stack(dir, stack string) (*plan.Plan, error) {
	if stack == program.AccountStackName {
		return account(dir)
	}
	if _, err := naming.ParseStack(stack); err != nil {
		return nil, err
	}
	raw, err := config.ReadStackFile(dir, stack)
	if err != nil {
		return nil, err
	}
	return Raw(stack, raw)
}

// Raw plans stack from already-read config, in an account that has none of
// the stack's resources yet (what the first `pulumi up` does).
func Raw(stack string, raw *config.Raw) (*plan.Plan, error) {
	return run(stack, raw, modeFirstUp)
}

// mode is the account a run plans against.
type mode int

const (
	modeFirstUp   mode = iota // empty account, a preview: cloud values unknown
	modeSteady                // the provider in the account, still a preview (isolation check)
	modeConverged             // after the first bring-up, every cloud value a stand-in
)

// run is Raw in mode m.
func run(stack string, raw *config.Raw, m mode) (*plan.Plan, error) {
	steady := m != modeFirstUp // the provider is in the account
	// Validate first so that bad config never reaches the engine's error wrapping.
	cfg, err := raw.Validate(stack)
	if err != nil {
		return nil, err
	}
	vals, secrets := raw.Values, raw.SecretKeys
	var notes []string
	configured := cfg.EIPAllocationID
	if configured == "" {
		configured = cfg.EIPAddress
	}
	if configured != "" {
		a := AssumedEIP(configured)
		key := "eipAddress"
		if cfg.EIPAllocationID != "" {
			key = "eipAllocationId"
		}
		notes = append(notes, fmt.Sprintf("offline: the configured EIP %s (%s:%s) is assumed to be an Elastic IP of account %s in %s, not associated with any instance and not tagged Name=%s (planned as %s, %s): the plan adopts it (rung C, configured); `pulumi up` fails if the account has no such EIP",
			configured, config.Namespace, key, cfg.Fork.AccountID, cfg.Names().Region, cfg.Names().EIPTag, a.AllocationID, a.PublicIP))
	}
	if _, ok := vals[sshKey]; !ok {
		// Plan the whole graph: pulumi up leaves the bring-up pending until the key is set.
		vals = copyMap(vals)
		vals[sshKey] = config.Encrypted
		secrets = append(append([]string{}, secrets...), sshKey)
		notes = append(notes, fmt.Sprintf("%s is not set in Pulumi.%s.yaml: planned as if set; `pulumi up` leaves the host bring-up pending until `pulumi config set --secret %s --stack %s < broker.pem`", sshKey, stack, sshKey, stack))
	}
	if m == modeSteady {
		notes = append(notes, fmt.Sprintf("offline: planned as after the first bring-up: the account is assumed to hold this stack's OIDC provider %s, so the plan declares it (a first `pulumi up` declares it once the broker serves TLS)", cfg.Names().OIDCProviderARN))
	}
	opts := plan.Options{
		Config: vals, SecretKeys: secrets, Answers: answers(configured, steady), Preview: true,
		State: func(typ, name string, _ resource.PropertyMap) resource.PropertyMap {
			if typ == "command:remote:Command" && strings.HasSuffix(name, "-apply") {
				return resource.PropertyMap{"stdout": resource.NewStringProperty(""), "stderr": resource.NewStringProperty("")}
			}
			return nil
		},
	}
	if m == modeConverged {
		notes = convergedNotes(notes, cfg.Names())
		opts, err = convergedOptions(opts, cfg.Names(), configured)
		if err != nil {
			return nil, err
		}
	} else {
		notes = append(notes, "offline: the host bring-up has not reported yet (its output is planned empty), so federation shows as pending and each role with the trust it starts with")
	}
	p, err := plan.Run(stack, program.Declare, opts)
	if err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, notes...)
	if m == modeConverged {
		p.View = plan.ViewConverged
	}
	return p, nil
}

const sshKey = "agentkeys:sshPrivateKey"

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

var testSlot = regexp.MustCompile(`^test-(\d+)$`)

// Slot plans stack name for the isolation check, from its own stack file or,
// for a test slot (test-N) without one, from template (the test-2 file) with
// a distinct synthetic instance id and without test-2's per-stack overrides
// (PerStackKeys). It plans the steady state, after the first bring-up, so
// that every name the stack comes to own (its OIDC provider too) is declared.
func Slot(dir, name string, template *config.Raw) (*plan.Plan, error) {
	if _, err := naming.ParseStack(name); err != nil {
		return nil, err
	}
	m := testSlot.FindStringSubmatch(name)
	if _, err := os.Stat(filepath.Join(dir, "Pulumi."+name+".yaml")); err == nil || m == nil {
		// A slot's own file is read even when it is bad: never swap it for the template.
		raw, err := config.ReadStackFile(dir, name)
		if err != nil {
			return nil, err
		}
		return run(name, raw, modeSteady)
	}
	n, _ := strconv.Atoi(m[1])
	vals := map[string]string{}
	for k, v := range template.Values {
		vals[k] = v
	}
	vals["agentkeys:instanceId"] = fmt.Sprintf("i-%017x", 0xf00000+n)
	for _, k := range PerStackKeys {
		delete(vals, k)
	}
	return run(name, &config.Raw{Values: vals, SecretKeys: template.SecretKeys}, modeSteady)
}

// PerStackKeys are the keys a slot derived from the test-2 file does not
// inherit: they name test-2's own issuer, mail domain, EIP or host, and
// copied into another slot they would claim test-2's names (or pin test-2's
// host key). Without them the slot derives its own from its stack name.
var PerStackKeys = []string{
	config.Namespace + ":brokerHost",
	config.Namespace + ":mailDomain",
	config.Namespace + ":eipAllocationId",
	config.Namespace + ":eipAddress",
	config.Namespace + ":sshHostKey",
}

// account plans the account stack: the credentials are assumed to belong to
// the configured account and the KMS alias to exist (bootstrap-state.sh).
func account(dir string) (*plan.Plan, error) {
	raw, err := config.ReadStackFile(dir, program.AccountStackName)
	if err != nil {
		return nil, err
	}
	acct := raw.Values["agentkeys:accountId"]
	region := raw.Values["aws:region"]
	answers := Answers()
	answers["aws:index/getCallerIdentity:getCallerIdentity"] = func(resource.PropertyMap) (resource.PropertyMap, error) {
		return resource.NewPropertyMapFromMap(map[string]any{"accountId": acct, "arn": "arn:aws:iam::" + acct + ":user/agentkeys-admin", "id": acct, "userId": "offline"}), nil
	}
	answers["aws:kms/getAlias:getAlias"] = func(args resource.PropertyMap) (resource.PropertyMap, error) {
		name := args["name"].StringValue()
		return resource.NewPropertyMapFromMap(map[string]any{"name": name, "id": name,
			"targetKeyArn": "arn:aws:kms:" + region + ":" + acct + ":key/offline-plan-" + strings.TrimPrefix(name, "alias/"), // one key per alias
			"arn":          "arn:aws:kms:" + region + ":" + acct + ":" + name}), nil
	}
	p, err := plan.Run(program.AccountStackName, program.Declare, plan.Options{
		Config: raw.Values, SecretKeys: raw.SecretKeys, Answers: answers, Preview: true,
	})
	if err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, "offline: the AWS credentials are assumed to belong to account "+acct+" and the KMS aliases to exist (scripts/bootstrap-state.sh)")
	return p, nil
}
