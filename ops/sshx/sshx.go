// Package sshx opens SSH sessions on a stack's broker the way ssh-broker.sh
// does: EC2 Instance Connect (a one-time ed25519 key pushed with the stack's
// SSH-user credentials, then ssh as agentkey) or the .pem fallback as ubuntu.
package sshx

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2instanceconnect"
	"golang.org/x/crypto/ssh"

	"github.com/agentkeys/agentkeys-infra/naming"
)

// InstanceConnectUser is the login the host agent creates for Instance Connect.
const InstanceConnectUser = "agentkey"

// FallbackUser is the image's default login, used with the operator's .pem.
const FallbackUser = "ubuntu"

// DefaultProfile is the AWS profile holding the stack's SSH-user key (§0 table).
func DefaultProfile(n naming.Names) string { return n.SSHUser }

// Broker is where a stack's broker is.
type Broker struct {
	InstanceID string
	PublicIP   string
	Source     string // where PublicIP was read
}

// InstanceAPI is the one EC2 call Locate may make; `aws ec2-instance-connect
// ssh` makes the same one, so the stack's SSH-user profile suffices.
type InstanceAPI interface {
	DescribeInstances(context.Context, *ec2.DescribeInstancesInput, ...func(*ec2.Options)) (*ec2.DescribeInstancesOutput, error)
}

// Locate finds the broker with nothing but the stack's own facts: the
// instance from agentkeys:instanceId, the address from the stack output
// eip, else agentkeys:eipAddress, else the instance's public address
// (DescribeInstances with ec, which may be nil).
func Locate(ctx context.Context, ec InstanceAPI, n naming.Names, instanceID, outputEIP, configEIP string) (Broker, error) {
	b := Broker{InstanceID: instanceID}
	if instanceID == "" {
		return b, fmt.Errorf("stack %s has no agentkeys:instanceId: pulumi config set agentkeys:instanceId i-… --stack %s", n.Stack.Name, n.Stack.Name)
	}
	switch {
	case outputEIP != "":
		b.PublicIP, b.Source = outputEIP, "stack output eip"
		return b, nil
	case configEIP != "":
		b.PublicIP, b.Source = configEIP, "agentkeys:eipAddress"
		return b, nil
	case ec == nil:
		return b, fmt.Errorf("no address for %s: no stack output eip, no agentkeys:eipAddress; pass --host", instanceID)
	}
	out, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{instanceID}})
	if err != nil {
		return b, fmt.Errorf("looking up %s's address: %v (no stack output eip and no agentkeys:eipAddress: set one, or pass --host)", instanceID, err)
	}
	for _, r := range out.Reservations {
		for _, in := range r.Instances {
			if ip := aws.ToString(in.PublicIpAddress); ip != "" {
				b.PublicIP, b.Source = ip, "DescribeInstances "+instanceID
				return b, nil
			}
			state := ""
			if in.State != nil {
				state = string(in.State.Name)
			}
			return b, fmt.Errorf("instance %s (%s) has no public address: is it running with its EIP? `pulumi up --stack %s` associates it", instanceID, state, n.Stack.Name)
		}
	}
	return b, fmt.Errorf("instance %s not found in %s: check agentkeys:instanceId and aws:region", instanceID, n.Region)
}

// OneTimeKey writes a fresh ed25519 private key (0600) into dir and returns
// its path and authorized_keys line.
func OneTimeKey(dir string) (keyFile, authorized string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "agentkeys one-time instance connect key")
	if err != nil {
		return "", "", err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	keyFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", "", err
	}
	return keyFile, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), nil
}

// Push sends the public key for osUser to the instance (valid 60 seconds).
func Push(ctx context.Context, c *ec2instanceconnect.Client, instanceID, osUser, authorized string) error {
	out, err := c.SendSSHPublicKey(ctx, &ec2instanceconnect.SendSSHPublicKeyInput{
		InstanceId:     aws.String(instanceID),
		InstanceOSUser: aws.String(osUser),
		SSHPublicKey:   aws.String(authorized),
	})
	if err != nil {
		return fmt.Errorf("EC2 Instance Connect push to %s as %s: %v (does the stack's SSH-user profile exist in ~/.aws/credentials? `pulumi stack output --show-secrets credentials --stack <stack>` prints it; or try --fallback)", instanceID, osUser, err)
	}
	if !out.Success {
		return fmt.Errorf("EC2 Instance Connect refused the key for %s", instanceID)
	}
	return nil
}

// Args builds the ssh command line. The key is the only identity offered, so
// an agent full of keys cannot exhaust the server's MaxAuthTries first.
func Args(keyFile, user, host string, port int, opts, remote []string) []string {
	a := []string{"-i", keyFile, "-o", "IdentitiesOnly=yes"}
	if port != 0 && port != 22 {
		a = append(a, "-p", strconv.Itoa(port))
	}
	for _, o := range opts {
		a = append(a, "-o", o)
	}
	// "--" keeps a destination or command starting with '-' from reading as an option.
	a = append(a, "--", user+"@"+host)
	return append(a, remote...)
}
