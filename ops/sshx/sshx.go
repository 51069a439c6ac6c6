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
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
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
}

// FindBroker looks the broker up by its EIP tag, falling back to the
// configured instance id and address when the tag finds nothing.
func FindBroker(ctx context.Context, c *ec2.Client, n naming.Names, cfgInstance, cfgEIP string) (Broker, error) {
	b := Broker{InstanceID: cfgInstance, PublicIP: cfgEIP}
	out, err := c.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []ec2types.Filter{{Name: aws.String("tag:Name"), Values: []string{n.EIPTag}}}})
	if err != nil {
		if b.PublicIP != "" && b.InstanceID != "" {
			return b, nil
		}
		return b, fmt.Errorf("looking up the EIP tagged %s: %v", n.EIPTag, err)
	}
	switch len(out.Addresses) {
	case 0:
	case 1:
		a := out.Addresses[0]
		b.PublicIP = aws.ToString(a.PublicIp)
		if id := aws.ToString(a.InstanceId); id != "" {
			if b.InstanceID != "" && b.InstanceID != id {
				return b, fmt.Errorf("EIP %s (tag %s) is attached to %s but agentkeys:instanceId is %s; fix the config or re-run pulumi up", b.PublicIP, n.EIPTag, id, b.InstanceID)
			}
			b.InstanceID = id
		}
	default:
		return b, fmt.Errorf("%d EIPs carry the tag %s; exactly one must", len(out.Addresses), n.EIPTag)
	}
	if b.PublicIP == "" {
		return b, fmt.Errorf("no EIP tagged %s and no agentkeys:eipAddress: is the stack deployed?", n.EIPTag)
	}
	if b.InstanceID == "" {
		return b, fmt.Errorf("EIP %s is not attached and no agentkeys:instanceId is set", b.PublicIP)
	}
	return b, nil
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
		return fmt.Errorf("EC2 Instance Connect push to %s as %s: %v (is the stack's SSH-user profile configured? try --fallback)", instanceID, osUser, err)
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
