package cli

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// backfillBinary builds cmd/backfill once per test binary, for tests that
// must kill a real process.
func backfillBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "backfill-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "backfill")
		out, err := exec.Command("go", "build", "-o", binPath, "backfill/cmd/backfill").CombinedOutput()
		if err != nil {
			binErr = err
			binPath = string(out)
		}
	})
	if binErr != nil {
		t.Fatalf("build backfill: %v\n%s", binErr, binPath)
	}
	return binPath
}

func processEnv(env map[string]string) []string {
	out := os.Environ()
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

// countRows polls the store read-only, as an operator's second shell would.
func countRows(t *testing.T, path, query string) int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		return 0 // not created yet
	}
	return n
}

type capturedRow struct {
	id          int64
	key, sha256 string
	hash        string
}

func capturedRows(t *testing.T, path string) map[int64]capturedRow {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT id, tenant || '/' || workspace_id, coalesce(sha256, ''), hash FROM captures WHERE outcome = 'captured'")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int64]capturedRow{}
	for rows.Next() {
		var r capturedRow
		if err := rows.Scan(&r.id, &r.key, &r.sha256, &r.hash); err != nil {
			t.Fatal(err)
		}
		out[r.id] = r
	}
	return out
}

// killAfterCaptures waits until the store at path holds n captures, then
// kills the snapshot cmd outright (SIGKILL) and waits for it to exit.
// exited receives cmd.Wait's result; out is what the process printed.
func killAfterCaptures(t *testing.T, cmd *exec.Cmd, exited <-chan error, path string, n int, out fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for countRows(t, path, "SELECT count(*) FROM captures") < n {
		select {
		case err := <-exited:
			t.Fatalf("snapshot ended before it could be killed (%v):\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no progress:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

func TestSnapshotSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	f := newFleet(t, 60, 20*time.Millisecond)
	cmd := exec.Command(bin, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--concurrency", "4")
	cmd.Env = processEnv(f.env)
	var out syncBuffer // read while the process may still write
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Kill it once a good share of captures are recorded, mid-run.
	killAfterCaptures(t, cmd, exited, f.evidence, 40, &out)
	before := capturedRows(t, f.evidence)
	if len(before) == 0 || len(before) >= len(f.live) {
		t.Fatalf("killed with %d of %d captured; want a partial run", len(before), len(f.live))
	}

	res := f.snapshot(t)
	if res.code != 0 {
		t.Fatalf("re-run exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify after crash: %s %s", v.stdout, v.stderr)
	}
	after := capturedRows(t, f.evidence)
	for id, r := range before {
		if after[id] != r {
			t.Errorf("capture %d recorded before the kill changed or vanished: %+v -> %+v", id, r, after[id])
		}
	}
	perWorkspace := map[string]int{}
	for _, r := range after {
		perWorkspace[r.key]++
		if want := sha(f.live[r.key]); r.sha256 != want {
			t.Errorf("%s captured wrong bytes", r.key)
		}
	}
	for key := range f.live {
		if perWorkspace[key] != 1 {
			t.Errorf("%s has %d successful captures, want exactly 1", key, perWorkspace[key])
		}
	}
}

func TestSnapshotSIGINTStopsCleanly(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	f := newFleet(t, 60, 20*time.Millisecond)
	cmd := exec.Command(bin, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--concurrency", "2")
	cmd.Env = processEnv(f.env)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for countRows(t, f.evidence, "SELECT count(*) FROM captures") < 20 {
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
	cmd.Process.Signal(os.Interrupt)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("exit %v, want 3\n%s\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "snapshot interrupted") || !strings.Contains(out, "not attempted") {
		t.Fatalf("summary:\n%s", out)
	}
	if v := run(t, nil, "verify", "--evidence", f.evidence); v.code != 0 {
		t.Fatalf("verify: %s", v.stdout)
	}
	// In-flight captures finished and were recorded: nothing is left
	// half-recorded, and a re-run completes the rest.
	if res := f.snapshot(t); res.code != 0 {
		t.Fatalf("re-run: %d %s", res.code, res.stdout)
	}
	for _, r := range exportJSON(t, f) {
		if r.LatestOutcome != "captured" || r.Attempts != 1 {
			t.Errorf("%s/%s: %+v", r.Tenant, r.WorkspaceID, r)
		}
	}
}

func TestSnapshotProgressOnTerminalOnly(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 30, 20*time.Millisecond)
	var out, errb syncBuffer
	code := Run(t.Context(), []string{"backfill", "--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--concurrency", "4"}, Env{
		Stdout: &out, Stderr: &errb,
		LookupEnv: func(k string) (string, bool) { v, ok := f.env[k]; return v, ok },
		Terminal:  func(io.Writer) bool { return true },
	})
	if code != 0 || !strings.Contains(errb.String(), "done 90/90  captured 90  gone 0") || !strings.Contains(errb.String(), "failed 0") {
		t.Fatalf("exit %d, stderr:\n%q", code, errb.String())
	}
	// Not a terminal (the default in tests): no progress line drawn, but a
	// status line in the log every --progress-every.
	res := f.snapshot(t, "--refresh", "--progress-every", "50ms")
	if strings.Contains(res.stderr, "\r") || !strings.Contains(res.stderr, `msg=progress status="done 90/90`) {
		t.Fatalf("progress on a non-terminal:\n%q", res.stderr)
	}
	if res := f.snapshot(t, "--refresh", "--quiet"); strings.Contains(res.stderr, "progress") {
		t.Fatalf("--quiet logged progress:\n%q", res.stderr)
	}
}

// TestAPublishAfterSIGKILLNamesTheTenantsNotListed: a snapshot killed while
// one tenant's listing still waits on its database runs no code to record
// that; the copy published after must not call itself complete. Every
// tenant of a run is recorded not listed before any is listed, so the
// killed run leaves delta not listed, with why.
func TestAPublishAfterSIGKILLNamesTheTenantsNotListed(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	f := newFleet(t, 3, 0)
	// delta's database accepts the connection and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{}, 16)
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			accepted <- struct{}{}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range held {
			c.Close()
		}
		mu.Unlock()
	})
	inv, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.inventory, string(inv)+fmt.Sprintf("  - name: delta\n    dsn: \"postgres://postgres@%s/x\"\n    collector:\n      file: \"%s/{workspace_id}/config.yaml\"\n",
		ln.Addr(), filepath.Join(f.dir, "live", "delta")))

	cmd := exec.Command(bin, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory, "--timeout", "5m")
	cmd.Env = processEnv(f.env)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-accepted:
	case err := <-exited:
		t.Fatalf("snapshot ended before delta's listing began (%v):\n%s", err, out.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("delta's database was never reached:\n%s", out.String())
	}
	// The other three are listed and captured; delta's listing still waits.
	killAfterCaptures(t, cmd, exited, f.evidence, 9, &out)

	dest := filepath.Join(t.TempDir(), "copy.db")
	res := run(t, nil, "--evidence", f.evidence, "publish", "--json", dest)
	var doc publishJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("publish: exit %d, %v\n%s%s", res.code, err, res.stdout, res.stderr)
	}
	if res.code != 3 || doc.Complete || doc.Tenants != 4 || doc.TenantsNotListed != 1 {
		t.Fatalf("publish after the kill: exit %d %+v, want 3 with delta not listed\n%s", res.code, doc, res.stderr)
	}
	st := run(t, nil, "--evidence", dest, "status")
	if !strings.Contains(st.stdout, "delta") || !strings.Contains(st.stdout, "had not listed it (it was killed, or is still running)") {
		t.Fatalf("status of the copy does not say why delta is not listed:\n%s", st.stdout)
	}
}
