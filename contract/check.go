package contract

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Value checks: each rejects exactly what the binary that reads the value
// rejects (the Var that uses it cites where).

// CheckMasterSecret is dev_key_service's from_optional_secret_hex: a
// lowercase "0x" prefix is stripped, the rest must be hex of exactly 32
// bytes; no whitespace is trimmed. Empty means "disabled" to the binary; the
// deployment always sets it, so empty is an error here.
func CheckMasterSecret(v string) error {
	if v == "" {
		return errors.New("is empty (the signer would start with /dev/* disabled: 503 signer_disabled)")
	}
	for strings.HasPrefix(v, "0x") { // trim_start_matches strips every repeat
		v = v[2:]
	}
	raw, err := hex.DecodeString(v)
	if err != nil {
		return errors.New("is not valid hex (the backend and signer exit 2: FATAL: invalid DEV_KEY_SERVICE_MASTER_SECRET)")
	}
	if len(raw) != 32 {
		return fmt.Errorf("decodes to %d bytes, not 32 (the backend and signer exit 2)", len(raw))
	}
	return nil
}

// CheckKEK is the workers' KEK rule: exactly 64 hex characters (a 0x prefix
// fails the length check), not all zero bytes, not one byte repeated.
func CheckKEK(v string) error {
	if len(v) != 64 {
		return fmt.Errorf("is %d characters, not 64 hex (the worker exits 1)", len(v))
	}
	b, err := hex.DecodeString(v)
	if err != nil {
		return errors.New("is not valid hex (the worker exits 1)")
	}
	same := true
	for _, x := range b {
		if x != b[0] {
			same = false
			break
		}
	}
	if same {
		return fmt.Errorf("is one byte (0x%02x) repeated, which the worker rejects as a placeholder (exit 1)", b[0])
	}
	return nil
}

// CheckSPKIP256 is what p256::PublicKey::from_public_key_pem accepts: one
// "PUBLIC KEY" PEM block holding a P-256 key.
func CheckSPKIP256(v string) error {
	_, err := ParseSPKIP256([]byte(v))
	return err
}

// ParseSPKIP256 parses an SPKI "PUBLIC KEY" PEM holding a P-256 key.
func ParseSPKIP256(b []byte) (*ecdsa.PublicKey, error) {
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, errors.New("is not a PEM \"PUBLIC KEY\" block")
	}
	if strings.TrimSpace(string(rest)) != "" {
		return nil, errors.New("has data after the PEM block")
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("does not parse as SPKI: %v", err)
	}
	ek, ok := k.(*ecdsa.PublicKey)
	if !ok || ek.Curve != elliptic.P256() {
		return nil, errors.New("is not a P-256 public key")
	}
	return ek, nil
}

// CheckSocketAddr is clap's SocketAddr: IP:port, never a hostname (the
// WORKER_BIND workers exit 2 on anything else).
func CheckSocketAddr(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || net.ParseIP(host) == nil || !isPort(port) {
		return fmt.Errorf("%q is not IP:port", v)
	}
	return nil
}

// CheckHostPort is a host:port a tokio TcpListener binds.
func CheckHostPort(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil || host == "" || !isPort(port) {
		return fmt.Errorf("%q is not host:port", v)
	}
	return nil
}

func isPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 0 && n <= 65535 && strconv.Itoa(n) == p
}

// CheckHTTPURL is an http(s) JSON-RPC endpoint. The binaries do not check
// the scheme at startup (a wss:// URL fails every chain call with 502), so
// the deployment refuses anything but http(s) before it is written.
func CheckHTTPURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http(s) URL (the chain RPC is JSON-RPC over HTTP; a wss:// URL fails every chain call with 502 chain_rpc)", v)
	}
	return nil
}

// CheckAddressOrEmpty is a 0x-prefixed 20-byte address; empty is allowed
// (the workers only check presence at startup: a chain whose contracts are
// not deployed yet runs healthz-green and chain-degraded, spec §0.4).
func CheckAddressOrEmpty(v string) error {
	if v == "" {
		return nil
	}
	if len(v) != 42 || !strings.HasPrefix(v, "0x") {
		return fmt.Errorf("%q is not a 0x-prefixed 20-byte address", v)
	}
	if _, err := hex.DecodeString(v[2:]); err != nil {
		return fmt.Errorf("%q is not a 0x-prefixed 20-byte address", v)
	}
	return nil
}

// CheckIssuer is BROKER_OIDC_ISSUER as the broker requires it outside dev
// mode: https, a host, no trailing slash.
func CheckIssuer(v string) error {
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Host == "" || strings.HasSuffix(v, "/") {
		return fmt.Errorf("%q is not https://<host> without a trailing slash (the broker refuses an http issuer, and keeps a trailing slash in iss and jwks_uri, which AWS then rejects)", v)
	}
	return nil
}

// CheckOneOf accepts exactly the listed values.
func CheckOneOf(vals ...string) func(string) error {
	return func(v string) error {
		for _, ok := range vals {
			if v == ok {
				return nil
			}
		}
		return fmt.Errorf("%q is not one of %s", v, strings.Join(vals, ", "))
	}
}

// CheckUint accepts a decimal integer.
func CheckUint(v string) error {
	if v == "" || strings.TrimLeft(v, "0123456789") != "" {
		return fmt.Errorf("%q is not a non-negative integer", v)
	}
	return nil
}

// CheckNonEmpty accepts any non-empty value.
func CheckNonEmpty(v string) error {
	if v == "" {
		return errors.New("is empty")
	}
	return nil
}

// CheckAuthMethods is BROKER_AUTH_METHODS as a broker built with the
// deployment's features accepts it (brokerBoot).
func CheckAuthMethods(v string) error {
	n := 0
	for _, m := range strings.Split(v, ",") {
		switch strings.TrimSpace(m) {
		case "":
		case "wallet_sig", "email_link":
			n++
		default:
			return fmt.Errorf("method %q is unknown or not compiled in (BOOT_FAIL)", m)
		}
	}
	if n == 0 {
		return errors.New("names no method (BOOT_FAIL auth-method-empty)")
	}
	return nil
}
