package sshsig

import (
	"bytes"
	"testing"
	"time"
)

// FuzzParse checks that the armor and blob parsers never panic, leave their
// input alone, and that whatever they accept encodes back to something
// read the same way. Each input is tried both as an armored signature and
// as a raw blob, since mutating base64 text rarely reaches the blob's
// structure. Seeds are real signatures of every supported key type, in
// both forms.
func FuzzParse(f *testing.F) {
	for _, k := range testKeys() {
		sig := mustSign(f, k, ns, msg)
		f.Add(sig)
		blob, err := dearmor(sig)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(blob)
	}
	f.Add([]byte(armorBegin + "\n" + armorEnd + "\n"))
	f.Add([]byte(armorBegin + "\nU1NIU0lH\n" + armorEnd + "\n"))
	f.Add([]byte("-----BEGIN SSH SIGNATURE-----\r\nU1NIU0lHAAAAAQ==\r\n-----END SSH SIGNATURE-----"))

	ed := keyByName(f, "ed25519")
	allowed := mustAllowed(f, line("alice", "", ed.pub))
	f.Fuzz(func(t *testing.T, in []byte) {
		orig := bytes.Clone(in)
		s, err := parse(in)
		// Verify must never accept what parse refuses.
		if _, verr := allowed.Verify(in, ns, msg, time.Now()); err != nil && verr == nil {
			t.Fatalf("Verify accepted what parse refused: %v", err)
		}
		if err == nil {
			checkReencode(t, s)
		}
		if s, err := parseBlob(in); err == nil {
			checkReencode(t, s)
		}
		if !bytes.Equal(in, orig) {
			t.Fatal("parsing modified its input")
		}
	})
}

// checkReencode checks that s, armored again, parses to the same blob.
func checkReencode(t *testing.T, s *signature) {
	t.Helper()
	blob := s.marshal()
	s2, err := parse(armor(blob))
	if err != nil {
		t.Fatalf("re-armored signature does not parse: %v", err)
	}
	if !bytes.Equal(s2.marshal(), blob) {
		t.Fatal("re-encoding changed the signature")
	}
	if s2.namespace != s.namespace || s2.hashAlg != s.hashAlg || s2.sig.Format != s.sig.Format {
		t.Fatal("re-encoding changed a field")
	}
}
