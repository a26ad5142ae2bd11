package cli

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"backfill/internal/pgtest"
)

// captureRow is one capture as the evidence store holds it.
type captureRow struct {
	workspaceID, outcome, reason, target, provenance string
	content                                          []byte
}

// storedCaptures reads every capture, with its content, read-only.
func storedCaptures(t *testing.T, path string) map[string]captureRow {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT c.workspace_id, c.outcome, c.reason, c.target, c.provenance, t.bytes
  FROM captures c LEFT JOIN content t ON t.sha256 = c.sha256 ORDER BY c.id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]captureRow{}
	for rows.Next() {
		var r captureRow
		if err := rows.Scan(&r.workspaceID, &r.outcome, &r.reason, &r.target, &r.provenance, &r.content); err != nil {
			t.Fatal(err)
		}
		out[r.workspaceID] = r // the latest attempt wins
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// assertNowhere fails if any needle is in the outputs, in any column of the
// evidence store, or in the store's raw bytes (WAL included).
func assertNowhere(t *testing.T, store string, outputs map[string]string, needles ...string) {
	t.Helper()
	places := map[string]string{}
	for k, v := range outputs {
		places[k] = v
	}
	for k, v := range dumpSQLite(t, store) {
		places[k] = v
	}
	for _, suffix := range []string{"", "-wal"} {
		if b, err := os.ReadFile(store + suffix); err == nil {
			places["raw bytes of evidence.db"+suffix] = string(b)
		}
	}
	for where, text := range places {
		for _, n := range needles {
			if strings.Contains(text, n) {
				t.Errorf("%q found in %s", n, where)
			}
		}
	}
}

// waitExited polls /proc (bounded) until pid has exited: gone, or a zombie
// nobody has reaped yet. A survivor is killed so it cannot outlive the test.
func waitExited(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return
		}
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("process %d still running 10s after its capture ended", pid)
			return
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// awaitPIDs polls (bounded) until file holds a whole line of pids.
func awaitPIDs(t *testing.T, file string, alive func() bool) []int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, _ := os.ReadFile(file); bytes.HasSuffix(b, []byte("\n")) {
			var pids []int
			for _, f := range strings.Fields(string(b)) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					t.Fatalf("pid file %q", b)
				}
				pids = append(pids, pid)
			}
			return pids
		}
		if !alive() {
			t.Fatal("backfill ended before the command wrote its pids")
		}
		if time.Now().After(deadline) {
			t.Fatal("no pids written within 30s")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// grandchildArgv is the test's own command (backfill never uses a shell): it
// leaves a grandchild in the background and waits for it, writing both pids.
func grandchildArgv(pidFile string) string {
	return fmt.Sprintf(`["/bin/sh", "-c", "sleep 300 & echo $$ $! > %s; wait"]`, pidFile)
}

// TestFileCollectorStaysBeneathRoot runs the real binary so that
// /proc/self/environ is backfill's own environment, holding a planted marker:
// a workspace's config.yaml linked there, to a private file, or through a
// linked directory, captures nothing.
func TestFileCollectorStaysBeneathRoot(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	const envMarker = "proc-environ-marker-2c9e41"
	const fileMarker = "private-file-marker-8b03d7"
	dir := t.TempDir()
	root := filepath.Join(dir, "mirror")
	outside := filepath.Join(dir, "host-private")
	if err := os.MkdirAll(outside, 0o700); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(outside, "credentials")
	if err := os.WriteFile(private, []byte("token: "+fileMarker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(outside, "config.yaml"), "name: "+fileMarker+"\n")

	ids := map[string]string{}
	var rows []ws
	for i, name := range []string{"ok", "environ", "private", "linked-dir", "missing"} {
		ids[name] = uuidFor(71, i)
		rows = append(rows, ws{id: ids[name], name: name})
	}
	writeFile(t, filepath.Join(root, ids["ok"], "config.yaml"), seoConfig)
	for name, target := range map[string]string{"environ": "/proc/self/environ", "private": private} {
		if err := os.MkdirAll(filepath.Join(root, ids[name]), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(root, ids[name], "config.yaml")); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, ids["linked-dir"])); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.NewTenantDB(t)
	insertRows(t, dsn, rows...)
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
tenants:
  - name: mirror
    dsn: %q
    collector:
      file: "%s/{workspace_id}/config.yaml"
`, dsn, root))
	store := filepath.Join(dir, "evidence.db")

	cmd := exec.Command(bin, "--evidence", store, "snapshot", "--inventory", inv, "--retries", "0")
	cmd.Env = processEnv(map[string]string{"BACKFILL_TEST_MARKER": envMarker})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("snapshot: %v, want exit 3\n%s%s", err, stdout.String(), stderr.String())
	}

	got := storedCaptures(t, store)
	for name, want := range map[string]string{
		"ok":         "captured",
		"environ":    "failed: refused: " + ids["environ"] + "/config.yaml is a symbolic link",
		"private":    "failed: refused: " + ids["private"] + "/config.yaml is a symbolic link",
		"linked-dir": "failed: refused: " + ids["linked-dir"] + " is a symbolic link",
		"missing":    "gone: no such file",
	} {
		c := got[ids[name]]
		if have := strings.TrimSuffix(c.outcome+": "+c.reason, ": "); have != want {
			t.Errorf("%s: %s, want %s", name, have, want)
		}
		if name != "ok" && c.content != nil {
			t.Errorf("%s: %d content bytes stored", name, len(c.content))
		}
	}
	assertNowhere(t, store, map[string]string{"stdout": stdout.String(), "stderr": stderr.String()},
		envMarker, fileMarker, "BACKFILL_TEST_MARKER")
}

// TestExecCollectorMinimalEnvironment captures the output of the real env(1):
// the command sees PATH, HOME, LANG, TZ and its listed names, from the
// environment backfill was given, and nothing else: neither a variable of
// the test process's own environment nor an unlisted one.
func TestExecCollectorMinimalEnvironment(t *testing.T) {
	const osMarker = "os-environ-secret-3e8f10"
	const unlistedMarker = "unlisted-secret-6a2d55"
	t.Setenv("BACKFILL_TEST_OPERATOR_TOKEN", osMarker)
	env := map[string]string{
		"PATH": "/usr/bin:/bin", "HOME": "/nonexistent-home", "TZ": "UTC",
		"DOCKER_HOST": "unix:///run/test-docker.sock", "JRS_ADMIN_TOKEN": unlistedMarker,
	}
	for _, tt := range []struct {
		name, collector, environ, target string
	}{
		{"argv list", `exec: ["env"]`, "PATH=/usr/bin:/bin\nHOME=/nonexistent-home\nTZ=UTC\n", "exec: env"},
		{"argv and env list", "exec:\n        argv: [\"env\"]\n        env: [DOCKER_HOST]",
			"PATH=/usr/bin:/bin\nHOME=/nonexistent-home\nTZ=UTC\nDOCKER_HOST=unix:///run/test-docker.sock\n", "exec: env (env: DOCKER_HOST)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			dsn := pgtest.NewTenantDB(t)
			id := uuidFor(72, 1)
			insertRows(t, dsn, ws{id: id, name: "env"})
			inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
tenants:
  - name: envt
    dsn: %q
    collector:
      %s
`, dsn, tt.collector))
			store := filepath.Join(dir, "evidence.db")
			res := run(t, env, "--evidence", store, "snapshot", "--inventory", inv)
			if res.code != 0 {
				t.Fatalf("snapshot exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			c := storedCaptures(t, store)[id]
			if got := string(c.content); got != tt.environ {
				t.Errorf("the command's environment:\n%s\nwant exactly\n%s", got, tt.environ)
			}
			if c.target != tt.target {
				t.Errorf("target %q, want %q", c.target, tt.target)
			}
			assertNowhere(t, store, map[string]string{"stdout": res.stdout, "stderr": res.stderr}, osMarker, unlistedMarker)
		})
	}
}

// TestExecTimeoutKillsGrandchildEndToEnd: at --timeout the command's whole
// process group is killed, including the grandchild it left in the
// background.
func TestExecTimeoutKillsGrandchildEndToEnd(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	id := uuidFor(73, 1)
	insertRows(t, dsn, ws{id: id, name: "slow"})
	pidFile := filepath.Join(dir, "pids")
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
tenants:
  - name: slow
    dsn: %q
    collector:
      exec: %s
`, dsn, grandchildArgv(pidFile)))
	store := filepath.Join(dir, "evidence.db")
	res := run(t, nil, "--evidence", store, "snapshot", "--inventory", inv, "--timeout", "1s", "--retries", "0")
	if res.code != 3 {
		t.Fatalf("snapshot exit %d, want 3\n%s%s", res.code, res.stdout, res.stderr)
	}
	if c := storedCaptures(t, store)[id]; c.outcome != "failed" || !strings.HasPrefix(c.reason, "timeout after") {
		t.Errorf("capture %s: %s", c.outcome, c.reason)
	}
	pids := awaitPIDs(t, pidFile, func() bool { return true })
	for _, pid := range pids {
		waitExited(t, pid)
	}
}

// TestSecondInterruptKillsExecGroups: the first Ctrl-C lets the capture in
// flight finish; the second exits at once (130), and the command and its
// grandchild, in a process group the terminal's signal does not reach, must
// go with backfill.
func TestSecondInterruptKillsExecGroups(t *testing.T) {
	t.Parallel()
	bin := backfillBinary(t)
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	insertRows(t, dsn, ws{id: uuidFor(74, 1), name: "slow"})
	pidFile := filepath.Join(dir, "pids")
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
tenants:
  - name: slow
    dsn: %q
    collector:
      exec: %s
`, dsn, grandchildArgv(pidFile)))
	cmd := exec.Command(bin, "--evidence", filepath.Join(dir, "evidence.db"), "snapshot", "--inventory", inv, "--timeout", "5m")
	cmd.Env = processEnv(nil)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var waitErr error
	done := false
	pids := awaitPIDs(t, pidFile, func() bool {
		select {
		case waitErr = <-exited:
			done = true
			return false
		default:
			return true
		}
	})
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	// Interrupt until it exits: signals sent back to back may be merged
	// into one, so each is sent only after the last had its chance.
	for i := 0; !done; i++ {
		if i == 100 {
			_ = cmd.Process.Kill()
			t.Fatalf("still running after %d interrupts:\n%s", i, out.String())
		}
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case waitErr = <-exited:
			done = true
		case <-time.After(100 * time.Millisecond): // interval between interrupts, not synchronisation
		}
	}
	var ee *exec.ExitError
	if !errors.As(waitErr, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit %v, want 130\n%s", waitErr, out.String())
	}
	for _, pid := range pids {
		waitExited(t, pid)
	}
}

// TestHTTPCollectorLiteralCredentialsAndEchoes: credentials written
// literally in the inventory (a header, the URL's password, a token= query
// value) and echoed back by the server into response headers, with huge
// headers besides, reach no output, log or column of the evidence store;
// only the allow-listed headers are kept, each at most 1 KiB.
func TestHTTPCollectorLiteralCredentialsAndEchoes(t *testing.T) {
	t.Parallel()
	literals := []string{"abc123literal", "cookie-literal-0f4e", "pw-literal-5a1e", "qtok-literal-73b0"}
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	ok, failing := uuidFor(75, 1), uuidFor(75, 2)
	insertRows(t, dsn, ws{id: ok, name: "ok"}, ws{id: failing, name: "failing"})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		echo := r.Header.Get("Authorization") + ";" + r.Header.Get("Cookie") + ";" + r.URL.RawQuery
		h := w.Header()
		for _, name := range []string{"Authorization", "Set-Cookie", "WWW-Authenticate", "X-Request-Id", "X-Molecule-Files-Source"} {
			h.Set(name, echo)
		}
		h.Set("X-Huge", strings.Repeat("h", 64<<10))
		h.Set("ETag", strings.Repeat("e", 8<<10))
		if strings.Contains(r.URL.Path, failing) {
			http.Error(w, "upstream said: "+echo, http.StatusBadGateway)
			return
		}
		_, _ = io.WriteString(w, seoConfig)
	}))
	t.Cleanup(srv.Close)
	url := strings.Replace(srv.URL, "http://", "http://svc:pw-literal-5a1e@", 1) +
		"/workspaces/{workspace_id}/config.yaml?access_token=qtok-literal-73b0&root=/configs"
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
tenants:
  - name: web
    dsn: %q
    collector:
      http:
        url: %q
        headers: {Authorization: "Bearer abc123literal", Cookie: "sid=cookie-literal-0f4e"}
`, dsn, url))
	store := filepath.Join(dir, "evidence.db")
	outputs := map[string]string{}
	for i, args := range [][]string{
		{"snapshot", "--inventory", inv, "--retries", "0"},
		{"--log-format", "json", "snapshot", "--inventory", inv, "--retries", "0", "--refresh"},
		{"status"},
		{"export", "--format", "json"},
		{"verify"},
	} {
		res := run(t, nil, append([]string{"--evidence", store}, args...)...)
		if want := map[string]int{"snapshot": 3, "status": 0, "export": 0, "verify": 0}[firstCommand(args)]; res.code != want {
			t.Fatalf("%v: exit %d, want %d\n%s%s", args, res.code, want, res.stdout, res.stderr)
		}
		outputs[fmt.Sprintf("stdout of run %d (%s)", i, firstCommand(args))] = res.stdout
		outputs[fmt.Sprintf("stderr of run %d (%s)", i, firstCommand(args))] = res.stderr
	}
	assertNowhere(t, store, outputs, literals...)

	c := storedCaptures(t, store)
	if c[ok].outcome != "captured" || string(c[ok].content) != seoConfig {
		t.Fatalf("capture of %s: %s %q", ok, c[ok].outcome, c[ok].reason)
	}
	wantTarget := "GET " + strings.Replace(srv.URL, "http://", "http://svc:[REDACTED]@", 1) +
		"/workspaces/" + ok + "/config.yaml?access_token=[REDACTED]&root=/configs (headers: Authorization, Cookie)"
	if c[ok].target != wantTarget {
		t.Errorf("target %q, want %q", c[ok].target, wantTarget)
	}
	for _, id := range []string{ok, failing} {
		var prov map[string]string
		if err := json.Unmarshal([]byte(c[id].provenance), &prov); err != nil {
			t.Fatal(err)
		}
		for k, v := range prov {
			if len(v) > 1024 {
				t.Errorf("%s: provenance %s has %d bytes", id, k, len(v))
			}
		}
		for _, k := range []string{"header.Authorization", "header.Set-Cookie", "header.WWW-Authenticate", "header.X-Huge"} {
			if _, found := prov[k]; found {
				t.Errorf("%s: provenance keeps %s", id, k)
			}
		}
		if prov["header.ETag"] == "" || prov["header.X-Request-Id"] == "" {
			t.Errorf("%s: allow-listed headers missing: %v", id, prov)
		}
	}
}

// firstCommand names the subcommand in args.
func firstCommand(args []string) string {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") && a != "json" {
			return a
		}
	}
	return ""
}
