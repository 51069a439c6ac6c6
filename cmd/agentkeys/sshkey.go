package main

import (
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// publicOf reads an unencrypted private key file and returns its public key
// in authorized_keys form.
func publicOf(keyFile string) (string, error) {
	b, err := os.ReadFile(keyFile)
	if err != nil {
		return "", err
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))), nil
}
