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
		Long: "Pushes a one-time ed25519 key with the stack's SSH-user credentials (AWS profile agentkeys-broker<sfx>)\n" +
			"and runs ssh agentkey@<EIP>. --fallback skips the push and uses --key as ubuntu.",
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
			// The lookup uses the operator's default credentials; the SSH user may only push keys.
			look, err := awsx.Load(ctx, t.Names.Region, "")
			if err != nil {
				return fail(exitFail, "%v", err)
			}
			b, err := sshx.FindBroker(ctx, ec2.NewFromConfig(look), t.Names, t.InstanceID, t.EIP)
			if err != nil && !(host != "" && b.InstanceID != "") {
				return fail(exitFail, "%v", err)
			}
			if host == "" {
				host = b.PublicIP
			}
			if fallback {
				if user == "" {
					user = sshx.FallbackUser
				}
				fmt.Fprintf(a.errOut, "agentkeys: %s: fallback ssh %s@%s with %s\n", stack, user, host, keyFile)
				return a.execSSH(cmd, sshx.Args(keyFile, user, host, port, opts, remote))
			}
			if user == "" {
				user = sshx.InstanceConnectUser
			}
			if profile == "" {
				profile = sshx.DefaultProfile(t.Names)
			}
			cfg, err := awsx.Load(ctx, t.Names.Region, profile)
			if err != nil {
				return fail(exitFail, "%v", err)
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
			fmt.Fprintf(a.errOut, "agentkeys: %s: key pushed to %s (valid 60s); ssh %s@%s\n", stack, b.InstanceID, user, host)
			return a.execSSH(cmd, sshx.Args(key, user, host, port, opts, remote))
		},
	}
	f := c.Flags()
	f.StringVar(&stackFlag, "stack", "", "stack name (or give it as the first argument)")
	f.BoolVar(&fallback, "fallback", false, "skip Instance Connect: use --key as ubuntu")
	f.StringVar(&keyFile, "key", "", "private key file (--fallback: the .pem; otherwise push this key's public half instead of a one-time key)")
	f.StringVar(&profile, "profile", "", "AWS profile for the push (default agentkeys-broker<sfx>)")
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
