package components

import (
	"fmt"

	"github.com/agentkeys/agentkeys-infra/naming"
	"github.com/agentkeys/agentkeys-infra/policy"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// PrincipalsArgs configures the IAM principals of one stack.
type PrincipalsArgs struct {
	Names      naming.Names
	InstanceID string // the SSH user may push keys to this instance only
	// Federated switches the data role from the static trust (§4.2, the
	// daemon user) to the OIDC trust (§9.3).
	Federated bool
	// TrustDependsOn are what the federated trust names (the OIDC provider);
	// IAM rejects a trust whose principal does not exist yet.
	TrustDependsOn []pulumi.Resource
	// PermissionsBoundary caps the stack's roles and users (test stacks: the
	// account stack's agentkeys-test-boundary, which CI requires).
	PermissionsBoundary string
	// DeferDataRole leaves the data role to NewDataRole. A federated data role
	// waits for the OIDC provider, which waits for the host bring-up, which
	// waits for this component's instance profile: declaring the role here
	// would be a construction cycle.
	DeferDataRole bool
}

// Principals are the runtime (daemon) and SSH users with their access keys,
// the data role, and the broker host role with its instance profile.
type Principals struct {
	pulumi.ResourceState

	DaemonUser, SSHUser *iam.User
	DaemonKey, SSHKey   *iam.AccessKey
	DataRole, HostRole  *iam.Role // DataRole is nil with DeferDataRole
	InstanceProfile     *iam.InstanceProfile

	DataRoleArn         pulumi.StringOutput // the naming ARN with DeferDataRole
	HostRoleArn         pulumi.StringOutput
	InstanceProfileName pulumi.StringOutput
	DaemonAccessKeyId   pulumi.StringOutput
	DaemonSecretKey     pulumi.StringOutput // secret
	SSHAccessKeyId      pulumi.StringOutput
	SSHSecretKey        pulumi.StringOutput // secret

	names naming.Names
}

// trustFor picks the trust document of a data or class role and checks that a
// federated trust has the provider to wait for.
func trustFor(n naming.Names, federated bool, deps []pulumi.Resource) (policy.Document, error) {
	if !federated {
		return policy.StaticTrust(n), nil
	}
	if len(deps) == 0 {
		return policy.Document{}, fmt.Errorf("federated trust names %s: pass the OIDC provider in TrustDependsOn so the role waits for it", n.OIDCProviderARN)
	}
	return policy.FederatedTrust(n), nil
}

// NewPrincipals declares the users, keys and roles of one stack. No principal
// gets an S3 full-access policy: S3 is reached only through the data roles.
func NewPrincipals(ctx *pulumi.Context, name string, args *PrincipalsArgs, opts ...pulumi.ResourceOption) (*Principals, error) {
	if args == nil || args.InstanceID == "" {
		return nil, fmt.Errorf("principals %s: InstanceID is required (the SSH user is scoped to it)", name)
	}
	n := args.Names
	trust, err := trustFor(n, args.Federated, args.TrustDependsOn)
	if err != nil && !args.DeferDataRole {
		return nil, fmt.Errorf("principals %s: %w", name, err)
	}
	c := &Principals{names: n}
	if err := ctx.RegisterComponentResource("agentkeys:index:Principals", name, c, opts...); err != nil {
		return nil, err
	}
	p := pulumi.Parent(c)

	user := func(suffix, uname, polName string, doc policy.Document) (*iam.User, *iam.AccessKey, error) {
		u, err := iam.NewUser(ctx, name+"-"+suffix, &iam.UserArgs{Name: pulumi.String(uname), PermissionsBoundary: optString(args.PermissionsBoundary)}, p)
		if err != nil {
			return nil, nil, err
		}
		if _, err := iam.NewUserPolicy(ctx, name+"-"+suffix+"-policy", &iam.UserPolicyArgs{
			User: u.Name, Name: pulumi.String(polName), Policy: pulumi.String(doc.JSON()),
		}, p); err != nil {
			return nil, nil, err
		}
		// The provider already marks secret; repeat it so a provider change cannot leak it.
		k, err := iam.NewAccessKey(ctx, name+"-"+suffix+"-key", &iam.AccessKeyArgs{User: u.Name}, p,
			pulumi.AdditionalSecretOutputs([]string{"secret", "sesSmtpPasswordV4"}))
		return u, k, err
	}
	if c.DaemonUser, c.DaemonKey, err = user("daemon", n.DaemonUser, n.DaemonUser+"-assume-role", policy.DaemonUser(n)); err != nil {
		return nil, err
	}
	if c.SSHUser, c.SSHKey, err = user("ssh", n.SSHUser, "agentkeys-instance-connect", policy.SSHUser(n, args.InstanceID)); err != nil {
		return nil, err
	}

	if c.HostRole, err = iam.NewRole(ctx, name+"-host-role", &iam.RoleArgs{
		Name:                pulumi.String(n.HostRole),
		AssumeRolePolicy:    pulumi.String(policy.HostRoleTrust().JSON()),
		PermissionsBoundary: optString(args.PermissionsBoundary),
	}, p); err != nil {
		return nil, err
	}
	if _, err = iam.NewRolePolicy(ctx, name+"-host-role-policy", &iam.RolePolicyArgs{
		Role: c.HostRole.Name, Name: pulumi.String("agentkeys-broker-host"), Policy: pulumi.String(policy.HostRoleInline(n).JSON()),
	}, p); err != nil {
		return nil, err
	}
	if _, err = iam.NewRolePolicyAttachment(ctx, name+"-host-role-ssm", &iam.RolePolicyAttachmentArgs{
		Role: c.HostRole.Name, PolicyArn: pulumi.String(policy.SSMCorePolicyARN),
	}, p); err != nil {
		return nil, err
	}
	if c.InstanceProfile, err = iam.NewInstanceProfile(ctx, name+"-instance-profile", &iam.InstanceProfileArgs{
		Name: pulumi.String(n.InstanceProfile), Role: c.HostRole.Name,
	}, p); err != nil {
		return nil, err
	}

	if args.DeferDataRole {
		c.DataRoleArn = pulumi.String(n.DataRoleARN).ToStringOutput()
	} else {
		// The static trust names the daemon user, which must exist first.
		deps := append([]pulumi.Resource{c.DaemonUser}, args.TrustDependsOn...)
		if c.DataRole, err = declareDataRole(ctx, name, c, n, pulumi.String(trust.JSON()), deps, args.PermissionsBoundary, false); err != nil {
			return nil, err
		}
		c.DataRoleArn = c.DataRole.Arn
	}

	c.HostRoleArn = c.HostRole.Arn
	c.InstanceProfileName = c.InstanceProfile.Name
	c.DaemonAccessKeyId = c.DaemonKey.ID().ToStringOutput()
	c.SSHAccessKeyId = c.SSHKey.ID().ToStringOutput()
	c.DaemonSecretKey = pulumi.ToSecret(c.DaemonKey.Secret).(pulumi.StringOutput)
	c.SSHSecretKey = pulumi.ToSecret(c.SSHKey.Secret).(pulumi.StringOutput)
	return c, ctx.RegisterResourceOutputs(c, pulumi.Map{
		"dataRoleArn":         c.DataRoleArn,
		"hostRoleArn":         c.HostRoleArn,
		"instanceProfileName": c.InstanceProfileName,
		"daemonAccessKeyId":   c.DaemonAccessKeyId,
		"daemonSecretKey":     c.DaemonSecretKey,
		"sshAccessKeyId":      c.SSHAccessKeyId,
		"sshSecretKey":        c.SSHSecretKey,
		"federated":           pulumi.Bool(args.Federated),
	})
}

// Credentials renders the operator's ~/.aws/credentials blocks for this
// stack's two users (secret); see CredentialsBlocks.
func (c *Principals) Credentials() pulumi.StringOutput {
	return CredentialsBlocks(c.names, c.DaemonAccessKeyId, c.DaemonSecretKey, c.SSHAccessKeyId, c.SSHSecretKey)
}

// CredentialsBlocks renders the [agentkeys-daemon<sfx>] and
// [agentkeys-broker<sfx>] profiles of ~/.aws/credentials as one secret
// string, for `pulumi stack output --show-secrets credentials`.
func CredentialsBlocks(n naming.Names, daemonID, daemonSecret, sshID, sshSecret pulumi.StringInput) pulumi.StringOutput {
	out := pulumi.All(daemonID, daemonSecret, sshID, sshSecret).ApplyT(func(v []any) string {
		block := func(profile, id, secret string) string {
			return fmt.Sprintf("[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\nregion = %s\n", profile, id, secret, n.Region)
		}
		return block(n.DaemonUser, v[0].(string), v[1].(string)) + "\n" + block(n.SSHUser, v[2].(string), v[3].(string))
	}).(pulumi.StringOutput)
	return pulumi.ToSecret(out).(pulumi.StringOutput)
}
