package steps

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
)

// Users ensures the agentkeys system user and its state dir, the agentkey
// login user, and EC2 Instance Connect wired into sshd for that user.
type Users struct{}

func (Users) Name() string { return "users" }

// SSHDConfig is the drop-in naming EC2 Instance Connect's key command. The
// ec2-instance-connect package adds its own only when none is set, so this
// one is authoritative.
const SSHDConfig = `# Managed by agentkeys-hostagent: EC2 Instance Connect keys for SSH logins.
AuthorizedKeysCommand ` + EICCommand + ` %u %f
AuthorizedKeysCommandUser ` + EICUser + `
`

func (Users) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
	res := agent.Result{Step: "users", Detail: map[string]any{}}
	s := env.Spec
	users := []agent.UserSpec{
		{Name: s.ServiceUser, System: true, Home: s.StateDir, Shell: "/usr/sbin/nologin"},
		{Name: s.LoginUser, Home: path.Join("/home", s.LoginUser), Shell: "/bin/bash", CreateHome: true},
	}
	for _, u := range users {
		_, _, err := env.Sys.LookupUser(u.Name)
		switch {
		case err == nil:
			continue
		case !errors.Is(err, agent.ErrNoUser):
			return res, err
		case env.DryRun:
			res.Changes = append(res.Changes, "would create user "+u.Name)
			continue
		}
		if _, err := env.Sys.EnsureUser(ctx, u); err != nil {
			return res, fmt.Errorf("create user %s: %w", u.Name, err)
		}
		res.Changes = append(res.Changes, "created user "+u.Name)
	}
	o, err := serviceOwner(env, false)
	if err != nil {
		return res, err
	}
	if _, err := env.EnsureDir(&res, s.StateDir, 0o750, o); err != nil {
		return res, err
	}

	if !env.DryRun {
		installed, skipped, err := env.Sys.InstallPackage(ctx, "ec2-instance-connect")
		if err != nil {
			return res, err
		}
		if installed {
			res.Changes = append(res.Changes, "installed ec2-instance-connect")
		}
		if skipped != "" {
			res.Detail["ec2-instance-connect"] = "skipped: " + skipped
		}
	}
	changed, err := env.WriteFile(&res, SSHDDropIn, []byte(SSHDConfig), 0o644, mustRoot(env))
	if err != nil {
		return res, err
	}
	if changed && !env.DryRun {
		if !env.Sys.Sandbox() {
			if _, err := env.Sys.Run(ctx, "", nil, "sshd", "-t"); err != nil {
				return res, fmt.Errorf("sshd rejects %s, fix it before the next login: %w", SSHDDropIn, err)
			}
		}
		// Ubuntu names the unit ssh; reload keeps open sessions.
		if err := env.Sys.Systemctl(ctx, "reload", "ssh"); err != nil {
			return res, err
		}
		res.Changes = append(res.Changes, "reloaded sshd")
	}
	if len(res.Detail) == 0 {
		res.Detail = nil
	}
	return res, nil
}

func mustRoot(env *agent.Env) ownerT {
	o, _ := env.Owner("", "")
	return o
}
