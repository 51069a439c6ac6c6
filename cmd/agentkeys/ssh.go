package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"github.com/spf13/cobra"

	"github.com/agentkeys/agentkeys-infra/ops/awsx"
	"github.com/agentkeys/agentkeys-infra/ops/sshx"
)

func (a *app) sshCmd() *cobra.Command {
	var (
		fallback         bool
		keyFile, profile string
		user, host       string
		port             int
		opts             []string
		stackFlag        string
	)
	c := &cobra.Command{
		Use:   "ssh <stack>|--stack X [-- command...]",
		Short: "Open a shell on the stack's broker via EC2 Instance Connect (or --fallback: .pem key as ubuntu)",
		Long: "Needs only the stack's SSH-user profile (agentkeys-broker<sfx>): the instance is agentkeys:instanceId, the\n" +
			"address the stack output eip, else agentkeys:eipAddress, else the instance's public address (DescribeInstances\n" +
			"with that profile). Pushes a one-time ed25519 key (SendSSHPublicKey) and runs ssh agentkey@<EIP>.\n" +
			"--fallback skips the push and uses --key as ubuntu.",
		RunE: func(cmd *cobra.Command, args []string) error {
			stack, remote := stackFlag, args
			if stack == "" && len(args) > 0 {
				stack, remote = args[0], args[1:]
			}
			t, err := a.loadStack(stack)
			if err != nil {
				return err
			}
			if fallback && keyFile == "" {
				return fail(exitUsage, "--fallback needs --key FILE (the operator's .pem for the ubuntu user)")
			}
			if keyFile != "" {
				if _, err := os.Stat(keyFile); err != nil {
					return fail(exitUsage, "--key: %v", err)
				}
			}
			ctx := cmd.Context()
			// Every AWS call uses the stack's SSH-user profile only, as
			// ssh-broker.sh does: the address comes from the stack output
			// eip or the config, else from DescribeInstances with that
			// profile; the push is SendSSHPublicKey with it.
			if profile == "" {
				profile = sshx.DefaultProfile(t.Names)
			}
			var ec sshx.InstanceAPI
			cfg, cfgErr := awsx.Load(ctx, t.Names.Region, profile)
			if cfgErr == nil {
				ec = ec2.NewFromConfig(cfg)
			}
			b := sshx.Broker{InstanceID: t.InstanceID, PublicIP: host, Source: "--host"}
			if host == "" {
				if b, err = sshx.Locate(ctx, ec, t.Names, t.InstanceID, a.outputs(ctx, t.Names.Stack.Name).String("eip"), t.EIP); err != nil {
					if cfgErr != nil {
						return fail(exitFail, "%v; and %v", err, cfgErr)
					}
					return fail(exitFail, "%v", err)
				}
			}
			if fallback {
				if user == "" {
					user = sshx.FallbackUser
				}
				fmt.Fprintf(a.errOut, "agentkeys: %s: fallback ssh %s@%s (%s) with %s\n", stack, user, b.PublicIP, b.Source, keyFile)
				return a.execSSH(cmd, sshx.Args(keyFile, user, b.PublicIP, port, opts, remote))
			}
			if user == "" {
				user = sshx.InstanceConnectUser
			}
			if b.InstanceID == "" {
				return fail(exitUsage, "stack %s has no agentkeys:instanceId to push the key to", stack)
			}
			if cfgErr != nil {
				return fail(exitFail, "%v", cfgErr)
			}
			dir, err := os.MkdirTemp("", "agentkeys-ssh-")
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			defer os.RemoveAll(dir)
			key, pub := keyFile, ""
			if key == "" {
				if key, pub, err = sshx.OneTimeKey(dir); err != nil {
					return fail(exitFail, "one-time key: %v", err)
				}
			} else if pub, err = publicOf(keyFile); err != nil {
				return fail(exitUsage, "--key %s: %v", keyFile, err)
			}
			if err := sshx.Push(ctx, ec2instanceconnect.NewFromConfig(cfg), b.InstanceID, user, pub); err != nil {
				return fail(exitFail, "%v", err)
			}
			fmt.Fprintf(a.errOut, "agentkeys: %s: key pushed to %s with profile %s (valid 60s); ssh %s@%s (%s)\n", stack, b.InstanceID, profile, user, b.PublicIP, b.Source)
			return a.execSSH(cmd, sshx.Args(key, user, b.PublicIP, port, opts, remote))
		},
	}
	f := c.Flags()
	f.StringVar(&stackFlag, "stack", "", "stack name (or give it as the first argument)")
	f.BoolVar(&fallback, "fallback", false, "skip Instance Connect: use --key as ubuntu")
	f.StringVar(&keyFile, "key", "", "private key file (--fallback: the .pem; otherwise push this key's public half instead of a one-time key)")
	f.StringVar(&profile, "profile", "", "AWS profile for every AWS call (default agentkeys-broker<sfx>, the stack's SSH user)")
	f.StringVar(&user, "user", "", "login user (default agentkey, or ubuntu with --fallback)")
	f.StringVar(&host, "host", "", "connect to this address instead of the stack's EIP")
	f.IntVar(&port, "port", 22, "ssh port")
	f.StringArrayVarP(&opts, "ssh-option", "o", nil, "extra ssh -o option (repeatable)")
	return c
}

// execSSH runs ssh attached to the terminal and returns its exit status.
func (a *app) execSSH(cmd *cobra.Command, args []string) error {
	x := exec.CommandContext(cmd.Context(), a.deps.sshBin, args...)
	x.Stdin, x.Stdout, x.Stderr = cmd.InOrStdin(), a.out, a.errOut
	err := x.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &exitError{code: ee.ExitCode(), err: fmt.Errorf("ssh exited with status %d", ee.ExitCode())}
	}
	if err != nil {
		return fail(exitFail, "running %s: %v", a.deps.sshBin, err)
	}
	return nil
}
