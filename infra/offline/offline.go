// Package offline plans a stack from its stack file without a cloud: the real
// program under the mock engine, with lookups answered as in an empty account.
package offline

import (
	"fmt"
	"regexp"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/agentkeys/agentkeys-infra/infra/config"
	"github.com/agentkeys/agentkeys-infra/infra/plan"
	"github.com/agentkeys/agentkeys-infra/infra/program"
	"github.com/agentkeys/agentkeys-infra/naming"
)

// Answers are the offline answers to every invoke the program makes: the
// account has no EIP yet, so the plan shows the allocate rung of the ladder.
func Answers() map[string]plan.Answer {
	return map[string]plan.Answer{
		"aws:ec2/getEips:getEips": func(resource.PropertyMap) (resource.PropertyMap, error) {
			return resource.NewPropertyMapFromMap(map[string]any{
				"allocationIds": []any{}, "publicIps": []any{}, "id": "us-east-1",
			}), nil
		},
	}
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

// Raw plans stack from already-read config.
func Raw(stack string, raw *config.Raw) (*plan.Plan, error) {
	// Validate first so that bad config never reaches the engine's error wrapping.
	if _, err := config.Parse(stack, raw.Values); err != nil {
		return nil, err
	}
	vals, secrets := raw.Values, raw.SecretKeys
	var notes []string
	if _, ok := vals[sshKey]; !ok {
		// Plan the whole graph: pulumi up leaves the bring-up pending until the key is set.
		vals = copyMap(vals)
		vals[sshKey] = config.Encrypted
		secrets = append(append([]string{}, secrets...), sshKey)
		notes = append(notes, fmt.Sprintf("%s is not set in Pulumi.%s.yaml: planned as if set; `pulumi up` leaves the host bring-up pending until `pulumi config set --secret %s --stack %s < broker.pem`", sshKey, stack, sshKey, stack))
	}
	p, err := plan.Run(stack, program.Declare, plan.Options{
		Config: vals, SecretKeys: secrets, Answers: Answers(), Preview: true,
	})
	if err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, notes...)
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

// Slot plans test slot name (test-N) from its own stack file, or, when it has
// none, from template (the test-2 file) with a distinct synthetic instance id.
func Slot(dir, name string, template *config.Raw) (*plan.Plan, error) {
	if raw, err := config.ReadStackFile(dir, name); err == nil {
		return Raw(name, raw)
	}
	m := testSlot.FindStringSubmatch(name)
	if m == nil {
		return Stack(dir, name)
	}
	n, _ := strconv.Atoi(m[1])
	vals := map[string]string{}
	for k, v := range template.Values {
		vals[k] = v
	}
	vals["agentkeys:instanceId"] = fmt.Sprintf("i-%017x", 0xf00000+n)
	delete(vals, "agentkeys:eipAllocationId")
	delete(vals, "agentkeys:eipAddress")
	return Raw(name, &config.Raw{Values: vals, SecretKeys: template.SecretKeys})
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
			"targetKeyArn": "arn:aws:kms:" + region + ":" + acct + ":key/offline-plan",
			"arn":          "arn:aws:kms:" + region + ":" + acct + ":" + name}), nil
	}
	p, err := plan.Run(program.AccountStackName, program.Declare, plan.Options{
		Config: raw.Values, SecretKeys: raw.SecretKeys, Answers: answers, Preview: true,
	})
	if err != nil {
		return nil, err
	}
	p.Notes = append(p.Notes, "offline: the AWS credentials are assumed to belong to account "+acct+" and the KMS alias to exist (scripts/bootstrap-state.sh)")
	return p, nil
}
