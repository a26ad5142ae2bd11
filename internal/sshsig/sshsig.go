// Package sshsig makes and checks OpenSSH SSHSIG signatures: the armored
// detached signatures of `ssh-keygen -Y sign` and `ssh-keygen -Y verify`,
// as described in OpenSSH's PROTOCOL.sshsig.
//
// Only plain ssh-ed25519, ecdsa-sha2-nistp256/384/521 and ssh-rsa keys
// (2048 bits or more) are supported, on both sides. Certificates,
// security-key (sk-*) and DSA keys are refused, as are passphrase-protected
// private keys: this package never prompts and does not talk to ssh-agent.
package sshsig

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/ssh"
)

const (
	magic      = "SSHSIG"
	sigVersion = 1

	armorBegin = "-----BEGIN SSH SIGNATURE-----"
	armorEnd   = "-----END SSH SIGNATURE-----"
	// armorWidth is what ssh-keygen writes; readers ignore line breaks, so
	// this only keeps our output identical to ssh-keygen's.
	armorWidth = 70
	// maxArmored bounds the input Verify reads. A signature with a
	// 16384-bit RSA key armors to under 6 KiB.
	maxArmored = 64 << 10

	// hashSign is the message hash Sign uses, as ssh-keygen does.
	hashSign = "sha512"

	// minRSABits refuses RSA keys too short to trust with production
	// approvals (ssh-keygen itself still accepts 1024).
	minRSABits = 2048
)

// supportedKeyType reports whether t is a key type this package signs with
// and accepts in allowed_signers files and signatures.
func supportedKeyType(t string) bool {
	switch t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521, ssh.KeyAlgoRSA:
		return true
	}
	return false
}

const supportedKeyTypes = "ssh-ed25519, ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, ssh-rsa"

// checkKey refuses a public key this package does not support.
func checkKey(k ssh.PublicKey) error {
	if !supportedKeyType(k.Type()) {
		return fmt.Errorf("key type %q is not supported (only %s)", k.Type(), supportedKeyTypes)
	}
	if k.Type() == ssh.KeyAlgoRSA {
		ck, ok := k.(ssh.CryptoPublicKey)
		if !ok {
			return errors.New("cannot read RSA key size")
		}
		rk, ok := ck.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return errors.New("cannot read RSA key size")
		}
		if n := rk.N.BitLen(); n < minRSABits {
			return fmt.Errorf("RSA key has %d bits, at least %d are required", n, minRSABits)
		}
	}
	return nil
}

// Sign signs message in namespace with the unencrypted private key in
// privateKeyPEM (OpenSSH, PKCS#1, PKCS#8 or SEC1 PEM) and returns the
// armored signature that `ssh-keygen -Y verify` accepts. The message is
// hashed with sha512; RSA keys sign with rsa-sha2-512.
func Sign(privateKeyPEM []byte, namespace string, message []byte) ([]byte, error) {
	if namespace == "" {
		return nil, errors.New("sshsig: empty namespace")
	}
	raw, err := ssh.ParseRawPrivateKey(privateKeyPEM)
	if err != nil {
		var pm *ssh.PassphraseMissingError
		if errors.As(err, &pm) {
			return nil, errors.New("sshsig: the private key is protected by a passphrase: decrypt it or use ssh-agent")
		}
		return nil, fmt.Errorf("sshsig: reading private key: %w", err)
	}
	signer, err := ssh.NewSignerFromKey(raw)
	if err != nil {
		return nil, fmt.Errorf("sshsig: private key: %w", err)
	}
	pub := signer.PublicKey()
	if err := checkKey(pub); err != nil {
		return nil, fmt.Errorf("sshsig: private key: %w", err)
	}

	data := signedData(namespace, hashSign, digest(hashSign, message))
	var sig *ssh.Signature
	if pub.Type() == ssh.KeyAlgoRSA {
		// The default for RSA would be SHA-1 ("ssh-rsa"), which
		// PROTOCOL.sshsig forbids.
		as, ok := signer.(ssh.AlgorithmSigner)
		if !ok {
			return nil, errors.New("sshsig: RSA signer cannot choose rsa-sha2-512")
		}
		sig, err = as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
	} else {
		sig, err = signer.Sign(rand.Reader, data)
	}
	if err != nil {
		return nil, fmt.Errorf("sshsig: signing: %w", err)
	}
	s := &signature{key: pub, namespace: namespace, hashAlg: hashSign, sig: sig}
	return armor(s.marshal()), nil
}

// signature is a parsed SSHSIG blob.
type signature struct {
	key       ssh.PublicKey
	namespace string
	reserved  []byte // ignored, as PROTOCOL.sshsig asks; kept for marshal
	hashAlg   string
	sig       *ssh.Signature
}

// digest hashes message with alg, which must be sha256 or sha512.
func digest(alg string, message []byte) []byte {
	switch alg {
	case "sha256":
		h := sha256.Sum256(message)
		return h[:]
	case "sha512":
		h := sha512.Sum512(message)
		return h[:]
	}
	panic("sshsig: unchecked hash algorithm " + alg)
}

// signedData is the byte string the key signs (PROTOCOL.sshsig section 3).
// The reserved field is always empty here: that is what ssh-keygen signs
// and checks, whatever a blob's own reserved field holds.
func signedData(namespace, hashAlg string, hash []byte) []byte {
	var b []byte
	b = append(b, magic...)
	b = appendString(b, []byte(namespace))
	b = appendString(b, nil)
	b = appendString(b, []byte(hashAlg))
	b = appendString(b, hash)
	return b
}

func appendString(b, s []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

// marshal encodes s as a blob (PROTOCOL.sshsig section 2).
func (s *signature) marshal() []byte {
	var b []byte
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint32(b, sigVersion)
	b = appendString(b, s.key.Marshal())
	b = appendString(b, []byte(s.namespace))
	b = appendString(b, s.reserved)
	b = appendString(b, []byte(s.hashAlg))
	b = appendString(b, ssh.Marshal(s.sig))
	return b
}

// verify checks the signature over message; the caller checks the
// namespace and whether the key is allowed.
func (s *signature) verify(message []byte) error {
	if s.key.Type() == ssh.KeyAlgoRSA &&
		s.sig.Format != ssh.KeyAlgoRSASHA512 && s.sig.Format != ssh.KeyAlgoRSASHA256 {
		return fmt.Errorf("RSA signature algorithm %q is not allowed (only rsa-sha2-512, rsa-sha2-256)", s.sig.Format)
	}
	data := signedData(s.namespace, s.hashAlg, digest(s.hashAlg, message))
	if err := s.key.Verify(data, s.sig); err != nil {
		return fmt.Errorf("signature does not match the message: %w", err)
	}
	return nil
}

// armor wraps a blob the way ssh-keygen does.
func armor(blob []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(blob)
	var b bytes.Buffer
	b.WriteString(armorBegin + "\n")
	for len(enc) > armorWidth {
		b.WriteString(enc[:armorWidth] + "\n")
		enc = enc[armorWidth:]
	}
	b.WriteString(enc + "\n" + armorEnd + "\n")
	return b.Bytes()
}

// dearmor returns the blob inside an armored signature. Surrounding
// whitespace and CRLF line ends are accepted; anything else outside the
// markers is not, so a signature cannot smuggle extra text.
func dearmor(armored []byte) ([]byte, error) {
	if len(armored) > maxArmored {
		return nil, fmt.Errorf("armored signature is %d bytes, at most %d", len(armored), maxArmored)
	}
	s := strings.TrimSpace(strings.ReplaceAll(string(armored), "\r\n", "\n"))
	body, ok := strings.CutPrefix(s, armorBegin+"\n")
	if !ok {
		return nil, errors.New("armored signature does not start with " + armorBegin)
	}
	body, ok = strings.CutSuffix(body, "\n"+armorEnd)
	if !ok {
		if body == armorEnd {
			return nil, errors.New("armored signature is empty")
		}
		return nil, errors.New("armored signature does not end with " + armorEnd)
	}
	// StdEncoding skips the newlines; Strict refuses non-zero padding
	// bits, so one blob has one armor.
	blob, err := base64.StdEncoding.Strict().DecodeString(body)
	if err != nil {
		return nil, fmt.Errorf("armored signature: bad base64: %w", err)
	}
	return blob, nil
}

// reader reads SSH wire-format fields, remembering the first failure.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(field, msg string) {
	if r.err == nil {
		r.err = fmt.Errorf("signature blob: %s: %s", field, msg)
	}
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.fail(field, "truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uint32(field string) uint32 {
	v := r.take(field, 4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) string(field string) []byte {
	n := r.uint32(field)
	if r.err != nil {
		return nil
	}
	if uint64(n) > uint64(len(r.b)) {
		r.fail(field, "truncated")
		return nil
	}
	return r.take(field, int(n))
}

// parseBlob decodes and checks the structure of a blob; it does not verify
// the signature.
func parseBlob(blob []byte) (*signature, error) {
	r := &reader{b: blob}
	if m := r.take("magic", len(magic)); r.err == nil && string(m) != magic {
		return nil, errors.New("signature blob: does not start with SSHSIG")
	}
	if v := r.uint32("version"); r.err == nil && v != sigVersion {
		return nil, fmt.Errorf("signature blob: version %d is not supported (only %d)", v, sigVersion)
	}
	keyBytes := r.string("publickey")
	namespace := r.string("namespace")
	reserved := r.string("reserved")
	hashAlg := r.string("hash_algorithm")
	sigBytes := r.string("signature")
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("signature blob: %d bytes of trailing data", len(r.b))
	}

	key, err := ssh.ParsePublicKey(keyBytes)
	if err != nil {
		return nil, fmt.Errorf("signature blob: publickey: %w", err)
	}
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("signature blob: %w", err)
	}
	if len(namespace) == 0 {
		return nil, errors.New("signature blob: empty namespace")
	}
	switch string(hashAlg) {
	case "sha256", "sha512":
	default:
		return nil, fmt.Errorf("signature blob: hash algorithm %q is not supported (only sha256, sha512)", hashAlg)
	}
	sig := new(ssh.Signature)
	if err := ssh.Unmarshal(sigBytes, sig); err != nil {
		return nil, fmt.Errorf("signature blob: signature: %w", err)
	}
	if len(sig.Rest) != 0 {
		// Only security-key signatures carry more fields, and they are
		// not supported.
		return nil, errors.New("signature blob: signature: trailing data")
	}
	return &signature{
		key:       key,
		namespace: string(namespace),
		reserved:  reserved,
		hashAlg:   string(hashAlg),
		sig:       sig,
	}, nil
}

// parse dearmors and parses an armored signature.
func parse(armored []byte) (*signature, error) {
	blob, err := dearmor(armored)
	if err != nil {
		return nil, err
	}
	return parseBlob(blob)
}

// SignerKey returns the SHA256 fingerprint (as ssh-keygen -l prints it) of
// the public key that made an armored signature, without verifying it:
// callers compare the keys of signatures that Verify accepted.
func SignerKey(armored []byte) (string, error) {
	s, err := parse(armored)
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(s.key), nil
}
