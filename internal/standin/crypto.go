package standin

import (
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"golang.org/x/crypto/sha3"
)

// b64url is base64 URL_SAFE_NO_PAD as the base64 0.22 crate decodes it:
// padding and non-zero trailing bits are errors.
var b64url = base64.RawURLEncoding.Strict()

var oidECPublicKey = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}

// ecPEMKey is jsonwebtoken 9's DecodingKey::from_ec_pem (the signer's
// load_broker_pubkey, mockMain): the first PEM block, tagged PUBLIC KEY or
// CERTIFICATE, whose key algorithm is id-ecPublicKey; the point's bytes are
// kept unchecked (the curve and point are only checked when a token is
// verified, so a key on another curve loads and then fails every request).
// pub is nil when the point is not a P-256 point.
func ecPEMKey(b []byte) (*ecdsa.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("InvalidKeyFormat: no PEM block")
	}
	var spkiDER []byte
	switch blk.Type {
	case "PUBLIC KEY":
		spkiDER = blk.Bytes
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, errors.New("InvalidKeyFormat")
		}
		spkiDER = c.RawSubjectPublicKeyInfo
	default:
		return nil, errors.New("InvalidKeyFormat")
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(spkiDER, &spki); err != nil {
		return nil, errors.New("InvalidKeyFormat")
	}
	if !spki.Algorithm.Algorithm.Equal(oidECPublicKey) {
		return nil, errors.New("InvalidKeyFormat")
	}
	pk, err := ecdh.P256().NewPublicKey(spki.PublicKey.Bytes)
	if err != nil {
		return nil, nil // loads; every verification fails
	}
	raw := pk.Bytes() // 0x04 || X || Y
	return &ecdsa.PublicKey{Curve: elliptic.P256(), X: new(big.Int).SetBytes(raw[1:33]), Y: new(big.Int).SetBytes(raw[33:])}, nil
}

var randReader = rand.Reader

// verifyES256 checks a 64-byte r||s P-256 signature over sha256(msg).
func verifyES256(pub *ecdsa.PublicKey, msg, sig []byte) bool {
	if pub == nil || len(sig) != 64 {
		return false
	}
	h := sha256.Sum256(msg)
	r, s := new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])
	return ecdsa.Verify(pub, h[:], r, s)
}

// sessionClaims is what the signer's verify_session_jwt_claims keeps
// (devKeys SessionClaims/AgentKeysClaims).
type sessionClaims struct {
	Exp       uint64
	OmniAcct  string
	ParentOmn *string
}

// verifySessionJWT is jsonwebtoken 9's decode with the signer's Validation
// (devKeys): ES256 only, signature, then the claims struct, then exp (60 s
// leeway) and aud "agentkeys:broker", both required; iss and nbf are not
// checked.
func verifySessionJWT(pub *ecdsa.PublicKey, token string, now time.Time) (*sessionClaims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("InvalidToken")
	}
	hb, err := b64url.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("Base64(%v)", err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, fmt.Errorf("Json(%v)", err)
	}
	if hdr.Alg != "ES256" {
		return nil, errors.New("InvalidAlgorithm")
	}
	sig, err := b64url.DecodeString(parts[2])
	if err != nil || !verifyES256(pub, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errors.New("InvalidSignature")
	}
	pb, err := b64url.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("Base64(%v)", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(pb, &raw); err != nil || raw == nil {
		return nil, errors.New("Json(claims are not an object)")
	}
	var c sessionClaims
	var ak map[string]json.RawMessage
	if err := decodeFields(raw, field{name: "exp", dst: &c.Exp}, field{name: "agentkeys", dst: &ak}); err != nil {
		return nil, fmt.Errorf("Json(%v)", err)
	}
	if err := decodeFields(ak, field{name: "omni_account", dst: &c.OmniAcct}, field{name: "parent_omni", dst: &c.ParentOmn, optional: true}); err != nil {
		return nil, fmt.Errorf("Json(%v)", err)
	}
	aud, ok := raw["aud"]
	if !ok {
		return nil, errors.New(`MissingRequiredClaim("aud")`)
	}
	if n := now.Unix() - 60; n > 0 && c.Exp < uint64(n) {
		return nil, errors.New("ExpiredSignature")
	}
	var one string
	var many []string
	switch {
	case json.Unmarshal(aud, &one) == nil:
		many = []string{one}
	case json.Unmarshal(aud, &many) == nil:
	default:
		return nil, errors.New(`InvalidClaimFormat("aud")`)
	}
	for _, a := range many {
		if a == "agentkeys:broker" {
			return &c, nil
		}
	}
	return nil, errors.New("InvalidAudience")
}

// SignSessionJWT mints an ES256 JWT with claims, as the broker signs
// session tokens (jwt/issue.rs): for tests of the signer's bearer check.
func SignSessionJWT(k *ecdsa.PrivateKey, kid string, claims any) (string, error) {
	h, _ := json.Marshal(map[string]string{"alg": "ES256", "typ": "JWT", "kid": kid})
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	sig, err := signP256(k, sha256Sum([]byte(in)))
	if err != nil {
		return "", err
	}
	return in + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func sha256Sum(b []byte) []byte { h := sha256.Sum256(b); return h[:] }

func signP256(k *ecdsa.PrivateKey, hash []byte) ([]byte, error) {
	r, s, err := ecdsa.Sign(randReader, k, hash)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 64)
	r.FillBytes(out[:32])
	s.FillBytes(out[32:])
	return out, nil
}

func keccak256(b ...[]byte) []byte {
	h := sha3.NewLegacyKeccak256()
	for _, x := range b {
		h.Write(x)
	}
	return h.Sum(nil)
}
