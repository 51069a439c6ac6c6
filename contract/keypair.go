package contract

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// The broker's keypair file (brokerOIDC PersistedKeypair, brokerSession
// PersistedSessionKeypair, brokerPurpose KeypairPurpose): pretty JSON
// {"kid", "private_key_pem" (PKCS#8 "PRIVATE KEY", LF), "purpose"}, ES256
// on P-256, kid "v1-<unix secs>" (oidc) or "ak-session-<unix secs>"
// (session), mode 0600. `agentkeys-broker-server keygen` writes the same.

type keypairFile struct {
	Kid           string `json:"kid"`
	PrivateKeyPEM string `json:"private_key_pem"`
	Purpose       string `json:"purpose,omitempty"`
}

var kidPrefix = map[string]string{"oidc": "v1-", "session": "ak-session-"}

// MintKeypair creates a keypair file for purpose (oidc or session).
func MintKeypair(purpose string, now time.Time) ([]byte, error) {
	prefix, ok := kidPrefix[purpose]
	if !ok {
		return nil, fmt.Errorf("keypair purpose %q is not oidc or session", purpose)
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	f := keypairFile{
		Kid:           prefix + strconv.FormatInt(now.Unix(), 10),
		PrivateKeyPEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		Purpose:       purpose,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // serde_json does not escape <, >, &
	enc.SetIndent("", "  ")  // serde_json::to_string_pretty
	if err := enc.Encode(f); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ParsedKeypair is a loaded keypair file.
type ParsedKeypair struct {
	Kid     string
	Purpose string
	Key     *ecdsa.PrivateKey
}

// ParseKeypair loads a keypair file for slot (oidc or session) the way the
// broker's loaders do: the oidc slot accepts a missing purpose, the session
// slot does not; a purpose for the other slot is refused; the key must be a
// PKCS#8 P-256 private key (SEC1 "EC PRIVATE KEY" is refused).
func ParseKeypair(slot string, b []byte) (*ParsedKeypair, error) {
	if _, ok := kidPrefix[slot]; !ok {
		return nil, fmt.Errorf("keypair slot %q is not oidc or session", slot)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("is not a broker keypair file (JSON: %v)", err)
	}
	var f keypairFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("is not a broker keypair file (%v)", err)
	}
	if _, has := raw["private_key_pem"]; !has {
		return nil, errors.New(`has no "private_key_pem": not the broker's keypair format {"kid", "private_key_pem", "purpose"} (a JWK, from an earlier agent?)`)
	}
	if _, has := raw["kid"]; !has || f.Kid == "" {
		return nil, errors.New("has no kid")
	}
	_, hasPurpose := raw["purpose"]
	switch {
	case !hasPurpose && slot == "session":
		return nil, errors.New(`has no "purpose" (the broker's session loader requires "session")`)
	case !hasPurpose:
		f.Purpose = "oidc"
	case f.Purpose != "oidc" && f.Purpose != "session":
		return nil, fmt.Errorf("has purpose %q, not oidc or session", f.Purpose)
	case f.Purpose != slot:
		return nil, fmt.Errorf("has purpose %q but is the %s keypair", f.Purpose, slot)
	}
	blk, _ := pem.Decode([]byte(f.PrivateKeyPEM))
	if blk == nil {
		return nil, errors.New("private_key_pem is not PEM")
	}
	if blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("private_key_pem is a %q block; the broker loads only PKCS#8 \"PRIVATE KEY\"", blk.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("private_key_pem does not parse as PKCS#8: %v", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("private_key_pem is not a P-256 (ES256) key")
	}
	return &ParsedKeypair{Kid: f.Kid, Purpose: f.Purpose, Key: ek}, nil
}

// PublicPEM is the SPKI "PUBLIC KEY" PEM the broker exports for the session
// key (to_public_key_pem, LF): what the signer and the workers load.
func PublicPEM(k *ecdsa.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}
