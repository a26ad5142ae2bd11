package sshsig

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// sshKeygen runs ssh-keygen directly (no shell) with a fixed environment:
// no agent, a private HOME, and UTC so the local-time rules cannot differ
// between it and the test.
func sshKeygen(t *testing.T, dir string, stdin []byte, args ...string) ([]byte, error) {
	t.Helper()
	path, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Skip("ssh-keygen not installed")
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = dir
	cmd.Env = []string{"HOME=" + dir, "TZ=UTC", "PATH=/usr/bin:/bin"}
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &keygenError{err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

type keygenError struct {
	err    error
	stderr string
}

func (e *keygenError) Error() string { return e.err.Error() + ": " + strings.TrimSpace(e.stderr) }

// keygenKey makes a key with ssh-keygen and returns its private key file's
// content and its public key line.
func keygenKey(t *testing.T, dir, name string, args ...string) (priv []byte, pub string) {
	t.Helper()
	file := filepath.Join(dir, name)
	if _, err := sshKeygen(t, dir, nil, append([]string{"-q", "-N", "", "-C", name, "-f", file}, args...)...); err != nil {
		t.Fatal(err)
	}
	priv, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	p, err := os.ReadFile(file + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return priv, strings.TrimSpace(string(p))
}

var keygenTypes = []struct {
	name string
	args []string
}{
	{"ed25519", []string{"-t", "ed25519"}},
	{"ecdsa-p256", []string{"-t", "ecdsa", "-b", "256"}},
	{"ecdsa-p521", []string{"-t", "ecdsa", "-b", "521"}},
	{"rsa-3072", []string{"-t", "rsa", "-b", "3072"}},
}

// TestInteropKeygenSigns: what ssh-keygen -Y sign writes, Verify accepts.
func TestInteropKeygenSigns(t *testing.T) {
	for _, kt := range keygenTypes {
		t.Run(kt.name, func(t *testing.T) {
			dir := t.TempDir()
			_, pub := keygenKey(t, dir, "key", kt.args...)
			sig, err := sshKeygen(t, dir, msg, "-Y", "sign", "-f", "key", "-n", ns)
			if err != nil {
				t.Fatal(err)
			}
			a := mustAllowed(t, "alice "+pub+"\n")
			got, err := a.Verify(sig, ns, msg, time.Now())
			if err != nil {
				t.Fatalf("%v\n%s", err, sig)
			}
			if len(got) != 1 || got[0] != "alice" {
				t.Errorf("principals %q", got)
			}
			if _, err := a.Verify(sig, ns, append(bytes.Clone(msg), 'x'), time.Now()); err == nil {
				t.Error("altered message verified")
			}
		})
	}
}

// TestInteropKeygenVerifies: what Sign writes, ssh-keygen -Y verify accepts,
// and refuses for another message, namespace or principal.
func TestInteropKeygenVerifies(t *testing.T) {
	for _, kt := range keygenTypes {
		t.Run(kt.name, func(t *testing.T) {
			dir := t.TempDir()
			priv, pub := keygenKey(t, dir, "key", kt.args...)
			sig, err := Sign(priv, ns, msg)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, dir, "sig", sig)
			writeFile(t, dir, "allowed_signers", []byte("alice@example.com "+pub+"\n"))
			verify := func(principal, namespace string, message []byte) error {
				_, err := sshKeygen(t, dir, message, "-Y", "verify", "-f", "allowed_signers",
					"-I", principal, "-n", namespace, "-s", "sig")
				return err
			}
			if err := verify("alice@example.com", ns, msg); err != nil {
				t.Fatalf("ssh-keygen refused our signature: %v\n%s", err, sig)
			}
			if verify("alice@example.com", ns, append(bytes.Clone(msg), 'x')) == nil {
				t.Error("ssh-keygen accepted an altered message")
			}
			if verify("alice@example.com", "file", msg) == nil {
				t.Error("ssh-keygen accepted another namespace")
			}
			if verify("bob@example.com", ns, msg) == nil {
				t.Error("ssh-keygen accepted another principal")
			}
		})
	}
}

// TestInteropSameBytes: ed25519 signatures are deterministic, so Sign must
// write exactly what ssh-keygen writes, armor included.
func TestInteropSameBytes(t *testing.T) {
	dir := t.TempDir()
	priv, _ := keygenKey(t, dir, "key", "-t", "ed25519")
	want, err := sshKeygen(t, dir, msg, "-Y", "sign", "-f", "key", "-n", ns)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Sign(priv, ns, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Sign wrote\n%s\nssh-keygen wrote\n%s", got, want)
	}
}

// TestInteropAllowedSignersOptions checks that ssh-keygen and Verify make
// the same decision for the options and times both support.
func TestInteropAllowedSignersOptions(t *testing.T) {
	dir := t.TempDir()
	priv, pub := keygenKey(t, dir, "key", "-t", "ed25519")
	sig, err := Sign(priv, ns, msg)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "sig", sig)
	for _, c := range []struct {
		options string
		at      string // ssh-keygen's verify-time, UTC
		ok      bool
	}{
		{`namespaces="backfill-approval"`, "20261201", true},
		{`namespaces="file,backfill-*"`, "20261201", true},
		{`namespaces="backfill-approva?"`, "20261201", true},
		{`namespaces="file"`, "20261201", false},
		{`namespaces="*,!backfill-*"`, "20261201", false},
		{`namespaces="!file"`, "20261201", false},
		{`Namespaces="backfill-approval"`, "20261201", true},
		{`valid-before="20261201Z"`, "20261201000000", true},
		{`valid-before="20261201Z"`, "20261201000001", false},
		{`valid-before="202612011200Z"`, "20261201120000", true},
		{`valid-before="202612011200Z"`, "20261201120001", false},
		{`valid-after="20261201120000Z"`, "20261201115959", false},
		{`valid-after="20261201120000Z"`, "20261201120000", true},
		{`valid-after="20261130Z",valid-before="20261202Z"`, "20261201", true},
		{`valid-after="20261130Z",valid-before="20261202Z"`, "20261203", false},
	} {
		writeFile(t, dir, "allowed_signers", []byte("alice "+c.options+" "+pub+"\n"))
		_, kerr := sshKeygen(t, dir, msg, "-Y", "verify", "-f", "allowed_signers",
			"-I", "alice", "-n", ns, "-s", "sig", "-Overify-time="+c.at)

		at, err := parseTimestamp(c.at + "Z")
		if err != nil {
			t.Fatal(err)
		}
		a, err := ParseAllowedSigners("allowed_signers", []byte("alice "+c.options+" "+pub+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", c.options, err)
		}
		_, verr := a.Verify(sig, ns, msg, at)
		if (kerr == nil) != c.ok || (verr == nil) != c.ok {
			t.Errorf("%s at %s: want ok=%v; ssh-keygen says %v, Verify says %v", c.options, c.at, c.ok, kerr, verr)
		}
	}
}

func writeFile(t *testing.T, dir, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}
