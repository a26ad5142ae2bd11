package evidence

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// OpenReadOnly's handle is SQLite's mode=ro: nothing is written through it,
// not even by hand, and reading works.
func TestOpenReadOnlyWritesNothing(t *testing.T) {
	ctx := context.Background()
	w := openTemp(t)
	if err := w.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	s, err := OpenReadOnly(ctx, w.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Captures != 1 {
		t.Fatalf("verify read-only: %+v %v", r, err)
	}
	for _, q := range []string{"CREATE TABLE notes (x)", "CREATE TRIGGER t AFTER INSERT ON captures BEGIN SELECT 1; END", "PRAGMA user_version = 9"} {
		if _, err := s.DB().ExecContext(ctx, q); err == nil || !strings.Contains(err.Error(), "readonly") {
			t.Errorf("%s through the read-only handle: %v", q, err)
		}
	}
	if err := s.Append(ctx, capture("a", "w2", Gone, "")); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("append through the read-only handle: %v", err)
	}
	if err := s.PutPlan(ctx, "sha256:ab", "alice", oldAt, []byte("{}"), ""); err == nil {
		t.Errorf("put plan through the read-only handle succeeded")
	}
	if _, err := OpenReadOnly(ctx, filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Errorf("a missing store opened")
	}
	empty := filepath.Join(t.TempDir(), "empty.db")
	os.WriteFile(empty, nil, 0o600)
	if _, err := OpenReadOnly(ctx, empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty file: %v", err)
	}
}

// A store at an older schema version opens read-only as it is, unmigrated,
// and reads and verifies against the schema of its own version.
func TestOpenReadOnlyReadsAnOldStoreAsItIs(t *testing.T) {
	ctx := context.Background()
	path := oldStore(t)
	s, err := OpenReadOnly(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if r, err := s.Verify(ctx); err != nil || !r.OK() || r.Approvals != 1 || r.Journal != 2 || r.Plans != 0 {
		t.Fatalf("verify old store read-only: %+v %v", r, err)
	}
	h, err := s.History(ctx, "sha256:0ld")
	if err != nil || h.Pending[Key{"acme", "w1"}].ID != 7301 {
		t.Fatalf("history of an old store: %+v %v", h, err)
	}
	if as, err := s.Approvals(ctx, "sha256:0ld"); err != nil || len(as) != 1 || !as[0].Legacy {
		t.Fatalf("approvals of an old store: %+v %v", as, err)
	}
	if ps, err := s.Plans(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("plans of an old store: %+v %v", ps, err)
	}
	var v int
	if err := s.DB().QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil || v != 4 {
		t.Fatalf("user_version after a read-only open: %d %v", v, err)
	}
	// What backfill never made is still found at the old version.
	tamper(t, path, "CREATE VIEW v AS SELECT 1")
	if r, err := s.Verify(ctx); err != nil || !strings.Contains(fmt.Sprint(r.Problems), `unexpected view "v"`) {
		t.Fatalf("verify of a tampered old store: %+v %v", r, err)
	}
}

// roHelperEnv names the store a re-executed test binary opens read-only,
// as another user or inside a read-only mount.
const roHelperEnv = "BACKFILL_TEST_READONLY_STORE"

// TestReadOnlyHelper is run by the tests below in a child process: it opens
// the store named in the environment read-only and prints what happened.
func TestReadOnlyHelper(t *testing.T) {
	path := os.Getenv(roHelperEnv)
	if path == "" {
		t.Skip("run by the read-only media tests")
	}
	s, err := OpenReadOnly(context.Background(), path)
	if err != nil {
		fmt.Println("OPEN:", err)
		return
	}
	defer s.Close()
	r, err := s.Verify(context.Background())
	if err != nil {
		fmt.Println("VERIFY:", err)
		return
	}
	fmt.Printf("VERIFIED ok=%v captures=%d\n", r.OK(), r.Captures)
}

// readOnlyCopy copies a store's files into a new directory that can be made
// read-only and that a child running as nobody can reach.
func readOnlyCopy(t *testing.T, files ...string) (dir string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "ro-store")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(dir, 0o755); os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	for _, f := range files {
		copyFile(t, f, filepath.Join(dir, strings.Replace(filepath.Base(f), "old", "evidence", 1)), 0o444)
	}
	// The test binary too, for a child running as nobody: the build
	// directory is private.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile(t, self, filepath.Join(dir, "evidence.test"), 0o555)
	return dir
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chmod(to, mode)
}

// runHelper runs TestReadOnlyHelper on store in a child process and returns
// its output.
func runHelper(t *testing.T, cmd *exec.Cmd, store string) string {
	t.Helper()
	cmd.Env = append(os.Environ(), roHelperEnv+"="+store)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	return string(out)
}

// asReader is a command that runs bin as a user to whom the directory's
// permission bits apply: nobody when we are root.
func asReader(bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	return cmd
}

// A store copied to read-only media opens read-only: a directory no one may
// write (chmod 0555, the file 0444), read by a user the bits apply to, and,
// when we may mount, a read-only bind mount that stops root too. With no
// -shm and none creatable, SQLite needs immutable=1, which OpenReadOnly
// allows only when no writer can exist; a write-ahead log it cannot read is
// an error, never a silently older view.
func TestOpenReadOnlyOnReadOnlyMedia(t *testing.T) {
	ctx := context.Background()
	w := openTemp(t)
	if err := w.Append(ctx, capture("a", "w1", Captured, "x"), capture("a", "w2", Captured, "y")); err != nil {
		t.Fatal(err)
	}
	// A clean close checkpoints and removes the -wal and -shm.
	w.Close()
	clean := readOnlyCopy(t, w.Path())
	// A store whose writer died leaves a -wal that holds its records.
	live := openTemp(t)
	if err := live.Append(ctx, capture("a", "w1", Captured, "x")); err != nil {
		t.Fatal(err)
	}
	withWAL := readOnlyCopy(t, live.Path(), live.Path()+"-wal")
	for _, d := range []string{clean, withWAL} {
		if err := os.Chmod(d, 0o555); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("read-only directory", func(t *testing.T) {
		out := runHelper(t, asReader(filepath.Join(clean, "evidence.test"), "-test.run=^TestReadOnlyHelper$"), filepath.Join(clean, "evidence.db"))
		if !strings.Contains(out, "VERIFIED ok=true captures=2") {
			t.Fatalf("read-only directory:\n%s", out)
		}
		if _, err := os.Stat(filepath.Join(clean, "evidence.db-shm")); err == nil {
			t.Fatalf("an -shm appeared in a directory no one may write: the child could write there")
		}
		out = runHelper(t, asReader(filepath.Join(withWAL, "evidence.test"), "-test.run=^TestReadOnlyHelper$"), filepath.Join(withWAL, "evidence.db"))
		if !strings.Contains(out, "OPEN:") || !strings.Contains(out, "write-ahead log") {
			t.Fatalf("read-only directory with a -wal:\n%s", out)
		}
	})

	t.Run("read-only mount", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("mounting needs root")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("no unshare")
		}
		for _, tc := range []struct{ dir, want string }{{clean, "VERIFIED ok=true captures=2"}, {withWAL, "write-ahead log"}} {
			// Writable again, so only the mount makes it read-only.
			os.Chmod(tc.dir, 0o755)
			mnt := t.TempDir()
			script := fmt.Sprintf("mount --bind -o ro %s %s && exec %s -test.run='^TestReadOnlyHelper$'", tc.dir, mnt, filepath.Join(mnt, "evidence.test"))
			cmd := exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", script)
			cmd.Env = append(os.Environ(), roHelperEnv+"="+filepath.Join(mnt, "evidence.db"))
			out, err := cmd.CombinedOutput()
			if err != nil && strings.Contains(string(out), "mount") {
				t.Skipf("cannot mount here: %s", out)
			}
			if err != nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("read-only mount of %s: %v\n%s", tc.dir, err, out)
			}
			os.Chmod(tc.dir, 0o555)
		}
	})
}
