package aws

import (
	"context"
	"fmt"
	"sort"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	sestypes "github.com/aws/aws-sdk-go-v2/service/ses/types"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	sesv2types "github.com/aws/aws-sdk-go-v2/service/sesv2/types"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

func sesTypes(p *awsProvider) []*standin.Type {
	return []*standin.Type{ruleSetType(p), activeRuleSetType(p), receiptRuleType(p), emailIdentityType(p)}
}

// sesName checks an SES rule or rule set name (validRuleSetName /
// validRuleName in internal/service/ses: 1-64 characters of [0-9A-Za-z_.-],
// beginning and ending with a letter or digit).
func sesName(in props, prop string) []plugin.CheckFailure {
	out := nameCheck(in, prop, sesNameRe, 1, 64, "must contain only letters, digits, underscores, periods and hyphens")
	if v := str(in, prop); has(in, prop) && v != "" && (!isAlnum(v[0]) || !isAlnum(v[len(v)-1])) {
		out = append(out, standin.Fail(prop, "%s must begin and end with a letter or number, got %s", prop, v))
	}
	return out
}

func isAlnum(b byte) bool {
	return b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}

// ruleSetType is aws:ses/receiptRuleSet:ReceiptRuleSet
// (internal/service/ses/receipt_rule_set.go): the name replaces.
func ruleSetType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		_, err := c.ses.DescribeReceiptRuleSet(ctx, &ses.DescribeReceiptRuleSetInput{RuleSetName: aws.String(id)})
		if notFound(err, "RuleSetDoesNotExist") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return mk(map[string]any{"ruleSetName": id, "arn": c.arn("ses", c.region, "receipt-rule-set/"+id)}), nil
	}
	return &standin.Type{
		Token:    "aws:ses/receiptRuleSet:ReceiptRuleSet",
		Inputs:   []string{"ruleSetName"},
		Required: []string{"ruleSetName"},
		ForceNew: []string{"ruleSetName"},
		Validate: func(in props) []plugin.CheckFailure { return sesName(in, "ruleSetName") },
		Computed: []string{"arn"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			name := str(in, "ruleSetName")
			if _, err := p.get().ses.CreateReceiptRuleSet(ctx, &ses.CreateReceiptRuleSetInput{RuleSetName: aws.String(name)}); err != nil {
				return "", nil, err
			}
			live, err := read(ctx, name, nil)
			return name, live, err
		},
		Read: read,
		Delete: func(ctx context.Context, id string, _ props) error {
			_, err := p.get().ses.DeleteReceiptRuleSet(ctx, &ses.DeleteReceiptRuleSetInput{RuleSetName: aws.String(id)})
			return err
		},
	}
}

// activeRuleSetType is aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet
// (internal/service/ses/active_receipt_rule_set.go): a new name activates
// that set; delete deactivates (no set active: all inbound mail stops).
func activeRuleSetType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.ses.DescribeActiveReceiptRuleSet(ctx, &ses.DescribeActiveReceiptRuleSetInput{})
		if err != nil {
			return nil, err
		}
		if out.Metadata == nil || aws.ToString(out.Metadata.Name) != id {
			return nil, nil
		}
		return mk(map[string]any{"ruleSetName": id, "arn": c.arn("ses", c.region, "receipt-rule-set/"+id)}), nil
	}
	activate := func(ctx context.Context, name string) (string, props, error) {
		if _, err := p.get().ses.SetActiveReceiptRuleSet(ctx, &ses.SetActiveReceiptRuleSetInput{RuleSetName: aws.String(name)}); err != nil {
			return "", nil, err
		}
		live, err := read(ctx, name, nil)
		return name, live, err
	}
	return &standin.Type{
		Token:    "aws:ses/activeReceiptRuleSet:ActiveReceiptRuleSet",
		Inputs:   []string{"ruleSetName"},
		Required: []string{"ruleSetName"},
		Validate: func(in props) []plugin.CheckFailure { return sesName(in, "ruleSetName") },
		Computed: []string{"arn"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			return activate(ctx, str(in, "ruleSetName"))
		},
		Read: read,
		Update: func(ctx context.Context, _ string, _, news props, _ []string) (props, error) {
			_, live, err := activate(ctx, str(news, "ruleSetName"))
			return live, err
		},
		Delete: func(ctx context.Context, _ string, _ props) error {
			_, err := p.get().ses.SetActiveReceiptRuleSet(ctx, &ses.SetActiveReceiptRuleSetInput{})
			return err
		},
	}
}

// receiptRuleType is aws:ses/receiptRule:ReceiptRule
// (internal/service/ses/receipt_rule.go): name and ruleSetName replace,
// everything else is an UpdateReceiptRule; a rule without `after` goes to
// the front of the set. Only S3 actions are implemented.
func receiptRuleType(p *awsProvider) *standin.Type {
	rule := func(in props) *sestypes.ReceiptRule {
		r := &sestypes.ReceiptRule{Name: aws.String(str(in, "name")), Enabled: standin.Bool(in, "enabled"),
			ScanEnabled: standin.Bool(in, "scanEnabled"), Recipients: strs(in, "recipients")}
		if has(in, "tlsPolicy") {
			r.TlsPolicy = sestypes.TlsPolicy(str(in, "tlsPolicy"))
		}
		s3a := standin.Objs(in, "s3Actions")
		sort.Slice(s3a, func(i, j int) bool { return standin.Int(s3a[i], "position") < standin.Int(s3a[j], "position") })
		for _, a := range s3a {
			act := &sestypes.S3Action{BucketName: aws.String(str(a, "bucketName"))}
			if has(a, "objectKeyPrefix") {
				act.ObjectKeyPrefix = aws.String(str(a, "objectKeyPrefix"))
			}
			if has(a, "kmsKeyArn") {
				act.KmsKeyArn = aws.String(str(a, "kmsKeyArn"))
			}
			if has(a, "topicArn") {
				act.TopicArn = aws.String(str(a, "topicArn"))
			}
			if has(a, "iamRoleArn") {
				act.IamRoleArn = aws.String(str(a, "iamRoleArn"))
			}
			r.Actions = append(r.Actions, sestypes.ReceiptAction{S3Action: act})
		}
		return r
	}
	read := func(ctx context.Context, id string, state props) (props, error) {
		c := p.get()
		set := str(state, "ruleSetName")
		out, err := c.ses.DescribeReceiptRule(ctx, &ses.DescribeReceiptRuleInput{RuleSetName: aws.String(set), RuleName: aws.String(id)})
		if notFound(err, "RuleDoesNotExist", "RuleSetDoesNotExist") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		r := out.Rule
		m := mk(map[string]any{"name": id, "ruleSetName": set, "enabled": r.Enabled, "scanEnabled": r.ScanEnabled,
			"tlsPolicy": string(r.TlsPolicy), "recipients": nonNil(r.Recipients), "arn": c.arn("ses", c.region, "receipt-rule-set/"+set+":receipt-rule/"+id)})
		var s3a []props
		for i, a := range r.Actions {
			if a.S3Action == nil {
				continue
			}
			act := mk(map[string]any{"bucketName": a.S3Action.BucketName, "position": i + 1})
			for k, v := range map[string]*string{"objectKeyPrefix": a.S3Action.ObjectKeyPrefix, "kmsKeyArn": a.S3Action.KmsKeyArn,
				"topicArn": a.S3Action.TopicArn, "iamRoleArn": a.S3Action.IamRoleArn} {
				if v != nil {
					act[resource.PropertyKey(k)] = resource.NewStringProperty(*v)
				}
			}
			s3a = append(s3a, act)
		}
		m["s3Actions"] = standin.V(s3a)
		return m, nil
	}
	return &standin.Type{
		Token: "aws:ses/receiptRule:ReceiptRule",
		Inputs: []string{"addHeaderActions", "after", "bounceActions", "enabled", "lambdaActions", "name", "recipients",
			"ruleSetName", "s3Actions", "scanEnabled", "snsActions", "stopActions", "tlsPolicy", "workmailActions"},
		Required:         []string{"ruleSetName"},
		ForceNew:         []string{"name", "ruleSetName"},
		OptionalComputed: []string{"tlsPolicy"},
		Sets:             []string{"recipients", "s3Actions"},
		Defaults:         map[string]resource.PropertyValue{"enabled": resource.NewBoolProperty(false), "scanEnabled": resource.NewBoolProperty(false)},
		AutoName:         "name", AutoNameMax: 64,
		Validate: func(in props) []plugin.CheckFailure {
			out := fails(sesName(in, "name"), oneOf(in, "tlsPolicy", "Require", "Optional"))
			for _, k := range []string{"addHeaderActions", "bounceActions", "lambdaActions", "snsActions", "stopActions", "workmailActions"} {
				if has(in, k) {
					out = append(out, standin.Fail(k, "stand-in: %s are not supported", k))
				}
			}
			return out
		},
		Computed: []string{"arn"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			input := &ses.CreateReceiptRuleInput{RuleSetName: aws.String(str(in, "ruleSetName")), Rule: rule(in)}
			if has(in, "after") {
				input.After = aws.String(str(in, "after"))
			}
			if _, err := c.ses.CreateReceiptRule(ctx, input); err != nil {
				return "", nil, err
			}
			name := str(in, "name")
			live, err := read(ctx, name, in)
			return name, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, changed []string) (props, error) {
			c := p.get()
			if _, err := c.ses.UpdateReceiptRule(ctx, &ses.UpdateReceiptRuleInput{RuleSetName: aws.String(str(news, "ruleSetName")), Rule: rule(news)}); err != nil {
				return nil, err
			}
			if contains(changed, "after") {
				input := &ses.SetReceiptRulePositionInput{RuleSetName: aws.String(str(news, "ruleSetName")), RuleName: aws.String(id)}
				if has(news, "after") {
					input.After = aws.String(str(news, "after"))
				}
				if _, err := c.ses.SetReceiptRulePosition(ctx, input); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, news)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			_, err := p.get().ses.DeleteReceiptRule(ctx, &ses.DeleteReceiptRuleInput{RuleSetName: aws.String(str(state, "ruleSetName")), RuleName: aws.String(id)})
			if notFound(err, "RuleSetDoesNotExist") {
				return nil
			}
			return err
		},
	}
}

// dkimEquivalent compares the dkimSigningAttributes input (what the
// program sets) with the state (which adds the computed fields).
func dkimEquivalent(state, in resource.PropertyValue) bool {
	if !state.IsObject() || !in.IsObject() {
		return state.DeepEquals(in)
	}
	s := state.ObjectValue()
	for k, v := range in.ObjectValue() {
		if !s[k].DeepEquals(v) {
			return false
		}
	}
	return true
}

// emailIdentityType is aws:sesv2/emailIdentity:EmailIdentity
// (internal/service/sesv2/email_identity.go): the identity replaces; DKIM
// signing attributes update (PutEmailIdentityDkimSigningAttributes) and
// carry the computed tokens the DKIM CNAMEs need.
func emailIdentityType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.sesv2.GetEmailIdentity(ctx, &sesv2.GetEmailIdentityInput{EmailIdentity: aws.String(id)})
		if notFound(err, "NotFoundException") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		m := mk(map[string]any{"emailIdentity": id, "arn": c.arn("ses", c.region, "identity/"+id),
			"identityType": string(out.IdentityType), "verifiedForSendingStatus": out.VerifiedForSendingStatus})
		if d := out.DkimAttributes; d != nil {
			dk := mk(map[string]any{"currentSigningKeyLength": string(d.CurrentSigningKeyLength), "nextSigningKeyLength": string(d.NextSigningKeyLength),
				"signingAttributesOrigin": string(d.SigningAttributesOrigin), "status": string(d.Status), "tokens": nonNil(d.Tokens)})
			if d.LastKeyGenerationTimestamp != nil {
				dk["lastKeyGenerationTimestamp"] = resource.NewStringProperty(d.LastKeyGenerationTimestamp.UTC().Format("2006-01-02T15:04:05Z"))
			}
			m["dkimSigningAttributes"] = resource.NewObjectProperty(dk)
		}
		if out.ConfigurationSetName != nil {
			m["configurationSetName"] = resource.NewStringProperty(*out.ConfigurationSetName)
		}
		return m, nil
	}
	signing := func(in props) *sesv2types.DkimSigningAttributes {
		d := standin.Obj(in, "dkimSigningAttributes")
		if d == nil {
			return nil
		}
		a := &sesv2types.DkimSigningAttributes{}
		if has(d, "nextSigningKeyLength") {
			a.NextSigningKeyLength = sesv2types.DkimSigningKeyLength(str(d, "nextSigningKeyLength"))
		}
		if has(d, "domainSigningPrivateKey") {
			a.DomainSigningPrivateKey = aws.String(str(d, "domainSigningPrivateKey"))
			a.DomainSigningSelector = aws.String(str(d, "domainSigningSelector"))
		}
		return a
	}
	return &standin.Type{
		Token:            "aws:sesv2/emailIdentity:EmailIdentity",
		Inputs:           []string{"configurationSetName", "dkimSigningAttributes", "emailIdentity", "tags"},
		Required:         []string{"emailIdentity"},
		ForceNew:         []string{"emailIdentity"},
		OptionalComputed: []string{"dkimSigningAttributes"},
		LiveWins:         []string{"dkimSigningAttributes"},
		NestedComputed: map[string][]string{"dkimSigningAttributes": {"currentSigningKeyLength", "lastKeyGenerationTimestamp",
			"signingAttributesOrigin", "status", "tokens"}},
		Equivalent: map[string]func(a, b resource.PropertyValue) bool{"dkimSigningAttributes": dkimEquivalent},
		Validate: func(in props) []plugin.CheckFailure {
			return oneOf(standin.Obj(in, "dkimSigningAttributes"), "nextSigningKeyLength", "RSA_1024_BIT", "RSA_2048_BIT")
		},
		Computed: []string{"arn", "identityType", "tagsAll", "verifiedForSendingStatus"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			id := str(in, "emailIdentity")
			input := &sesv2.CreateEmailIdentityInput{EmailIdentity: aws.String(id), DkimSigningAttributes: signing(in)}
			if has(in, "configurationSetName") {
				input.ConfigurationSetName = aws.String(str(in, "configurationSetName"))
			}
			if _, err := c.sesv2.CreateEmailIdentity(ctx, input); err != nil {
				return "", nil, err
			}
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, changed []string) (props, error) {
			c := p.get()
			if contains(changed, "dkimSigningAttributes") {
				a := signing(news)
				origin := sesv2types.DkimSigningAttributesOriginAwsSes
				if a != nil && a.DomainSigningPrivateKey != nil {
					origin = sesv2types.DkimSigningAttributesOriginExternal
				}
				if _, err := c.sesv2.PutEmailIdentityDkimSigningAttributes(ctx, &sesv2.PutEmailIdentityDkimSigningAttributesInput{EmailIdentity: aws.String(id),
					SigningAttributes: a, SigningAttributesOrigin: origin}); err != nil {
					return nil, err
				}
			}
			if contains(changed, "configurationSetName") {
				return nil, fmt.Errorf("stand-in: changing configurationSetName is not supported")
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			_, err := p.get().sesv2.DeleteEmailIdentity(ctx, &sesv2.DeleteEmailIdentityInput{EmailIdentity: aws.String(id)})
			if notFound(err, "NotFoundException") {
				return nil
			}
			return err
		},
	}
}
