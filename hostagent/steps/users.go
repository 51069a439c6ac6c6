package steps

import (
	"context"
	"errors"
	"fmt"
	"path"

	"github.com/agentkeys/agentkeys-infra/hostagent/agent"
	"github.com/agentkeys/agentkeys-infra/hostagent/fsx"
)

// Users ensures the agentkeys system user and its state dir, the agentkey
// login user, and EC2 Instance Connect wired into sshd for that user. A new
// sshd drop-in is validated before it goes live (sshd -t on a staged main
// config that includes it ahead of the live one); the reload it calls for
// is recorded in the intent journal first, so a run killed before the
// reload leaves it owed to the next run.
type Users struct {
	// SSHDTest validates sshd's configuration read from mainConfig (a host
	// path). nil: SSHDTestCommand on a real host, nothing in the sandbox.
	SSHDTest func(ctx context.Context, env *agent.Env, mainConfig string) error
}

// SSHDMainConfig is sshd's main configuration file.
const SSHDMainConfig = "/etc/ssh/sshd_config"

// SSHDTestCommand runs sshd -t -f mainConfig.
func SSHDTestCommand(ctx context.Context, env *agent.Env, mainConfig string) error {
	_, err := env.Sys.Run(ctx, "", nil, "sshd", "-t", "-f", env.Path(mainConfig))
	return err
}

func (Users) Name() string { return "users" }

// SSHDConfig is the drop-in naming EC2 Instance Connect's key command. The
// ec2-instance-connect package adds its own only when none is set, so this
// one is authoritative.
const SSHDConfig = `# Managed by agentkeys-hostagent: EC2 Instance Connect keys for SSH logins.
AuthorizedKeysCommand ` + EICCommand + ` %u %f
AuthorizedKeysCommandUser ` + EICUser + `
`

func (step Users) Run(ctx context.Context, env *agent.Env) (agent.Result, error) {
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
	if err := step.sshdDropIn(ctx, env, &res); err != nil {
		return res, err
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

// sshdDropIn converges the EC2 Instance Connect drop-in and reloads sshd
// when it changed, or when an interrupted run still owes the reload.
func (u Users) sshdDropIn(ctx context.Context, env *agent.Env, res *agent.Result) error {
	root := mustRoot(env)
	data := []byte(SSHDConfig)
	differs, err := env.Differs(SSHDDropIn, data, 0o644, root)
	if err != nil {
		return err
	}
	owed, err := env.IsPending(agent.ActionReloadSSHD)
	if err != nil {
		return err
	}
	if !differs && !owed {
		return nil
	}
	if env.DryRun {
		if differs {
			res.Changes = append(res.Changes, "would write "+SSHDDropIn)
		}
		res.Changes = append(res.Changes, "would reload sshd")
		return nil
	}
	if differs {
		if err := u.validate(ctx, env, data); err != nil {
			return err
		}
		if err := env.Intend(agent.ActionReloadSSHD); err != nil {
			return err
		}
		if _, err := env.WriteFile(res, SSHDDropIn, data, 0o644, root); err != nil {
			return err
		}
	}
	fsx.Fault("users:before-sshd-reload")
	if !env.Sys.Sandbox() {
		if _, err := env.Sys.Run(ctx, "", nil, "sshd", "-t"); err != nil {
			return fmt.Errorf("sshd rejects its configuration, fix it before the next login (the reload is left owed to the next run): %w", err)
		}
	}
	// Ubuntu names the unit ssh; reload keeps open sessions.
	if err := env.Sys.Systemctl(ctx, "reload", "ssh"); err != nil {
		return err
	}
	if err := env.Done(agent.ActionReloadSSHD); err != nil {
		return err
	}
	if differs {
		res.Changes = append(res.Changes, "reloaded sshd")
	} else {
		res.Changes = append(res.Changes, "reloaded sshd (owed by an interrupted run)")
	}
	return nil
}

// validate runs the sshd test on a staged copy of the new drop-in, included
// ahead of the live configuration by a staged main config; neither name
// matches sshd's *.conf include, so nothing staged is ever live.
func (u Users) validate(ctx context.Context, env *agent.Env, data []byte) error {
	test := u.SSHDTest
	if test == nil {
		if env.Sys.Sandbox() {
			return nil
		}
		test = SSHDTestCommand
	}
	staged, main := SSHDDropIn+".staged", SSHDDropIn+".staged-main"
	defer fsx.RemoveFile(env.Root, staged)
	defer fsx.RemoveFile(env.Root, main)
	root := mustRoot(env)
	if _, err := fsx.WriteFileAtomic(env.Root, staged, data, 0o644, root); err != nil {
		return err
	}
	cfg := fmt.Sprintf("# agentkeys-hostagent: validates %s before it goes live.\nInclude %s\nInclude %s\n", SSHDDropIn, env.Path(staged), env.Path(SSHDMainConfig))
	if _, err := fsx.WriteFileAtomic(env.Root, main, []byte(cfg), 0o644, root); err != nil {
		return err
	}
	if err := test(ctx, env, main); err != nil {
		return fmt.Errorf("sshd rejects the new %s, which is not installed (the live sshd configuration is unchanged): %w", SSHDDropIn, err)
	}
	return nil
}
