package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/apply"
	"backfill/internal/cli"
	"backfill/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// syncBuffer lets a test read what a running fleet has written so far.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func noEnv(string) (string, bool) { return "", false }

// backfill runs backfill's command line in-process with the fleet's
// environment and nothing else.
func backfill(t *testing.T, lookup func(string) (string, bool), args ...string) (int, string, string) {
	t.Helper()
	var out, errb syncBuffer
	code := cli.Run(context.Background(), append([]string{"backfill"}, args...), cli.Env{
		Stdout: &out, Stderr: &errb, LookupEnv: lookup, Now: time.Now,
	})
	return code, out.String(), errb.String()
}

// waitFor polls until ready reports true, failing early if the fleet has
// exited. what names the awaited thing in the failure.
func waitFor(t *testing.T, what string, ready func() bool, exited <-chan int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !ready() {
		select {
		case code := <-exited:
			t.Fatalf("fleetsim exited %d before %s", code, what)
		case <-deadline:
			t.Fatalf("no %s within %v", what, timeout)
		case <-tick.C:
		}
	}
}

// waitFile polls for a file that a running fleet writes.
func waitFile(t *testing.T, path string, exited <-chan int, timeout time.Duration) {
	t.Helper()
	waitFor(t, path, func() bool {
		_, err := os.Stat(path)
		return err == nil
	}, exited, timeout)
}

// startCLI starts fleetsim's command line in the background and waits for
// DIR/ready and the ready message (printed just after the file is written).
// stop cancels it and returns its exit status.
func startCLI(t *testing.T, args ...string) (dir string, stdout, stderr *syncBuffer, stop func() int) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "fleet")
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan int, 1)
	go func() {
		exited <- run(ctx, append([]string{"fleetsim", "--dir", dir}, args...), stdout, stderr)
	}()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			code = <-exited
		})
		return code
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("fleetsim stdout:\n%s\nstderr:\n%s", stdout, stderr)
		}
	})
	waitFile(t, filepath.Join(dir, fileReady), exited, 2*time.Minute)
	waitFor(t, "ready message", func() bool {
		return strings.Contains(stdout.String(), "Ctrl-C stops the fleet")
	}, exited, time.Minute)
	return dir, stdout, stderr, stop
}

// TestFleetThroughBackfill stands up a small fleet, runs snapshot, plan,
// approve and apply --execute in-process, and holds the plan and the
// databases against the answer key, workspace by workspace.
func TestFleetThroughBackfill(t *testing.T) {
	admin := pgtest.NewDB(t)
	dir, stdout, _, _ := startCLI(t, "--pg", admin, "--tenants", "3", "--workspaces", "40", "--seed", "7")
	if !strings.Contains(stdout.String(), "source "+dir) {
		t.Errorf("ready message lacks the source hint:\n%s", stdout)
	}
	key, err := loadKey(filepath.Join(dir, fileKey))
	if err != nil {
		t.Fatal(err)
	}
	lookup, err := fleetEnv(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, fileEnv)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("env file: %v %v, want mode 0600", fi.Mode(), err)
	}
	token, _ := lookup(tokenEnv)
	for _, name := range []string{fileInventory, fileCP, fileKey} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if token == "" || bytes.Contains(b, []byte(token)) {
			t.Errorf("%s holds the token (or there is none: %q)", name, token)
		}
	}

	work := t.TempDir()
	ev := filepath.Join(work, "evidence.db")
	inv := filepath.Join(dir, fileInventory)
	planPath := filepath.Join(work, "plan.json")

	// Exit 3: the no-evidence workspaces are gone.
	code, out, errs := backfill(t, lookup, "--evidence", ev, "snapshot", "--inventory", inv)
	if code != cli.ExitPartial || !strings.Contains(out, "gone 2") {
		t.Fatalf("snapshot: exit %d, want 3 with 2 gone\n%s\n%s", code, out, errs)
	}
	code, out, errs = backfill(t, lookup, "--evidence", ev, "plan", "--inventory", inv, "--cp", filepath.Join(dir, fileCP),
		"--catalog", filepath.Join(dir, dirCatalog), "--out", planPath, "--report", filepath.Join(work, "plan.md"), "--author", "operator")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errs)
	}
	p, err := apply.LoadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]apply.Item{}
	for _, it := range p.Items {
		items[it.Key()] = it
	}
	seen := map[apply.Verdict]bool{}
	planned, agree := 0, 0
	for _, w := range key.Workspaces {
		it, ok := items[w.Tenant+"/"+w.WorkspaceID]
		if w.Verdict == "" {
			if ok {
				t.Errorf("%s (%s): planned as %s, but the key says snapshot never lists it", w.WorkspaceID, w.Name, it.Verdict)
			}
			continue
		}
		planned++
		if w.Verdict == apply.Agree {
			agree++
		}
		switch {
		case !ok:
			t.Errorf("%s (%s): no plan item, key says %s", w.WorkspaceID, w.Name, w.Verdict)
		case it.Verdict != w.Verdict || it.Drift != w.Drift:
			t.Errorf("%s (%s, %s): plan says %s drift=%v (%s), key says %s drift=%v",
				w.WorkspaceID, w.Name, w.Case, it.Verdict, it.Drift, it.Reason, w.Verdict, w.Drift)
		}
		seen[it.Verdict] = true
	}
	if len(p.Items) != planned {
		t.Errorf("plan has %d items, the key plans %d", len(p.Items), planned)
	}
	for _, v := range apply.Verdicts {
		if _, skip := notSimulated[v]; !seen[v] && !skip {
			t.Errorf("verdict %s does not occur in the small fleet", v)
		}
	}

	if code, out, errs = backfill(t, lookup, "--evidence", ev, "approve", planPath, "--by", "reviewer"); code != 0 {
		t.Fatalf("approve: exit %d\n%s\n%s", code, out, errs)
	}
	code, out, errs = backfill(t, lookup, "--evidence", ev, "apply", "--inventory", inv, "--plan", planPath, "--execute", "--operator", "operator")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("summary: applied %d\n", agree)) {
		t.Fatalf("apply --execute: exit %d, want 0 and %d applied\n%s\n%s", code, agree, out, errs)
	}
	c, err := compareTemplates(context.Background(), key, lookup)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Mismatches) > 0 || c.Checked != len(key.Workspaces) {
		t.Fatalf("after apply, %d of %d checked: %s", len(c.Mismatches), c.Checked, strings.Join(c.Mismatches, "\n"))
	}

	var cout, cerr syncBuffer
	if code := run(context.Background(), []string{"fleetsim", "check", "--dir", dir, "--plan", planPath}, &cout, &cerr); code != 0 {
		t.Fatalf("fleetsim check: exit %d\n%s\n%s", code, &cout, &cerr)
	}
	if !strings.Contains(cout.String(), fmt.Sprintf("templates: all %d workspaces match", len(key.Workspaces))) ||
		!strings.Contains(cout.String(), fmt.Sprintf("plan verdicts: all %d workspaces match", planned)) {
		t.Errorf("check output:\n%s", &cout)
	}

	// A row that differs from the key is named, and check fails.
	var victim keyWorkspace
	for _, w := range key.Workspaces {
		if w.Verdict == apply.Default {
			victim = w
			break
		}
	}
	dsn, _ := lookup(dsnEnv(victim.Tenant))
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(context.Background(), `UPDATE workspaces SET template = 'seo-agent' WHERE id = $1`, victim.WorkspaceID)
	conn.Close(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cout, cerr = syncBuffer{}, syncBuffer{}
	code = run(context.Background(), []string{"fleetsim", "check", "--dir", dir}, &cout, &cerr)
	if code != exitError || !strings.Contains(cout.String(), "MISMATCH templates: "+victim.Tenant+"/"+victim.WorkspaceID) ||
		!strings.Contains(cout.String(), "1 mismatches") {
		t.Fatalf("check after tampering: exit %d\n%s\n%s", code, &cout, &cerr)
	}
}

// TestRestartWave runs a wave that starts at once at a high rate and checks
// that every live config ends up the runtime default's bytes, custom ones
// overwritten first; then that stopping the fleet drops its databases.
func TestRestartWave(t *testing.T) {
	admin := pgtest.NewDB(t)
	dir, _, stderr, stop := startCLI(t, "--pg", admin, "--tenants", "3", "--workspaces", "30",
		"--restart-wave-after", "1ms", "--restart-rate", "5000")
	exited := make(chan int)
	waitFile(t, filepath.Join(dir, fileWaveDone), exited, time.Minute)

	key, err := loadKey(filepath.Join(dir, fileKey))
	if err != nil {
		t.Fatal(err)
	}
	overwritten := 0
	for _, w := range key.Workspaces {
		path := filepath.Join(dir, dirLive, w.Tenant, w.WorkspaceID, "config.yaml")
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) && w.LiveConfig == "missing" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		want := catalogConfig(defaultTemplate(w.Runtime))
		if w.Row != rowLive {
			// Removed right after its capture: never restarted.
			if bytes.Equal(b, want) && w.LiveConfig != defaultTemplate(w.Runtime) {
				t.Errorf("%s (%s): a workspace on its way out was restarted", w.WorkspaceID, w.Name)
			}
			continue
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s (%s): live config is not %s's bytes after the wave:\n%s", w.WorkspaceID, w.Name, defaultTemplate(w.Runtime), b)
		}
		overwritten++
	}
	lf, err := os.Open(filepath.Join(dir, fileWaveLog))
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	var lines, custom int
	sawDefault := false
	sc := bufio.NewScanner(lf)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 {
			t.Fatalf("wave log line %q", sc.Text())
		}
		lines++
		switch f[3] {
		case "custom":
			custom++
			if sawDefault {
				t.Errorf("custom config %s overwritten after a default one", f[2])
			}
		case "default":
			sawDefault = true
		}
	}
	if lines != overwritten || custom == 0 || !sawDefault {
		t.Errorf("wave log: %d lines (%d custom), %d live configs overwritten", lines, custom, overwritten)
	}

	lookup, err := fleetEnv(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("fleetsim exited %d on stop:\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, fileReady)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("DIR/ready still there after stop: %v", err)
	}
	for _, tn := range key.Tenants {
		dsn, _ := lookup(tn.DSNEnv)
		if conn, err := pgx.Connect(context.Background(), dsn); err == nil {
			conn.Close(context.Background())
			t.Errorf("tenant %s's database still exists after stop", tn.Name)
		}
	}
}

// TestOwnCluster runs fleetsim without --pg: it starts its own cluster and
// removes it whole on stop.
func TestOwnCluster(t *testing.T) {
	if os.Getenv(pgtest.EnvDatabaseURL) != "" {
		t.Skipf("%s is set: this machine may have no PostgreSQL binaries for a private cluster", pgtest.EnvDatabaseURL)
	}
	pgtest.NewDB(t) // skips (or fails under CI) without PostgreSQL
	dir, _, stderr, stop := startCLI(t, "--tenants", "3", "--workspaces", "25")
	lookup, err := fleetEnv(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	dsn, _ := lookup(dsnEnv(tenantName(0)))
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	socketDir := u.Query().Get("host")
	if _, err := os.Stat(socketDir); err != nil || !strings.HasPrefix(socketDir, "/tmp/") {
		t.Fatalf("cluster dir %q from the DSN: %v", socketDir, err)
	}
	if code := stop(); code != 0 {
		t.Fatalf("fleetsim exited %d on stop:\n%s", code, stderr)
	}
	if _, err := os.Stat(socketDir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("cluster dir %s still there after stop: %v", socketDir, err)
	}
}

func TestDesignIsDeterministicAndCoversTheTable(t *testing.T) {
	keyBytes := func(tenants, workspaces int, seed uint64) []byte {
		t.Helper()
		f, err := design(tenants, workspaces, seed)
		if err != nil {
			t.Fatal(err)
		}
		return f.key().marshal()
	}
	a, b := keyBytes(defaultTenants, defaultWorkspaces, 1), keyBytes(defaultTenants, defaultWorkspaces, 1)
	if !bytes.Equal(a, b) {
		t.Error("the same seed gives two answer keys")
	}
	if bytes.Equal(a, keyBytes(defaultTenants, defaultWorkspaces, 2)) {
		t.Error("another seed gives the same answer key")
	}
	for _, size := range [][2]int{{defaultTenants, defaultWorkspaces}, {3, 40}, {5, 1000}} {
		f, err := design(size[0], size[1], 1)
		if err != nil {
			t.Fatal(err)
		}
		k := f.key()
		if len(k.Workspaces) != size[1] || len(k.Tenants) != size[0] {
			t.Errorf("%v: %d tenants, %d workspaces", size, len(k.Tenants), len(k.Workspaces))
		}
		for _, v := range apply.Verdicts {
			if _, skip := notSimulated[v]; (k.Counts[string(v)] == 0) != skip {
				t.Errorf("%v: verdict %s: %d workspaces", size, v, k.Counts[string(v)])
			}
		}
		for _, w := range k.Workspaces {
			if w.Verdict == apply.Agree && w.Template == "" {
				t.Errorf("%v: agree without a final template: %+v", size, w)
			}
		}
	}
	if _, err := design(3, 20, 1); err == nil || !strings.Contains(err.Error(), "use at least") {
		t.Errorf("too few workspaces: %v", err)
	}
	if _, err := design(2, 200, 1); err == nil {
		t.Error("two tenants accepted")
	}
}

func TestUsage(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
	}{
		{[]string{"fleetsim"}, exitUsage},
		{[]string{"fleetsim", "--dir", t.TempDir(), "--error-rate", "1"}, exitUsage},
		{[]string{"fleetsim", "--dir", t.TempDir(), "extra"}, exitUsage},
		{[]string{"fleetsim", "--dir", t.TempDir(), "--tenants", "2"}, exitError},
		{[]string{"fleetsim", "check"}, exitUsage},
		{[]string{"fleetsim", "check", "--dir", t.TempDir()}, exitError}, // no answer key
		{[]string{"fleetsim", "-h"}, exitOK},
	} {
		var out, errb syncBuffer
		if code := run(context.Background(), tt.args, &out, &errb); code != tt.code {
			t.Errorf("%q: exit %d, want %d\n%s", tt.args, code, tt.code, &errb)
		}
	}
	// A directory holding anything is refused before any database is made.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "answer-key.json"), []byte("{}"), 0o644)
	var out, errb syncBuffer
	if code := run(context.Background(), []string{"fleetsim", "--dir", dir}, &out, &errb); code != exitError || !strings.Contains(errb.String(), "not empty") {
		t.Errorf("non-empty dir: exit %d\n%s", code, &errb)
	}
}

func TestEnvFileRoundTrip(t *testing.T) {
	vals := map[string]string{"A": "postgres://u:p'w@/db?host=/tmp/x&port=5432", "B": "", "C": `it's "quoted" $HOME`}
	got, err := parseEnvFile(envFile([]string{"A", "B", "C"}, vals))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vals {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}
