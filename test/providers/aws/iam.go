package aws

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"

	"github.com/agentkeys/agentkeys-infra/test/providers/standin"
)

type props = standin.Props

var (
	str   = standin.Str
	has   = standin.Has
	strs  = standin.Strs
	mk    = standin.M
	fails = func(fs ...[]plugin.CheckFailure) []plugin.CheckFailure {
		var out []plugin.CheckFailure
		for _, f := range fs {
			out = append(out, f...)
		}
		return out
	}
	policyEq = map[string]func(a, b resource.PropertyValue) bool{"policy": standin.PolicyEquivalent}
)

// iamLen is the IAM API's length limit for names the upstream schema does
// not check (IAM API reference, CreateUser UserName: 1-64).
func iamLen(what, v string, max int) error {
	if len(v) < 1 || len(v) > max {
		return fmt.Errorf("ValidationError: 1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must have length less than or equal to %d", v, what, max)
	}
	return nil
}

func iamTags(m map[string]string) []iamtypes.Tag {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []iamtypes.Tag
	for _, k := range keys {
		out = append(out, iamtypes.Tag{Key: aws.String(k), Value: aws.String(m[k])})
	}
	return out
}

func fromIAMTags(ts []iamtypes.Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	return m
}

func iamTypes(p *awsProvider) []*standin.Type {
	return []*standin.Type{userType(p), userPolicyType(p), accessKeyType(p), roleType(p), rolePolicyType(p),
		rolePolicyAttachmentType(p), policyType(p), instanceProfileType(p), oidcProviderType(p)}
}

// userType is aws:iam/user:User (internal/service/iam/user.go): a name or
// path change renames in place (UpdateUser), it does not replace.
func userType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.iam.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(id)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		u := out.User
		m := mk(map[string]any{"name": u.UserName, "path": u.Path, "arn": u.Arn, "uniqueId": u.UserId,
			"tagsAll": fromIAMTags(u.Tags)})
		if u.PermissionsBoundary != nil {
			m["permissionsBoundary"] = resource.NewStringProperty(aws.ToString(u.PermissionsBoundary.PermissionsBoundaryArn))
		}
		return m, nil
	}
	return &standin.Type{
		Token:    "aws:iam/user:User",
		Inputs:   []string{"forceDestroy", "name", "path", "permissionsBoundary", "tags"},
		Defaults: map[string]resource.PropertyValue{"path": resource.NewStringProperty("/"), "forceDestroy": resource.NewBoolProperty(false)},
		AutoName: "name", AutoNameMax: 64,
		Validate: func(in props) []plugin.CheckFailure {
			return fails(nameCheck(in, "name", iamUserRe, 1, 1<<20, "must only contain alphanumeric characters, hyphens, underscores, commas, periods, @ symbols, plus and equals signs"),
				nameCheck(in, "permissionsBoundary", regexpAny, 0, 2048, ""))
		},
		Computed: []string{"arn", "uniqueId", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			name := str(in, "name")
			if err := iamLen("userName", name, 64); err != nil {
				return "", nil, err
			}
			input := &iam.CreateUserInput{UserName: aws.String(name), Path: aws.String(str(in, "path")), Tags: iamTags(standin.StrMap(in, "tags"))}
			if has(in, "permissionsBoundary") {
				input.PermissionsBoundary = aws.String(str(in, "permissionsBoundary"))
			}
			if _, err := c.iam.CreateUser(ctx, input); err != nil {
				return "", nil, err
			}
			live, err := read(ctx, name, nil)
			return name, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, olds, news props, changed []string) (props, error) {
			c := p.get()
			if contains(changed, "name") || contains(changed, "path") {
				if err := iamLen("newUserName", str(news, "name"), 64); err != nil {
					return nil, err
				}
				if _, err := c.iam.UpdateUser(ctx, &iam.UpdateUserInput{UserName: aws.String(id), NewUserName: aws.String(str(news, "name")), NewPath: aws.String(str(news, "path"))}); err != nil {
					return nil, err
				}
				id = str(news, "name")
			}
			if contains(changed, "permissionsBoundary") {
				var err error
				if has(news, "permissionsBoundary") {
					_, err = c.iam.PutUserPermissionsBoundary(ctx, &iam.PutUserPermissionsBoundaryInput{UserName: aws.String(id), PermissionsBoundary: aws.String(str(news, "permissionsBoundary"))})
				} else {
					_, err = c.iam.DeleteUserPermissionsBoundary(ctx, &iam.DeleteUserPermissionsBoundaryInput{UserName: aws.String(id)})
				}
				if err != nil {
					return nil, err
				}
			}
			if contains(changed, "tags") {
				if err := retagUser(ctx, p.get(), id, standin.StrMap(olds, "tagsAll"), standin.StrMap(news, "tags")); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			c := p.get()
			if standin.Bool(state, "forceDestroy") {
				keys, err := c.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(id)})
				if err == nil {
					for _, k := range keys.AccessKeyMetadata {
						_, _ = c.iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(id), AccessKeyId: k.AccessKeyId})
					}
				}
			}
			_, err := c.iam.DeleteUser(ctx, &iam.DeleteUserInput{UserName: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

func retagUser(ctx context.Context, c *clients, id string, old, new map[string]string) error {
	var remove []string
	for k := range old {
		if _, ok := new[k]; !ok {
			remove = append(remove, k)
		}
	}
	if len(remove) > 0 {
		if _, err := c.iam.UntagUser(ctx, &iam.UntagUserInput{UserName: aws.String(id), TagKeys: remove}); err != nil {
			return err
		}
	}
	if len(new) > 0 {
		_, err := c.iam.TagUser(ctx, &iam.TagUserInput{UserName: aws.String(id), Tags: iamTags(new)})
		return err
	}
	return nil
}

// inlinePolicyType is aws:iam/userPolicy:UserPolicy or
// aws:iam/rolePolicy:RolePolicy (internal/service/iam/user_policy.go,
// role_policy.go): the owner and the name replace, the document updates;
// the ID is "<owner>:<name>".
func inlinePolicyType(p *awsProvider, token, owner string) *standin.Type {
	put := func(ctx context.Context, ownerName, name, doc string) error {
		c := p.get()
		if err := iamLen("policyName", name, 128); err != nil {
			return err
		}
		var err error
		if owner == "user" {
			_, err = c.iam.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(ownerName), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
		} else {
			_, err = c.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: aws.String(ownerName), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)})
		}
		return err
	}
	split := func(id string) (string, string) {
		o, n, _ := strings.Cut(id, ":")
		return o, n
	}
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		o, n := split(id)
		var doc *string
		if owner == "user" {
			out, err := c.iam.GetUserPolicy(ctx, &iam.GetUserPolicyInput{UserName: aws.String(o), PolicyName: aws.String(n)})
			if notFound(err, "NoSuchEntity") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			doc = out.PolicyDocument
		} else {
			out, err := c.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(o), PolicyName: aws.String(n)})
			if notFound(err, "NoSuchEntity") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			doc = out.PolicyDocument
		}
		return mk(map[string]any{owner: o, "name": n, "policy": unescape(aws.ToString(doc))}), nil
	}
	return &standin.Type{
		Token:            token,
		Inputs:           []string{"name", "namePrefix", "policy", owner},
		Required:         []string{"policy", owner},
		ForceNew:         []string{"name", "namePrefix", owner},
		OptionalComputed: []string{"namePrefix"},
		AutoName:         "name", AutoNameMax: 128,
		Equivalent: policyEq,
		Validate: func(in props) []plugin.CheckFailure {
			return fails(policyCheck(in, "policy"), nameCheck(in, "name", iamPolicyNameRe, 1, 128, "must match [\\w+=,.@-]"))
		},
		Create: func(ctx context.Context, in props) (string, props, error) {
			o, n := str(in, owner), str(in, "name")
			if err := put(ctx, o, n, str(in, "policy")); err != nil {
				return "", nil, err
			}
			id := o + ":" + n
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, _ []string) (props, error) {
			o, n := split(id)
			if err := put(ctx, o, n, str(news, "policy")); err != nil {
				return nil, err
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			c := p.get()
			o, n := split(id)
			var err error
			if owner == "user" {
				_, err = c.iam.DeleteUserPolicy(ctx, &iam.DeleteUserPolicyInput{UserName: aws.String(o), PolicyName: aws.String(n)})
			} else {
				_, err = c.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(o), PolicyName: aws.String(n)})
			}
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

func userPolicyType(p *awsProvider) *standin.Type {
	return inlinePolicyType(p, "aws:iam/userPolicy:UserPolicy", "user")
}

func rolePolicyType(p *awsProvider) *standin.Type {
	return inlinePolicyType(p, "aws:iam/rolePolicy:RolePolicy", "role")
}

// sesSMTPPassword derives the SES SMTP password from a secret key as AWS
// documents ("Obtaining Amazon SES SMTP credentials": SigV4 chain over
// "SendRawEmail", version byte 0x04), as the provider's sesSmtpPasswordV4.
func sesSMTPPassword(secret, region string) string {
	sign := func(key []byte, msg string) []byte {
		h := hmac.New(sha256.New, key)
		h.Write([]byte(msg))
		return h.Sum(nil)
	}
	sig := sign([]byte("AWS4"+secret), "11111111")
	for _, m := range []string{region, "ses", "aws4_request", "SendRawEmail"} {
		sig = sign(sig, m)
	}
	return base64.StdEncoding.EncodeToString(append([]byte{0x04}, sig...))
}

// accessKeyType is aws:iam/accessKey:AccessKey
// (internal/service/iam/access_key.go): user and pgpKey replace, status
// updates; secret and sesSmtpPasswordV4 are Sensitive, hence secrets.
func accessKeyType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, state props) (props, error) {
		c := p.get()
		user := str(state, "user")
		out, err := c.iam.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String(user)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		for _, k := range out.AccessKeyMetadata {
			if aws.ToString(k.AccessKeyId) == id {
				return mk(map[string]any{"user": k.UserName, "status": string(k.Status),
					"createDate": aws.ToTime(k.CreateDate).Format(time.RFC3339)}), nil
			}
		}
		return nil, nil
	}
	return &standin.Type{
		Token:    "aws:iam/accessKey:AccessKey",
		Inputs:   []string{"pgpKey", "status", "user"},
		Required: []string{"user"},
		ForceNew: []string{"pgpKey", "user"},
		Defaults: map[string]resource.PropertyValue{"status": resource.NewStringProperty("Active")},
		Validate: func(in props) []plugin.CheckFailure {
			return oneOf(in, "status", "Active", "Inactive", "Expired")
		},
		Computed: []string{"createDate", "encryptedSecret", "encryptedSesSmtpPasswordV4", "keyFingerprint", "secret", "sesSmtpPasswordV4"},
		Secret:   []string{"secret", "sesSmtpPasswordV4"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			if has(in, "pgpKey") {
				return "", nil, fmt.Errorf("stand-in: pgpKey is not supported")
			}
			out, err := c.iam.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(str(in, "user"))})
			if err != nil {
				return "", nil, err
			}
			k := out.AccessKey
			id := aws.ToString(k.AccessKeyId)
			if str(in, "status") == "Inactive" {
				if _, err := c.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: k.UserName, AccessKeyId: k.AccessKeyId, Status: iamtypes.StatusTypeInactive}); err != nil {
					return id, nil, err
				}
			}
			secret := aws.ToString(k.SecretAccessKey)
			live, err := read(ctx, id, in)
			if live != nil {
				live["secret"] = resource.NewStringProperty(secret)
				live["sesSmtpPasswordV4"] = resource.NewStringProperty(sesSMTPPassword(secret, c.region))
			}
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, _ []string) (props, error) {
			c := p.get()
			if _, err := c.iam.UpdateAccessKey(ctx, &iam.UpdateAccessKeyInput{UserName: aws.String(str(news, "user")), AccessKeyId: aws.String(id), Status: iamtypes.StatusType(str(news, "status"))}); err != nil {
				return nil, err
			}
			return read(ctx, id, news)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			_, err := p.get().iam.DeleteAccessKey(ctx, &iam.DeleteAccessKeyInput{UserName: aws.String(str(state, "user")), AccessKeyId: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// roleType is aws:iam/role:Role (internal/service/iam/role.go): name,
// namePrefix and path replace; the trust policy, description, session
// duration and boundary update in place.
func roleType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.iam.GetRole(ctx, &iam.GetRoleInput{RoleName: aws.String(id)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		r := out.Role
		m := mk(map[string]any{"name": r.RoleName, "path": r.Path, "arn": r.Arn, "uniqueId": r.RoleId,
			"assumeRolePolicy": unescape(aws.ToString(r.AssumeRolePolicyDocument)), "maxSessionDuration": r.MaxSessionDuration,
			"createDate": aws.ToTime(r.CreateDate).Format(time.RFC3339), "tagsAll": fromIAMTags(r.Tags)})
		if r.Description != nil {
			m["description"] = resource.NewStringProperty(*r.Description)
		}
		if r.PermissionsBoundary != nil {
			m["permissionsBoundary"] = resource.NewStringProperty(aws.ToString(r.PermissionsBoundary.PermissionsBoundaryArn))
		}
		return m, nil
	}
	return &standin.Type{
		Token: "aws:iam/role:Role",
		Inputs: []string{"assumeRolePolicy", "description", "forceDetachPolicies", "inlinePolicies", "managedPolicyArns",
			"maxSessionDuration", "name", "namePrefix", "path", "permissionsBoundary", "tags"},
		Required:         []string{"assumeRolePolicy"},
		ForceNew:         []string{"name", "namePrefix", "path"},
		OptionalComputed: []string{"inlinePolicies", "managedPolicyArns", "namePrefix"},
		Defaults: map[string]resource.PropertyValue{"path": resource.NewStringProperty("/"), "forceDetachPolicies": resource.NewBoolProperty(false),
			"maxSessionDuration": resource.NewNumberProperty(3600)},
		AutoName: "name", AutoNameMax: 64,
		Equivalent: map[string]func(a, b resource.PropertyValue) bool{"assumeRolePolicy": standin.PolicyEquivalent},
		Validate: func(in props) []plugin.CheckFailure {
			return fails(jsonCheck(in, "assumeRolePolicy"), nameCheck(in, "name", iamNameRe, 0, 64, "must match [\\w+=,.@-]"),
				nameCheck(in, "description", regexpAny, 0, 1000, ""), intRange(in, "maxSessionDuration", 3600, 43200),
				arnCheck(in, "permissionsBoundary"))
		},
		Computed: []string{"arn", "createDate", "uniqueId", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			name := str(in, "name")
			input := &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String(str(in, "path")),
				AssumeRolePolicyDocument: aws.String(str(in, "assumeRolePolicy")), Tags: iamTags(standin.StrMap(in, "tags"))}
			if has(in, "description") {
				input.Description = aws.String(str(in, "description"))
			}
			if has(in, "maxSessionDuration") {
				input.MaxSessionDuration = aws.Int32(int32(standin.Int(in, "maxSessionDuration")))
			}
			if has(in, "permissionsBoundary") {
				input.PermissionsBoundary = aws.String(str(in, "permissionsBoundary"))
			}
			if _, err := c.iam.CreateRole(ctx, input); err != nil {
				return "", nil, err
			}
			live, err := read(ctx, name, nil)
			return name, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, olds, news props, changed []string) (props, error) {
			c := p.get()
			var err error
			for _, k := range changed {
				switch k {
				case "assumeRolePolicy":
					_, err = c.iam.UpdateAssumeRolePolicy(ctx, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String(id), PolicyDocument: aws.String(str(news, k))})
				case "description":
					_, err = c.iam.UpdateRoleDescription(ctx, &iam.UpdateRoleDescriptionInput{RoleName: aws.String(id), Description: aws.String(str(news, k))})
				case "maxSessionDuration":
					_, err = c.iam.UpdateRole(ctx, &iam.UpdateRoleInput{RoleName: aws.String(id), MaxSessionDuration: aws.Int32(int32(standin.Int(news, k)))})
				case "permissionsBoundary":
					if has(news, k) {
						_, err = c.iam.PutRolePermissionsBoundary(ctx, &iam.PutRolePermissionsBoundaryInput{RoleName: aws.String(id), PermissionsBoundary: aws.String(str(news, k))})
					} else {
						_, err = c.iam.DeleteRolePermissionsBoundary(ctx, &iam.DeleteRolePermissionsBoundaryInput{RoleName: aws.String(id)})
					}
				case "tags":
					old, new := standin.StrMap(olds, "tagsAll"), standin.StrMap(news, "tags")
					var remove []string
					for t := range old {
						if _, ok := new[t]; !ok {
							remove = append(remove, t)
						}
					}
					if len(remove) > 0 {
						_, err = c.iam.UntagRole(ctx, &iam.UntagRoleInput{RoleName: aws.String(id), TagKeys: remove})
					}
					if err == nil && len(new) > 0 {
						_, err = c.iam.TagRole(ctx, &iam.TagRoleInput{RoleName: aws.String(id), Tags: iamTags(new)})
					}
				case "forceDetachPolicies":
					// state only
				default:
					err = fmt.Errorf("stand-in: updating %s is not supported", k)
				}
				if err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			c := p.get()
			// The provider takes the role out of its instance profiles first
			// (DeleteRole in internal/service/iam/role.go), and with
			// forceDetachPolicies removes its policies.
			if ips, err := c.iam.ListInstanceProfilesForRole(ctx, &iam.ListInstanceProfilesForRoleInput{RoleName: aws.String(id)}); err == nil {
				for _, ip := range ips.InstanceProfiles {
					_, _ = c.iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{RoleName: aws.String(id), InstanceProfileName: ip.InstanceProfileName})
				}
			}
			if standin.Bool(state, "forceDetachPolicies") {
				if att, err := c.iam.ListAttachedRolePolicies(ctx, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(id)}); err == nil {
					for _, a := range att.AttachedPolicies {
						_, _ = c.iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(id), PolicyArn: a.PolicyArn})
					}
				}
				if inl, err := c.iam.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: aws.String(id)}); err == nil {
					for _, n := range inl.PolicyNames {
						_, _ = c.iam.DeleteRolePolicy(ctx, &iam.DeleteRolePolicyInput{RoleName: aws.String(id), PolicyName: aws.String(n)})
					}
				}
			}
			_, err := c.iam.DeleteRole(ctx, &iam.DeleteRoleInput{RoleName: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// rolePolicyAttachmentType is aws:iam/rolePolicyAttachment:RolePolicyAttachment
// (internal/service/iam/role_policy_attachment.go): both inputs replace;
// the ID is "<role>-<unique suffix>".
func rolePolicyAttachmentType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, _ string, state props) (props, error) {
		c := p.get()
		role, arn := str(state, "role"), str(state, "policyArn")
		pager := iam.NewListAttachedRolePoliciesPaginator(c.iam, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String(role)})
		for pager.HasMorePages() {
			page, err := pager.NextPage(ctx)
			if notFound(err, "NoSuchEntity") {
				return nil, nil
			}
			if err != nil {
				return nil, err
			}
			for _, a := range page.AttachedPolicies {
				if aws.ToString(a.PolicyArn) == arn {
					return mk(map[string]any{"role": role, "policyArn": arn}), nil
				}
			}
		}
		return nil, nil
	}
	return &standin.Type{
		Token:    "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
		Inputs:   []string{"policyArn", "role"},
		Required: []string{"policyArn", "role"},
		ForceNew: []string{"policyArn", "role"},
		Validate: func(in props) []plugin.CheckFailure { return arnCheck(in, "policyArn") },
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			if _, err := c.iam.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: aws.String(str(in, "role")), PolicyArn: aws.String(str(in, "policyArn"))}); err != nil {
				return "", nil, err
			}
			id := str(in, "role") + "-" + time.Now().UTC().Format("20060102150405000000000")
			live, err := read(ctx, id, in)
			return id, live, err
		},
		Read: read,
		Delete: func(ctx context.Context, _ string, state props) error {
			_, err := p.get().iam.DetachRolePolicy(ctx, &iam.DetachRolePolicyInput{RoleName: aws.String(str(state, "role")), PolicyArn: aws.String(str(state, "policyArn"))})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// policyType is aws:iam/policy:Policy (internal/service/iam/policy.go):
// name, path and description replace; a new document becomes a new default
// version (the oldest non-default is deleted at IAM's limit of five).
func policyType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.iam.GetPolicy(ctx, &iam.GetPolicyInput{PolicyArn: aws.String(id)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		pol := out.Policy
		v, err := c.iam.GetPolicyVersion(ctx, &iam.GetPolicyVersionInput{PolicyArn: aws.String(id), VersionId: pol.DefaultVersionId})
		if err != nil {
			return nil, err
		}
		m := mk(map[string]any{"arn": pol.Arn, "name": pol.PolicyName, "path": pol.Path, "policyId": pol.PolicyId,
			"attachmentCount": pol.AttachmentCount, "policy": unescape(aws.ToString(v.PolicyVersion.Document)), "tagsAll": fromIAMTags(pol.Tags)})
		if pol.Description != nil {
			m["description"] = resource.NewStringProperty(*pol.Description)
		}
		return m, nil
	}
	return &standin.Type{
		Token:            "aws:iam/policy:Policy",
		Inputs:           []string{"description", "name", "namePrefix", "path", "policy", "tags"},
		Required:         []string{"policy"},
		ForceNew:         []string{"description", "name", "namePrefix", "path"},
		OptionalComputed: []string{"namePrefix"},
		Defaults:         map[string]resource.PropertyValue{"path": resource.NewStringProperty("/")},
		AutoName:         "name", AutoNameMax: 128,
		Equivalent: policyEq,
		Validate: func(in props) []plugin.CheckFailure {
			return fails(policyCheck(in, "policy"), nameCheck(in, "name", iamNameRe, 0, 128, "must match [\\w+=,.@-]"),
				nameCheck(in, "description", regexpAny, 0, 1000, ""))
		},
		Computed: []string{"arn", "attachmentCount", "policyId", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			input := &iam.CreatePolicyInput{PolicyName: aws.String(str(in, "name")), Path: aws.String(str(in, "path")),
				PolicyDocument: aws.String(str(in, "policy")), Tags: iamTags(standin.StrMap(in, "tags"))}
			if has(in, "description") {
				input.Description = aws.String(str(in, "description"))
			}
			out, err := c.iam.CreatePolicy(ctx, input)
			if err != nil {
				return "", nil, err
			}
			id := aws.ToString(out.Policy.Arn)
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, _, news props, changed []string) (props, error) {
			c := p.get()
			if contains(changed, "policy") {
				vs, err := c.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(id)})
				if err != nil {
					return nil, err
				}
				if len(vs.Versions) >= 5 {
					var oldest *iamtypes.PolicyVersion
					for i := range vs.Versions {
						v := &vs.Versions[i]
						if !v.IsDefaultVersion && (oldest == nil || aws.ToTime(v.CreateDate).Before(aws.ToTime(oldest.CreateDate))) {
							oldest = v
						}
					}
					if oldest != nil {
						if _, err := c.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(id), VersionId: oldest.VersionId}); err != nil {
							return nil, err
						}
					}
				}
				if _, err := c.iam.CreatePolicyVersion(ctx, &iam.CreatePolicyVersionInput{PolicyArn: aws.String(id), PolicyDocument: aws.String(str(news, "policy")), SetAsDefault: true}); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			c := p.get()
			if vs, err := c.iam.ListPolicyVersions(ctx, &iam.ListPolicyVersionsInput{PolicyArn: aws.String(id)}); err == nil {
				for _, v := range vs.Versions {
					if !v.IsDefaultVersion {
						_, _ = c.iam.DeletePolicyVersion(ctx, &iam.DeletePolicyVersionInput{PolicyArn: aws.String(id), VersionId: v.VersionId})
					}
				}
			}
			_, err := c.iam.DeletePolicy(ctx, &iam.DeletePolicyInput{PolicyArn: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// instanceProfileType is aws:iam/instanceProfile:InstanceProfile
// (internal/service/iam/instance_profile.go): name and path replace, the
// role is swapped in place.
func instanceProfileType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.iam.GetInstanceProfile(ctx, &iam.GetInstanceProfileInput{InstanceProfileName: aws.String(id)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		ip := out.InstanceProfile
		m := mk(map[string]any{"name": ip.InstanceProfileName, "path": ip.Path, "arn": ip.Arn, "uniqueId": ip.InstanceProfileId,
			"createDate": aws.ToTime(ip.CreateDate).Format(time.RFC3339), "tagsAll": fromIAMTags(ip.Tags)})
		if len(ip.Roles) > 0 {
			m["role"] = resource.NewStringProperty(aws.ToString(ip.Roles[0].RoleName))
		}
		return m, nil
	}
	addRole := func(ctx context.Context, name, role string) error {
		if role == "" {
			return nil
		}
		_, err := p.get().iam.AddRoleToInstanceProfile(ctx, &iam.AddRoleToInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(role)})
		return err
	}
	removeRole := func(ctx context.Context, name, role string) error {
		if role == "" {
			return nil
		}
		_, err := p.get().iam.RemoveRoleFromInstanceProfile(ctx, &iam.RemoveRoleFromInstanceProfileInput{InstanceProfileName: aws.String(name), RoleName: aws.String(role)})
		if notFound(err, "NoSuchEntity") {
			return nil
		}
		return err
	}
	return &standin.Type{
		Token:            "aws:iam/instanceProfile:InstanceProfile",
		Inputs:           []string{"name", "namePrefix", "path", "role", "tags"},
		ForceNew:         []string{"name", "namePrefix", "path"},
		OptionalComputed: []string{"namePrefix"},
		Defaults:         map[string]resource.PropertyValue{"path": resource.NewStringProperty("/")},
		AutoName:         "name", AutoNameMax: 128,
		Validate: func(in props) []plugin.CheckFailure {
			return nameCheck(in, "name", iamNameRe, 0, 128, "must match [\\w+=,.@-]")
		},
		Computed: []string{"arn", "createDate", "uniqueId", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			name := str(in, "name")
			if _, err := c.iam.CreateInstanceProfile(ctx, &iam.CreateInstanceProfileInput{InstanceProfileName: aws.String(name),
				Path: aws.String(str(in, "path")), Tags: iamTags(standin.StrMap(in, "tags"))}); err != nil {
				return "", nil, err
			}
			if err := addRole(ctx, name, str(in, "role")); err != nil {
				return name, nil, err
			}
			live, err := read(ctx, name, nil)
			return name, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, olds, news props, changed []string) (props, error) {
			if contains(changed, "role") {
				if err := removeRole(ctx, id, str(olds, "role")); err != nil {
					return nil, err
				}
				if err := addRole(ctx, id, str(news, "role")); err != nil {
					return nil, err
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, state props) error {
			if err := removeRole(ctx, id, str(state, "role")); err != nil {
				return err
			}
			_, err := p.get().iam.DeleteInstanceProfile(ctx, &iam.DeleteInstanceProfileInput{InstanceProfileName: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// oidcURLEquivalent is suppressOpenIDURL: IAM stores the URL without its
// https:// scheme.
func oidcURLEquivalent(a, b resource.PropertyValue) bool {
	trim := func(v resource.PropertyValue) string {
		s := v.StringValue()
		return strings.TrimPrefix(s, "https://")
	}
	return a.IsString() && b.IsString() && trim(a) == trim(b)
}

// oidcProviderType is aws:iam/openIdConnectProvider:OpenIdConnectProvider
// (internal/service/iam/openid_connect_provider.go): the URL replaces;
// client ids update as a set; thumbprints are Optional+Computed and an
// update with an empty list is skipped (the API requires at least one).
func oidcProviderType(p *awsProvider) *standin.Type {
	read := func(ctx context.Context, id string, _ props) (props, error) {
		c := p.get()
		out, err := c.iam.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(id)})
		if notFound(err, "NoSuchEntity") {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		return mk(map[string]any{"arn": id, "url": out.Url, "clientIdLists": out.ClientIDList,
			"thumbprintLists": out.ThumbprintList, "tagsAll": fromIAMTags(out.Tags)}), nil
	}
	return &standin.Type{
		Token:            "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
		Inputs:           []string{"clientIdLists", "tags", "thumbprintLists", "url"},
		Required:         []string{"clientIdLists", "url"},
		ForceNew:         []string{"url"},
		OptionalComputed: []string{"thumbprintLists"},
		Sets:             []string{"clientIdLists"},
		Equivalent:       map[string]func(a, b resource.PropertyValue) bool{"url": oidcURLEquivalent},
		Validate: func(in props) []plugin.CheckFailure {
			var out []plugin.CheckFailure
			// validOpenIDURL (internal/service/iam/validate.go).
			if u := str(in, "url"); has(in, "url") && (!strings.HasPrefix(u, "https://") || strings.ContainsAny(u, "?#")) {
				out = append(out, standin.Fail("url", "%q: URL must begin with https:// and have no query or fragment, got %s", "url", u))
			}
			for _, t := range strs(in, "thumbprintLists") {
				if len(t) != 40 {
					out = append(out, standin.Fail("thumbprintLists", "expected length of thumbprint_list to be in the range (40 - 40), got %s", t))
				}
			}
			for _, cid := range strs(in, "clientIdLists") {
				if len(cid) < 1 || len(cid) > 255 {
					out = append(out, standin.Fail("clientIdLists", "expected length of client_id_list to be in the range (1 - 255), got %s", cid))
				}
			}
			return out
		},
		Computed: []string{"arn", "tagsAll"},
		Create: func(ctx context.Context, in props) (string, props, error) {
			c := p.get()
			input := &iam.CreateOpenIDConnectProviderInput{Url: aws.String(str(in, "url")), ClientIDList: strs(in, "clientIdLists"),
				Tags: iamTags(standin.StrMap(in, "tags"))}
			if t := strs(in, "thumbprintLists"); len(t) > 0 {
				input.ThumbprintList = t
			}
			out, err := c.iam.CreateOpenIDConnectProvider(ctx, input)
			if err != nil {
				return "", nil, err
			}
			id := aws.ToString(out.OpenIDConnectProviderArn)
			live, err := read(ctx, id, nil)
			return id, live, err
		},
		Read: read,
		Update: func(ctx context.Context, id string, olds, news props, changed []string) (props, error) {
			c := p.get()
			if t := strs(news, "thumbprintLists"); contains(changed, "thumbprintLists") && len(t) > 0 {
				if _, err := c.iam.UpdateOpenIDConnectProviderThumbprint(ctx, &iam.UpdateOpenIDConnectProviderThumbprintInput{OpenIDConnectProviderArn: aws.String(id), ThumbprintList: t}); err != nil {
					return nil, err
				}
			}
			if contains(changed, "clientIdLists") {
				old, new := strs(olds, "clientIdLists"), strs(news, "clientIdLists")
				for _, cid := range new {
					if !contains(old, cid) {
						if _, err := c.iam.AddClientIDToOpenIDConnectProvider(ctx, &iam.AddClientIDToOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(id), ClientID: aws.String(cid)}); err != nil {
							return nil, err
						}
					}
				}
				for _, cid := range old {
					if !contains(new, cid) {
						if _, err := c.iam.RemoveClientIDFromOpenIDConnectProvider(ctx, &iam.RemoveClientIDFromOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(id), ClientID: aws.String(cid)}); err != nil {
							return nil, err
						}
					}
				}
			}
			return read(ctx, id, nil)
		},
		Delete: func(ctx context.Context, id string, _ props) error {
			_, err := p.get().iam.DeleteOpenIDConnectProvider(ctx, &iam.DeleteOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(id)})
			if notFound(err, "NoSuchEntity") {
				return nil
			}
			return err
		},
	}
}

// getOIDCProvider is aws:iam/getOpenIdConnectProvider (data source
// internal/service/iam/openid_connect_provider_data_source.go) by arn or url.
func getOIDCProvider(p *awsProvider) standin.Invoke {
	return func(ctx context.Context, args props) (props, error) {
		c := p.get()
		arn := str(args, "arn")
		if arn == "" && has(args, "url") {
			list, err := c.iam.ListOpenIDConnectProviders(ctx, &iam.ListOpenIDConnectProvidersInput{})
			if err != nil {
				return nil, err
			}
			want := strings.TrimPrefix(str(args, "url"), "https://")
			for _, e := range list.OpenIDConnectProviderList {
				if strings.HasSuffix(aws.ToString(e.Arn), ":oidc-provider/"+want) {
					arn = aws.ToString(e.Arn)
				}
			}
			if arn == "" {
				return nil, fmt.Errorf("reading IAM OIDC Provider: no IAM OIDC Provider with url %s: couldn't find resource", str(args, "url"))
			}
		}
		out, err := c.iam.GetOpenIDConnectProvider(ctx, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn)})
		if notFound(err, "NoSuchEntity") {
			// tfresource's NotFoundError reads "couldn't find resource".
			return nil, fmt.Errorf("reading IAM OIDC Provider (%s): couldn't find resource", arn)
		}
		if err != nil {
			return nil, fmt.Errorf("reading IAM OIDC Provider (%s): %w", arn, err)
		}
		return mk(map[string]any{"arn": arn, "id": arn, "url": out.Url, "clientIdLists": nonNil(out.ClientIDList),
			"thumbprintLists": nonNil(out.ThumbprintList), "tags": fromIAMTags(out.Tags)}), nil
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
