package sshsig

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const ns = "backfill-approval"

var msg = []byte("plan 2026-12-01 tenant=acme rows=42\n")

// testKey is a private key with its PEM and its public half.
type testKey struct {
	name string
	priv crypto.Signer
	pem  []byte
	pub  ssh.PublicKey
}

// newTestKey fails only on a programming error, so it panics rather than
// needing a testing.TB (keys are also made outside any test).
func newTestKey(name string, priv crypto.Signer) testKey {
	blk, err := ssh.MarshalPrivateKey(priv, "test "+name)
	if err != nil {
		panic(err)
	}
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		panic(err)
	}
	return testKey{name: name, priv: priv, pem: pem.EncodeToMemory(blk), pub: pub}
}

// Keys are made once per test binary: RSA generation is slow.
var testKeys = sync.OnceValue(func() []testKey {
	ed := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		panic(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return []testKey{
		newTestKey("ed25519", ed),
		newTestKey("ecdsa-p256", p256),
		newTestKey("ecdsa-p384", p384),
		newTestKey("rsa-2048", rk),
	}
})

func keyByName(t testing.TB, name string) testKey {
	t.Helper()
	for _, k := range testKeys() {
		if k.name == name {
			return k
		}
	}
	t.Fatalf("no test key %q", name)
	return testKey{}
}

// line is an allowed_signers line for pub.
func line(principals, options string, pub ssh.PublicKey) string {
	s := principals + " "
	if options != "" {
		s += options + " "
	}
	return s + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " a comment\n"
}

func mustAllowed(t testing.TB, content string) *AllowedSigners {
	t.Helper()
	a, err := ParseAllowedSigners("allowed_signers", []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustSign(t testing.TB, k testKey, namespace string, message []byte) []byte {
	t.Helper()
	sig, err := Sign(k.pem, namespace, message)
	if err != nil {
		t.Fatalf("Sign with %s: %v", k.name, err)
	}
	return sig
}

func TestRoundTrip(t *testing.T) {
	for _, k := range testKeys() {
		t.Run(k.name, func(t *testing.T) {
			sig := mustSign(t, k, ns, msg)
			if !bytes.HasPrefix(sig, []byte(armorBegin+"\n")) || !bytes.HasSuffix(sig, []byte("\n"+armorEnd+"\n")) {
				t.Fatalf("not armored:\n%s", sig)
			}
			s, err := parse(sig)
			if err != nil {
				t.Fatal(err)
			}
			if s.hashAlg != "sha512" {
				t.Errorf("hash algorithm %q, want sha512", s.hashAlg)
			}
			if k.pub.Type() == ssh.KeyAlgoRSA && s.sig.Format != ssh.KeyAlgoRSASHA512 {
				t.Errorf("RSA signature format %q, want rsa-sha2-512", s.sig.Format)
			}
			a := mustAllowed(t, line("alice@example.com,bob", "", k.pub))
			got, err := a.Verify(sig, ns, msg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, " ") != "alice@example.com bob" {
				t.Errorf("principals %q", got)
			}
		})
	}
}

// TestSignKeyFormats signs with the older PEM encodings ssh-keygen -m PEM
// and other tools write.
func TestSignKeyFormats(t *testing.T) {
	ec := keyByName(t, "ecdsa-p256")
	der, err := x509.MarshalECPrivateKey(ec.priv.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	sec1 := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
	rk := keyByName(t, "rsa-2048")
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rk.priv.(*rsa.PrivateKey))})
	ed := keyByName(t, "ed25519")
	der, err = x509.MarshalPKCS8PrivateKey(ed.priv)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	for _, c := range []struct {
		name string
		pem  []byte
		pub  ssh.PublicKey
	}{{"sec1", sec1, ec.pub}, {"pkcs1", pkcs1, rk.pub}, {"pkcs8", pkcs8, ed.pub}} {
		t.Run(c.name, func(t *testing.T) {
			sig, err := Sign(c.pem, ns, msg)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := mustAllowed(t, line("alice", "", c.pub)).Verify(sig, ns, msg, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ed := keyByName(t, "ed25519")
	blk, err := ssh.MarshalPrivateKeyWithPassphrase(ed.priv, "enc", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	encrypted := pem.EncodeToMemory(blk)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallPEM := newTestKey("rsa-1024", small).pem

	for _, c := range []struct {
		name, ns string
		pem      []byte
		want     string
	}{
		{"encrypted", ns, encrypted, "decrypt it or use ssh-agent"},
		{"empty namespace", "", ed.pem, "empty namespace"},
		{"not a key", ns, []byte("hello"), "reading private key"},
		{"public key", ns, ssh.MarshalAuthorizedKey(ed.pub), "reading private key"},
		{"short RSA", ns, smallPEM, "1024 bits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sig, err := Sign(c.pem, c.ns, msg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v (signature %d bytes), want error with %q", err, len(sig), c.want)
			}
		})
	}
}

// rewrite parses sig, lets f change it, and armors it again without
// re-signing.
func rewrite(t *testing.T, sig []byte, f func(*signature)) []byte {
	t.Helper()
	s, err := parse(sig)
	if err != nil {
		t.Fatal(err)
	}
	f(s)
	return armor(s.marshal())
}

// rearmor lets f change the raw blob of sig.
func rearmor(t *testing.T, sig []byte, f func([]byte) []byte) []byte {
	t.Helper()
	blob, err := dearmor(sig)
	if err != nil {
		t.Fatal(err)
	}
	return armor(f(blob))
}

func TestVerifyRefuses(t *testing.T) {
	ed := keyByName(t, "ed25519")
	other := newTestKey("other", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)))
	rk := keyByName(t, "rsa-2048")
	good := mustSign(t, ed, ns, msg)
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	listed := mustAllowed(t, line("alice", "", ed.pub))

	// A legacy ssh-rsa (SHA-1) signature over the right data.
	rsaSigner, err := ssh.NewSignerFromKey(rk.priv)
	if err != nil {
		t.Fatal(err)
	}
	sha1Sig, err := rsaSigner.(ssh.AlgorithmSigner).SignWithAlgorithm(rand.Reader,
		signedData(ns, "sha512", digest("sha512", msg)), ssh.KeyAlgoRSA)
	if err != nil {
		t.Fatal(err)
	}
	legacyRSA := armor((&signature{key: rk.pub, namespace: ns, hashAlg: "sha512", sig: sha1Sig}).marshal())

	for _, c := range []struct {
		name    string
		allowed *AllowedSigners
		sig     []byte
		ns      string
		msg     []byte
		want    string
	}{
		{"wrong namespace", listed, good, "file", msg, `namespace "backfill-approval", not "file"`},
		{"empty namespace", listed, good, "", msg, "empty namespace"},
		{"altered message", listed, good, ns, []byte("plan 2026-12-01 tenant=acme rows=43\n"), "does not match"},
		{"empty message", listed, good, ns, nil, "does not match"},
		{"key not listed", mustAllowed(t, line("alice", "", other.pub)), good, ns, msg, "is not in allowed_signers"},
		{"other namespace only", mustAllowed(t, line("alice", `namespaces="other"`, ed.pub)), good, ns, msg,
			`allowed_signers:1: not for namespace "backfill-approval"`},
		{"excluded namespace", mustAllowed(t, line("alice", `namespaces="*,!backfill-*"`, ed.pub)), good, ns, msg, "not for namespace"},
		{"expired", mustAllowed(t, "# x\n"+line("alice", `valid-before="20261201115959Z"`, ed.pub)), good, ns, msg,
			"allowed_signers:2: expired at 2026-12-01T11:59:59Z"},
		{"not yet valid", mustAllowed(t, line("alice", `valid-after="20261202Z"`, ed.pub)), good, ns, msg, "not valid until 2026-12-02T00:00:00Z"},
		{"signed namespace changed", listed, rewrite(t, good, func(s *signature) { s.namespace = "file" }), "file", msg, "does not match"},
		{"hash algorithm changed", listed, rewrite(t, good, func(s *signature) { s.hashAlg = "sha256" }), ns, msg, "does not match"},
		{"key swapped", mustAllowed(t, line("alice", "", other.pub)), rewrite(t, good, func(s *signature) { s.key = other.pub }), ns, msg, "does not match"},
		{"sha1 hash", listed, rewrite(t, good, func(s *signature) { s.hashAlg = "sha1" }), ns, msg, `hash algorithm "sha1" is not supported`},
		{"legacy ssh-rsa signature", mustAllowed(t, line("alice", "", rk.pub)), legacyRSA, ns, msg, `RSA signature algorithm "ssh-rsa" is not allowed`},
		{"trailing signature data", listed, rewrite(t, good, func(s *signature) { s.sig.Rest = []byte{1} }), ns, msg, "signature: trailing data"},
		{"empty signed namespace", listed, rewrite(t, good, func(s *signature) { s.namespace = "" }), ns, msg, "empty namespace"},
		{"truncated blob", listed, rearmor(t, good, func(b []byte) []byte { return b[:len(b)-1] }), ns, msg, "signature: truncated"},
		{"truncated in magic", listed, rearmor(t, good, func(b []byte) []byte { return b[:3] }), ns, msg, "magic: truncated"},
		{"truncated length", listed, rearmor(t, good, func(b []byte) []byte { return b[:12] }), ns, msg, "publickey: truncated"},
		{"trailing blob data", listed, rearmor(t, good, func(b []byte) []byte { return append(b, 0) }), ns, msg, "1 bytes of trailing data"},
		{"bad magic", listed, rearmor(t, good, func(b []byte) []byte { b[0] = 'X'; return b }), ns, msg, "does not start with SSHSIG"},
		{"version 2", listed, rearmor(t, good, func(b []byte) []byte { b[9] = 2; return b }), ns, msg, "version 2 is not supported"},
		{"huge length", listed, rearmor(t, good, func(b []byte) []byte { b[10] = 0xff; return b }), ns, msg, "publickey: truncated"},
		{"no header", listed, bytes.TrimPrefix(good, []byte(armorBegin)), ns, msg, "does not start with"},
		{"other header", listed, bytes.Replace(good, []byte("SSH SIGNATURE"), []byte("PGP SIGNATURE"), 1), ns, msg, "does not start with"},
		{"no footer", listed, bytes.TrimSuffix(good, []byte(armorEnd+"\n")), ns, msg, "does not end with"},
		{"text after footer", listed, append(bytes.Clone(good), "extra\n"...), ns, msg, "does not end with"},
		{"empty armor", listed, []byte(armorBegin + "\n" + armorEnd + "\n"), ns, msg, "armored signature is empty"},
		{"bad base64", listed, bytes.Replace(good, []byte("U1NI"), []byte("U1N*"), 1), ns, msg, "bad base64"},
		{"space in base64", listed, bytes.Replace(good, []byte("U1NI"), []byte("U1 NI"), 1), ns, msg, "bad base64"},
		{"nothing", listed, nil, ns, msg, "does not start with"},
		{"too large", listed, append(bytes.Clone(good), bytes.Repeat([]byte(" "), maxArmored)...), ns, msg, "at most 65536"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.allowed.Verify(c.sig, c.ns, c.msg, now)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %q, %v; want error with %q", got, err, c.want)
			}
		})
	}
}

// TestVerifyLenientArmor accepts what copying and pasting may leave:
// CRLF line ends, surrounding blank space, other line widths.
func TestVerifyLenientArmor(t *testing.T) {
	ed := keyByName(t, "ed25519")
	good := mustSign(t, ed, ns, msg)
	a := mustAllowed(t, line("alice", "", ed.pub))
	blob, err := dearmor(good)
	if err != nil {
		t.Fatal(err)
	}
	oneLine := armorBegin + "\n" + base64.StdEncoding.EncodeToString(blob) + "\n" + armorEnd
	for _, s := range [][]byte{
		bytes.ReplaceAll(good, []byte("\n"), []byte("\r\n")),
		append([]byte("\n  "), append(bytes.TrimSuffix(good, []byte("\n")), "\n\n"...)...),
		[]byte(oneLine),
	} {
		if _, err := a.Verify(s, ns, msg, time.Now()); err != nil {
			t.Errorf("%v:\n%s", err, s)
		}
	}
}

func TestVerifyPrincipals(t *testing.T) {
	ed := keyByName(t, "ed25519")
	ec := keyByName(t, "ecdsa-p256")
	sig := mustSign(t, ed, ns, msg)
	content := "" +
		line("alice,bob", `namespaces="file,backfill-*"`, ed.pub) +
		line("carol", "", ec.pub) +
		line("bob,dave", `valid-after="20261201Z",valid-before="20261231235959Z"`, ed.pub) +
		line("erin", `namespaces="git"`, ed.pub) +
		line("frank", `valid-before="20261130Z"`, ed.pub)
	a := mustAllowed(t, content)
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), "alice bob"},
		{time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), "alice bob dave"}, // valid-after is inclusive
		// ssh-keygen compares whole seconds, so the last second is whole.
		{time.Date(2026, 12, 31, 23, 59, 59, 999999999, time.UTC), "alice bob dave"},
		{time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), "alice bob"},
		{time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC), "alice bob frank"}, // valid-before is inclusive
	} {
		got, err := a.Verify(sig, ns, msg, c.at)
		if err != nil {
			t.Fatalf("at %v: %v", c.at, err)
		}
		if strings.Join(got, " ") != c.want {
			t.Errorf("at %v: principals %q, want %q", c.at, got, c.want)
		}
	}
}

// TestLocalTime checks that a timestamp without Z is in the local zone.
func TestLocalTime(t *testing.T) {
	for _, c := range []struct {
		s    string
		want time.Time
	}{
		{"20261201", time.Date(2026, 12, 1, 0, 0, 0, 0, time.Local)},
		{"202612011530", time.Date(2026, 12, 1, 15, 30, 0, 0, time.Local)},
		{"20261201153045", time.Date(2026, 12, 1, 15, 30, 45, 0, time.Local)},
		{"20261201153045Z", time.Date(2026, 12, 1, 15, 30, 45, 0, time.UTC)},
	} {
		got, err := parseTimestamp(c.s)
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseTimestamp(%q) = %v, %v; want %v", c.s, got, err, c.want)
		}
	}
}

func TestParseAllowedSigners(t *testing.T) {
	ed := keyByName(t, "ed25519")
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ed.pub)))
	content := "# approvers\r\n" +
		"\r\n" +
		"   \t# indented comment\n" +
		`"alice@example.com,Bob Smith" NAMESPACES="backfill-approval",Valid-Before="20300101" ` + key + " comment with \"quote\r\n" +
		"\t carol\t" + key + "\n" +
		"dave " + key
	a := mustAllowed(t, content)
	if len(a.entries) != 3 {
		t.Fatalf("%d entries", len(a.entries))
	}
	e := a.entries[0]
	if e.line != 4 || strings.Join(e.principals, "|") != "alice@example.com|Bob Smith" ||
		strings.Join(e.namespaces, "|") != "backfill-approval" || e.validBefore == 0 {
		t.Errorf("first entry %+v", e)
	}
	if a.entries[1].line != 5 || a.entries[2].line != 6 || a.entries[1].namespaces != nil {
		t.Errorf("entries %+v", a.entries)
	}
}

func TestParseAllowedSignersErrors(t *testing.T) {
	ed := keyByName(t, "ed25519")
	key := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ed.pub)))
	b64 := strings.Fields(key)[1]
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	smallKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(newTestKey("rsa-1024", small).pub)))
	certKey := func() string {
		c := &ssh.Certificate{Key: ed.pub, CertType: ssh.UserCert, ValidPrincipals: []string{"alice"}, ValidBefore: ssh.CertTimeInfinity}
		s, err := ssh.NewSignerFromKey(ed.priv)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.SignCert(rand.Reader, s); err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(c)))
	}()

	for _, c := range []struct {
		name, content, want string
	}{
		{"empty file", "", "as: no allowed signers"},
		{"only comments", "# a\n\n", "as: no allowed signers"},
		{"principal only", "# a\nalice\n", "as:2: missing key"},
		{"options only", `alice namespaces="x"`, "as:1: missing key"},
		{"no base64", "alice ssh-ed25519\n", "as:1: missing base64 key"},
		{"bad base64", "alice ssh-ed25519 AAA*\n", "as:1: key: bad base64"},
		{"not a key", "alice ssh-ed25519 aGVsbG8=\n", "as:1: key: "},
		{"type mismatch", "alice ssh-rsa " + b64 + "\n", "as:1: key is ssh-ed25519, but the line says ssh-rsa"},
		{"unknown type", "alice ssh-foo " + b64 + "\n", `as:1: unknown option or key type "ssh-foo"`},
		{"dsa", "alice ssh-dss " + b64 + "\n", `as:1: key type "ssh-dss" is not supported`},
		{"security key", "alice sk-ssh-ed25519@openssh.com " + b64 + "\n", `as:1: key type "sk-ssh-ed25519@openssh.com" is not supported`},
		{"certificate key", "alice " + certKey + "\n", "as:1: key type \"ssh-ed25519-cert-v01@openssh.com\" is not supported"},
		{"short RSA", "\n\nalice " + smallKey + "\n", "as:3: RSA key has 1024 bits"},
		{"wildcard principal", "*@example.com " + key, `as:1: principal "*@example.com": patterns are not supported`},
		{"question mark", "alice,b?b " + key, `as:1: principal "b?b": patterns are not supported`},
		{"negated principal", "alice,!bob " + key, `as:1: principal "!bob": patterns are not supported`},
		{"empty principal", "alice,,bob " + key, "as:1: principals: empty principal"},
		{"trailing comma", "alice, " + key, "as:1: principals: empty principal"},
		{"quote inside principals", `al"i"ce ` + key, "as:1: principals: bad quoting"},
		{"empty quoted principals", `"" ` + key, "as:1: principals: bad quoting"},
		{"unterminated quote", `"alice ` + key, "as:1: unterminated double quote"},
		{"control character", "\"al\x01ice\" " + key, `as:1: principal "al\x01ice": control character`},
		{"cert-authority", "alice cert-authority " + key, "as:1: cert-authority: certificates are not supported"},
		{"cert-authority uppercase", `alice namespaces="x",CERT-AUTHORITY ` + key, "as:1: cert-authority: certificates are not supported"},
		{"unknown option", "alice no-touch-required " + key, `as:1: unknown option or key type "no-touch-required"`},
		{"empty option", `alice namespaces="x",,valid-after="20260101" ` + key, "as:1: options: empty option"},
		{"unquoted value", "alice namespaces=x " + key, "as:1: option namespaces: the value must be in double quotes"},
		{"half-quoted value", `alice namespaces="x ` + key, "as:1: unterminated double quote"},
		{"no value", "alice namespaces " + key, "as:1: option namespaces needs a value"},
		{"empty namespaces", `alice namespaces="" ` + key, "as:1: option namespaces: empty namespace"},
		{"empty namespace in list", `alice namespaces="a,,b" ` + key, "as:1: option namespaces: empty namespace"},
		{"namespaces twice", `alice namespaces="a",namespaces="b" ` + key, "as:1: option namespaces given twice"},
		{"valid-before twice", `alice valid-before="20260101",VALID-BEFORE="20270101" ` + key, "as:1: option valid-before given twice"},
		{"bad time", `alice valid-after="2026-01-01" ` + key, `as:1: option valid-after: "2026-01-01" is not YYYYMMDD`},
		{"short time", `alice valid-after="2026" ` + key, `as:1: option valid-after: "2026" is not YYYYMMDD`},
		{"ten digits", `alice valid-after="2026010112" ` + key, `as:1: option valid-after: "2026010112" is not YYYYMMDD`},
		{"sign in time", `alice valid-after="+2026010" ` + key, `as:1: option valid-after: "+2026010" is not YYYYMMDD`},
		{"month 13", `alice valid-before="20261301Z" ` + key, `as:1: option valid-before: "20261301Z": `},
		{"lower z", `alice valid-before="20261201z" ` + key, `as:1: option valid-before: "20261201z" is not YYYYMMDD`},
		{"before 1970", `alice valid-before="19700101Z" ` + key, `as:1: option valid-before: "19700101Z" is not after 1970`},
		{"after later than before", `alice valid-after="20270101Z",valid-before="20260101Z" ` + key, "as:1: valid-after is later than valid-before"},
		{"no principals", key + "\n", "as:1: missing principals before the key"},
		{"error on later line", "alice " + key + "\n# ok\nbob " + "ssh-ed25519 AAAA\n", "as:3: key: "},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, err := ParseAllowedSigners("as", []byte(c.content))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, %v; want error with %q", a, err, c.want)
			}
		})
	}
}

func TestMatchList(t *testing.T) {
	for _, c := range []struct {
		s, list string
		want    bool
	}{
		{"backfill-approval", "backfill-approval", true},
		{"backfill-approval", "file,backfill-approval", true},
		{"backfill-approval", "backfill-*", true},
		{"backfill-approval", "*", true},
		{"backfill-approval", "*-*", true},
		{"backfill-approval", "backfill-approva?", true},
		{"backfill-approval", "backfill-approval?", false},
		{"backfill-approval", "backfill", false},
		{"backfill-approval", "*,!backfill-*", false},
		{"backfill-approval", "!file", false}, // negations alone never match
		{"file", "*,!backfill-*", true},
		{"", "*", true},
		{"aaa", "*a*a*a*a", false},
		{"abcabd", "*abd", true},
		{"BACKFILL-APPROVAL", "backfill-approval", false},
	} {
		if got := matchList(c.s, strings.Split(c.list, ",")); got != c.want {
			t.Errorf("matchList(%q, %q) = %v", c.s, c.list, got)
		}
	}
}
