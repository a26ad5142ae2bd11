package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"

	"backfill/apply/plan"
	"backfill/internal/cli"
	"backfill/internal/filesapi"
	"backfill/internal/inventory"
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
//
// It needs backfill's files_api collector and collector chains; until they
// are in this tree it skips, saying so (see skipUntilFilesAPI).
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
	for _, tn := range key.Tenants {
		for _, env := range []string{tn.TokenEnv, tn.OrgEnv} {
			secret, _ := lookup(env)
			for _, name := range []string{fileInventory, fileCP, fileKey} {
				b, _ := os.ReadFile(filepath.Join(dir, name))
				if secret == "" || bytes.Contains(b, []byte(secret)) {
					t.Errorf("%s holds %s's value (or it has none: %q)", name, env, secret)
				}
			}
		}
	}

	work := t.TempDir()
	ev := filepath.Join(work, "evidence.db")
	inv := filepath.Join(dir, fileInventory)
	planPath := filepath.Join(work, "plan.json")
	skipUntilFilesAPI(t, inv, lookup)

	// Exit 3: the no-evidence workspaces have no capture.
	code, out, errs := backfill(t, lookup, "--evidence", ev, "snapshot", "--inventory", inv)
	if code != cli.ExitPartial {
		t.Fatalf("snapshot: exit %d, want 3\n%s\n%s", code, out, errs)
	}
	code, out, errs = backfill(t, lookup, "--evidence", ev, "plan", "--inventory", inv, "--cp", filepath.Join(dir, fileCP),
		"--catalog", filepath.Join(dir, dirCatalog), "--manifest", filepath.Join(dir, fileManifest),
		"--out", planPath, "--report", filepath.Join(work, "plan.md"), "--author", "operator")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s\n%s", code, out, errs)
	}
	p, err := plan.LoadPlan(planPath)
	if err != nil {
		t.Fatal(err)
	}
	items := map[string]plan.Item{}
	for _, it := range p.Items {
		items[it.Key()] = it
	}
	seen := map[plan.Verdict]bool{}
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
		if w.Verdict == plan.Agree {
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
	for _, v := range plan.Verdicts {
		if _, skip := notSimulated[v]; !seen[v] && !skip {
			t.Errorf("verdict %s does not occur in the small fleet", v)
		}
	}

	if code, out, errs = backfill(t, lookup, "--evidence", ev, "approve", planPath, "--by", "reviewer",
		"--cp", filepath.Join(dir, fileCP), "--catalog", filepath.Join(dir, dirCatalog), "--manifest", filepath.Join(dir, fileManifest)); code != 0 {
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
		if w.Verdict == plan.Default {
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
	dir, _, stderr, stop := startCLI(t, "--pg", admin, "--tenants", "3", "--workspaces", "36",
		"--restart-wave-after", "1ms", "--restart-rate", "5000")
	exited := make(chan int)
	waitFile(t, filepath.Join(dir, fileWaveDone), exited, time.Minute)

	key, err := loadKey(filepath.Join(dir, fileKey))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := design(3, 36, defaultSeed) // the same flags give the same fleet
	if err != nil {
		t.Fatal(err)
	}
	overwritten := 0
	for _, tn := range spec.Tenants {
		for _, w := range tn.Workspaces {
			for _, store := range tn.stores(dir, w) {
				b, err := os.ReadFile(filepath.Join(store, "config.yaml"))
				if errors.Is(err, fs.ErrNotExist) && w.Live == nil {
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if w.After != "" {
					// Removed right after its capture: never restarted.
					if !bytes.Equal(b, w.Live) {
						t.Errorf("%s (%s): a workspace on its way out was restarted", w.ID, w.Name)
					}
					continue
				}
				if !bytes.Equal(b, w.restartConfig()) {
					t.Errorf("%s (%s): config in %s is not what a restart provisions after the wave:\n%s", w.ID, w.Name, store, b)
				}
				overwritten++
			}
		}
	}
	if len(key.Workspaces) != 36 {
		t.Errorf("key has %d workspaces", len(key.Workspaces))
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
	dir, _, stderr, stop := startCLI(t, "--tenants", "3", "--workspaces", "32")
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
		for _, v := range plan.Verdicts {
			if _, skip := notSimulated[v]; (k.Counts[string(v)] == 0) != skip {
				t.Errorf("%v: verdict %s: %d workspaces", size, v, k.Counts[string(v)])
			}
		}
		for _, w := range k.Workspaces {
			if w.Verdict == plan.Agree && w.Template == "" {
				t.Errorf("%v: agree without a final template: %+v", size, w)
			}
		}
	}
	if _, err := design(3, 31, 1); err == nil || !strings.Contains(err.Error(), "use at least 32") {
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
		{[]string{"fleetsim", "--dir", t.TempDir(), "--rate-limit", "600"}, exitUsage},
		{[]string{"fleetsim", "--dir", t.TempDir(), "--rate-limit", "10/ms"}, exitUsage},
		{[]string{"fleetsim", "--dir", t.TempDir(), "--files-api-rate", "-1"}, exitUsage},
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

// skipUntilFilesAPI skips a test that runs backfill on the fleet while
// this tree's backfill cannot read its inventory because it lacks the
// files_api collector or collector chains, and fails on any other error.
func skipUntilFilesAPI(t *testing.T, inv string, lookup func(string) (string, bool)) {
	t.Helper()
	_, err := inventory.Load(inv, lookup)
	if err == nil {
		return
	}
	// Every line must be one of the errors an inventory parser without
	// files_api and collectors gives; anything else is a broken inventory.
	missing := []string{`unknown key "files_api"`, `unknown key "collectors"`, "it sets none", "no collector: the tenant sets none"}
	for _, line := range strings.Split(strings.TrimSpace(err.Error()), "\n") {
		known := false
		for _, m := range missing {
			known = known || strings.Contains(line, m)
		}
		if !known {
			t.Fatalf("the fleet's inventory does not load: %v", err)
		}
	}
	t.Skipf("backfill in this tree has no files_api collector or collector chains yet, which the fleet's inventory uses: %v", err)
}

// TestKeyCoversEveryCase holds the answer key to the cases the fleet
// exists for, at the demo's size and the tests' smallest: every special
// case is in it, every tenant kind and every source a collector can end
// at occurs, and each planned verdict agrees with where the config can be
// read from (no-evidence exactly when nothing the tool may count answers).
func TestKeyCoversEveryCase(t *testing.T) {
	for _, size := range [][2]int{{defaultTenants, defaultWorkspaces}, {3, 32}, {3, 40}} {
		f, err := design(size[0], size[1], defaultSeed)
		if err != nil {
			t.Fatal(err)
		}
		k := f.key()
		byCase := map[string]keyWorkspace{}
		reads, kinds := map[string]bool{}, map[string]bool{}
		for _, tn := range k.Tenants {
			kinds[tn.Kind] = true
		}
		for _, w := range k.Workspaces {
			name, _, _ := strings.Cut(w.Case, ":")
			byCase[name] = w
			reads[w.ReadFrom] = true
			if w.Verdict == "" || w.Verdict == plan.Removed || w.Verdict == plan.AlreadySet {
				continue
			}
			if (w.Verdict == plan.NoEvidence) == isEvidence(w.ReadFrom) {
				t.Errorf("%v: %s (%s): verdict %s but read_from %s", size, w.Name, w.Case, w.Verdict, w.ReadFrom)
			}
		}
		for _, sp := range specials {
			if _, ok := byCase[sp.name]; !ok {
				t.Errorf("%v: special case %s is not in the key", size, sp.name)
			}
		}
		for _, kind := range []string{kindHosted, kindSelfExec, kindSelfAPI} {
			if !kinds[kind] {
				t.Errorf("%v: no %s tenant", size, kind)
			}
		}
		for _, r := range []string{readExec, readFile, readEIC, readContainer, readHostMirror, readTemplateDir, readNone} {
			if !reads[r] {
				t.Errorf("%v: no workspace read from %s", size, r)
			}
		}
		want := []struct {
			name, verdict, readFrom, container, template string
		}{
			// A stub named like a template, its container down: the files
			// API answers from the template folder. Never agree.
			{"template-dir-trap", "no-evidence", readTemplateDir, containerAbsent, ""},
			{"container-listing-without-config", "no-evidence", readTemplateDir, containerRunning, ""},
			{"renamed-runtime-default", "unknown-template", "", "", ""},
			{"default-renamed-like-template", "unknown-template", "", "", ""},
			// Hibernated and stopped self-hosted: exec fails, the volume answers.
			{"hibernated-exec-file", "agree", readFile, containerAbsent, seoAgent},
			{"stopped-exec-file", "agree", readFile, containerExited, seoAgent},
			{"hibernated-host-mirror", "agree", readHostMirror, containerAbsent, seoAgent},
			{"eic", "agree", readEIC, containerRunning, seoAgent},
			{"paused-self-hosted-files-api", "no-evidence", readNone, containerAbsent, ""},
			{"no-evidence-files-api", "no-evidence", readNone, "", ""},
		}
		for _, c := range want {
			w := byCase[c.name]
			if string(w.Verdict) != c.verdict || (c.readFrom != "" && w.ReadFrom != c.readFrom) ||
				(c.container != "" && w.Container != c.container) || w.Template != c.template {
				t.Errorf("%v: %s: verdict %s, read_from %s, container %s, final %q; want %s %s %s %q",
					size, c.name, w.Verdict, w.ReadFrom, w.Container, w.Template, c.verdict, c.readFrom, c.container, c.template)
			}
		}
		if w := byCase["template-dir-trap"]; w.Runtime != "hermes" {
			t.Errorf("%v: the trap's row runtime %q, want the column default hermes", size, w.Runtime)
		}
		// Concierges: kind platform, hermes, named as the platform names
		// them; agree platform-agent wherever the CP claims it.
		concierges := 0
		for _, tn := range f.Tenants {
			c := tn.Workspaces[0]
			concierges++
			if c.Kind != "platform" || c.Runtime != "hermes" || (c.Name != "Org Concierge" && c.Name != orgTitle(tn.Name)+" Agent") {
				t.Errorf("%v: %s's concierge: %+v", size, tn.Name, c)
			}
			if tn.Claim != "" && (c.Verdict != plan.Agree || c.Final != platformAgent) {
				t.Errorf("%v: %s's concierge: %s -> %q, want agree platform-agent", size, tn.Name, c.Verdict, c.Final)
			}
			if !bytes.Contains(c.Live, []byte("name: "+c.Name+"\n")) || !bytes.Contains(c.Live, []byte("runtime: hermes\n")) {
				t.Errorf("%v: concierge config:\n%s", size, c.Live)
			}
		}
		if concierges != len(f.Tenants) {
			t.Errorf("%v: %d concierges", size, concierges)
		}
	}
	// The concierge's config is the runtime's base, renamed, required_env emptied.
	cc := string(conciergeConfig("claude-code", "Acme Agent"))
	if !strings.Contains(cc, "name: Acme Agent\n") || !strings.Contains(cc, "description: "+conciergeRole+"\n") ||
		strings.Contains(cc, "CLAUDE_CODE_OAUTH_TOKEN\n") || !strings.Contains(cc, "required_env: []") {
		t.Errorf("claude-code concierge config:\n%s", cc)
	}
}

// fakeClock is the rate limiter's time, moved by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// testFleet is a fleet's files on disk and its tenants' files API servers
// on loopback, without databases: the servers read rows from memory.
type testFleet struct {
	dir   string
	spec  *fleetSpec
	f     *fleet
	urls  map[string]string
	plats map[string]*filesapi.Platform
	clock *fakeClock
}

func newTestFleet(t *testing.T, rateLimit string) *testFleet {
	t.Helper()
	spec, err := design(3, 40, defaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := writeCatalog(filepath.Join(dir, dirCatalog), filepath.Join(dir, fileManifest)); err != nil {
		t.Fatal(err)
	}
	if err := writeHosts(dir, spec); err != nil {
		t.Fatal(err)
	}
	limit, window, err := filesapi.ParseRateLimit(rateLimit)
	if err != nil {
		t.Fatal(err)
	}
	tf := &testFleet{dir: dir, spec: spec, urls: map[string]string{}, plats: map[string]*filesapi.Platform{},
		clock: &fakeClock{now: time.Date(2025, 3, 1, 12, 0, 17, 0, time.UTC)}}
	tf.f = &fleet{opts: options{RateLimit: limit, RateWindow: window}, spec: spec, dir: dir,
		creds: map[string]creds{}, hosts: map[string]*tenantHost{}}
	for _, tn := range spec.Tenants {
		tf.f.creds[tn.Name] = newCreds()
		host := newTenantHost(dir, tn)
		tf.f.hosts[tn.Name] = host
		p := tf.f.platform(tn, host)
		if p.Limiter != nil {
			p.Limiter.Now = tf.clock.Now
		}
		srv := httptest.NewServer(p.Handler())
		t.Cleanup(srv.Close)
		tf.urls[tn.Name], tf.plats[tn.Name] = srv.URL, p
	}
	return tf
}

// special finds the workspace of a special case, and its tenant.
func (tf *testFleet) special(t *testing.T, name string) (*tenantSpec, *workspaceSpec) {
	t.Helper()
	for _, tn := range tf.spec.Tenants {
		for _, w := range tn.Workspaces {
			if strings.HasPrefix(w.Case, name+": ") {
				return tn, w
			}
		}
	}
	t.Fatalf("no special case %s", name)
	return nil, nil
}

// tenantOf finds the first tenant of a kind.
func (tf *testFleet) tenantOf(t *testing.T, kind string) *tenantSpec {
	t.Helper()
	for _, tn := range tf.spec.Tenants {
		if tn.Kind == kind {
			return tn
		}
	}
	t.Fatalf("no %s tenant", kind)
	return nil
}

// response is one files API answer.
type response struct {
	code   int
	header http.Header
	body   []byte
}

func (r response) source() string { return r.header.Get(filesapi.HeaderSource) }

// get sends a GET to tenant's server with its token and org id; hdr
// overrides them (an empty value drops the header).
func (tf *testFleet) get(t *testing.T, tenant, path string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, tf.urls[tenant]+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := tf.f.creds[tenant]
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set(filesapi.HeaderOrg, c.org)
	for k, v := range hdr {
		req.Header.Del(k)
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, body}
}

func readPath(id string) string { return "/workspaces/" + id + "/files/config.yaml?root=/configs" }
func listPath(id string) string { return "/workspaces/" + id + "/files?root=/configs" }

// readBody decodes a 200 ReadFile answer and checks its shape: exactly
// path, content and size, and no source header.
func readBody(t *testing.T, r response) (content string, size int) {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("ReadFile: %d %s", r.code, r.body)
	}
	if r.source() != "" {
		t.Errorf("ReadFile sent %s: %s; the platform never does", filesapi.HeaderSource, r.source())
	}
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("ReadFile body %s: %v", r.body, err)
	}
	if len(m) != 3 || m["path"] != "config.yaml" {
		t.Errorf("ReadFile body keys: %s", r.body)
	}
	return m["content"].(string), int(m["size"].(float64))
}

// listBody decodes a 200 ListFiles answer: a bare array of {path,size,dir}.
func listBody(t *testing.T, r response) []filesapi.ListEntry {
	t.Helper()
	if r.code != http.StatusOK {
		t.Fatalf("ListFiles: %d %s", r.code, r.body)
	}
	var raw []map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatalf("ListFiles body %s: not a bare array: %v", r.body, err)
	}
	var out []filesapi.ListEntry
	for _, e := range raw {
		if len(e) != 3 {
			t.Errorf("ListFiles entry %v: want exactly path, size, dir", e)
		}
		out = append(out, filesapi.ListEntry{Path: e["path"].(string), Size: int64(e["size"].(float64)), Dir: e["dir"].(bool)})
	}
	return out
}

func errorBody(t *testing.T, r response, code int, msg string) {
	t.Helper()
	if r.code != code || string(r.body) != `{"error":`+strconv.Quote(msg)+`}` {
		t.Errorf("got %d %s, want %d {\"error\":%q}", r.code, r.body, code, msg)
	}
	if r.source() != "" {
		t.Errorf("an error carries %s: %s", filesapi.HeaderSource, r.source())
	}
}

func hasFile(entries []filesapi.ListEntry, name string) bool {
	for _, e := range entries {
		if e.Path == name && !e.Dir {
			return true
		}
	}
	return false
}

// TestFilesAPISources reads each kind of workspace through both routes:
// ReadFile's body and its silence about the source, ListFiles' array and
// its X-Molecule-Files-Source, and the 404s that tell the cases apart.
func TestFilesAPISources(t *testing.T) {
	tf := newTestFleet(t, "unlimited")
	seo := string(catalogConfig(seoAgent))
	for _, c := range []struct {
		special, source, content string // content "": the workspace's own live config
		listsConfig              bool
	}{
		{"eic", filesapi.SourceEIC, "", true},
		{"hibernated-host-mirror", filesapi.SourceHostMirror, "", true},
		{"stub-named-like-template", "", "", true}, // source per tenant kind, below
		{"template-dir-trap", filesapi.SourceTemplateDir, seo, true},
		{"container-listing-without-config", filesapi.SourceContainer, seo, false},
	} {
		t.Run(c.special, func(t *testing.T) {
			tn, w := tf.special(t, c.special)
			want, source := c.content, c.source
			if want == "" {
				want = string(w.Live)
			}
			if source == "" {
				source = map[string]string{kindHosted: filesapi.SourceHostMirror, kindSelfAPI: filesapi.SourceContainer, kindSelfExec: filesapi.SourceContainer}[tn.Kind]
			}
			if source == filesapi.SourceContainer && c.content == "" {
				want = strings.TrimSpace(want) // cat's output, trimmed
			}
			got, size := readBody(t, tf.get(t, tn.Name, readPath(w.ID), nil))
			if got != want || size != len(want) {
				t.Errorf("ReadFile: size %d content:\n%s\nwant:\n%s", size, got, want)
			}
			lr := tf.get(t, tn.Name, listPath(w.ID), nil)
			entries := listBody(t, lr)
			if lr.source() != source {
				t.Errorf("ListFiles source %q, want %q", lr.source(), source)
			}
			if hasFile(entries, "config.yaml") != c.listsConfig {
				t.Errorf("ListFiles lists config.yaml: %v, want %v: %+v", !c.listsConfig, c.listsConfig, entries)
			}
		})
	}

	// Nothing to answer from: ListFiles 200 [] (none), ReadFile 404.
	for _, name := range []string{"no-evidence-files-api", "paused-self-hosted-files-api"} {
		tn, w := tf.special(t, name)
		lr := tf.get(t, tn.Name, listPath(w.ID), nil)
		if string(lr.body) != "[]" || lr.source() != filesapi.SourceNone {
			t.Errorf("%s: ListFiles %d %s source %q, want 200 [] none", name, lr.code, lr.body, lr.source())
		}
		errorBody(t, tf.get(t, tn.Name, readPath(w.ID), nil), http.StatusNotFound, filesapi.ErrNoTemplate)
	}

	// An unknown workspace, on both routes, and a malformed id.
	hosted := tf.tenantOf(t, kindHosted)
	for _, p := range []string{readPath("00000000-0000-4000-8000-000000000000"), listPath("00000000-0000-4000-8000-000000000000"), readPath("not-a-uuid")} {
		errorBody(t, tf.get(t, hosted.Name, p, nil), http.StatusNotFound, filesapi.ErrWorkspaceNotFound)
	}

	// A host mirror without the file: 404, and no fall-through to a
	// template folder even for a workspace named like one.
	tn, w := tf.special(t, "hibernated-host-mirror")
	if err := os.Remove(filepath.Join(mirrorDir(tf.dir, tn.Name, w.ID), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	errorBody(t, tf.get(t, tn.Name, readPath(w.ID), nil), http.StatusNotFound, filesapi.ErrNotInMirror)

	// EC2: the chain stops at EIC. A missing file is 404, a terminated
	// instance 500, on both routes.
	tn, w = tf.special(t, "eic")
	idir := instanceDir(tf.dir, tn.Name, w.InstanceID)
	if err := os.Remove(filepath.Join(idir, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	errorBody(t, tf.get(t, tn.Name, readPath(w.ID), nil), http.StatusNotFound, filesapi.ErrNotOnWorkspace)
	if err := os.RemoveAll(filepath.Dir(idir)); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{readPath(w.ID), listPath(w.ID)} {
		r := tf.get(t, tn.Name, p, nil)
		if r.code != http.StatusInternalServerError || !bytes.Contains(r.body, []byte(`"error":"failed to`)) {
			t.Errorf("terminated instance %s: %d %s", p, r.code, r.body)
		}
	}

	// Bad requests.
	for _, c := range []struct {
		path string
		code int
		msg  string
	}{
		{"/workspaces/" + w.ID + "/files/config.yaml?root=/etc", http.StatusBadRequest, "root must be one of: /configs, /workspace, /home, /plugins, /agent-home"},
		{"/workspaces/" + w.ID + "/files?root=/configs&path=../etc", http.StatusBadRequest, "invalid path"},
		{"/workspaces/" + w.ID + "/files?root=/configs&depth=9", http.StatusBadRequest, "depth must be between 1 and 5"},
	} {
		errorBody(t, tf.get(t, tn.Name, c.path, nil), c.code, c.msg)
	}
	if r := tf.get(t, tn.Name, "/workspaces/"+w.ID+"/files/config.yaml?root=/agent-home", nil); r.code != http.StatusNotImplemented {
		t.Errorf("root=/agent-home: %d %s", r.code, r.body)
	}
	// root defaults to /configs.
	tn, w = tf.special(t, "hibernated-exec-file")
	// (self-hosted, container removed, named like no template: 404)
	errorBody(t, tf.get(t, tn.Name, "/workspaces/"+w.ID+"/files/config.yaml", nil), http.StatusNotFound, filesapi.ErrNoTemplate)

	// Auth: the bearer token is required on every route.
	for _, hdr := range []map[string]string{{"Authorization": ""}, {"Authorization": "Bearer wrong-token"}} {
		if r := tf.get(t, tn.Name, readPath(w.ID), hdr); r.code != http.StatusUnauthorized {
			t.Errorf("auth %v: %d %s", hdr, r.code, r.body)
		}
	}
}

// TestFilesAPIFallbackOrder walks one workspace down ReadFile's chain by
// taking each source away in turn: running container, host mirror,
// template folder by name, nothing. ListFiles follows, naming each.
func TestFilesAPIFallbackOrder(t *testing.T) {
	tf := newTestFleet(t, "unlimited")
	tn := tf.tenantOf(t, kindSelfAPI)
	w := tn.Workspaces[0] // the concierge: running, named "Org Concierge" or "<Org> Agent"
	if w.Name != "Org Concierge" {
		t.Fatalf("want the self-hosted files API tenant's concierge named Org Concierge, got %q", w.Name)
	}
	// A mirror too, with other bytes, so each answer shows where it came from.
	state := t.TempDir()
	p := tf.plats[tn.Name]
	p.StateDir = state
	mirror := filepath.Join(state, w.ID, "configs")
	os.MkdirAll(mirror, 0o755)
	os.WriteFile(filepath.Join(mirror, "config.yaml"), []byte("name: from the mirror\n"), 0o644)
	read := func() string {
		r := tf.get(t, tn.Name, readPath(w.ID), nil)
		if r.code != http.StatusOK {
			return fmt.Sprintf("%d %s", r.code, r.body)
		}
		c, _ := readBody(t, r)
		return c
	}
	list := func() string { return tf.get(t, tn.Name, listPath(w.ID), nil).source() }

	if got, want := read(), strings.TrimSpace(string(w.Live)); got != want || list() != filesapi.SourceContainer {
		t.Errorf("running container: %q (%s), want its config trimmed", got, list())
	}
	// docker stop: the server's lookup only finds running containers.
	state0 := filepath.Join(tf.dir, dirContainers, containerName(w.ID))
	os.WriteFile(state0, []byte("exited "+containerID(containerName(w.ID))+"\n"), 0o644)
	if got := read(); got != "name: from the mirror\n" || list() != filesapi.SourceHostMirror {
		t.Errorf("stopped container: %q (%s), want the host mirror's bytes", got, list())
	}
	// No mirror: the template whose config's name: is the workspace's name.
	os.RemoveAll(filepath.Join(state, w.ID))
	if got := read(); got != string(catalogConfig(platformAgent)) || list() != filesapi.SourceTemplateDir {
		t.Errorf("no mirror: %q (%s), want platform-agent's template config", got, list())
	}
	// Without a matching template folder: nothing.
	p.TemplateDirs = []string{t.TempDir()}
	if got := read(); got != `404 {"error":"`+filesapi.ErrNoTemplate+`"}` || list() != filesapi.SourceNone {
		t.Errorf("nothing left: %q (%s)", got, list())
	}
	// A running container whose cat fails falls through (ListFiles still
	// says container): restart it with no config.yaml in its volume.
	p.TemplateDirs = []string{filepath.Join(tf.dir, dirCatalog)}
	os.WriteFile(state0, []byte("running "+containerID(containerName(w.ID))+"\n"), 0o644)
	os.Remove(filepath.Join(volumeDir(tf.dir, containerName(w.ID)), "config.yaml"))
	if got := read(); got != string(catalogConfig(platformAgent)) || list() != filesapi.SourceContainer {
		t.Errorf("container without config.yaml: %q (%s), want the template's bytes under a container listing", got, list())
	}
	// The folder named like the workspace (lower case, spaces as dashes).
	if d, ok := filesapi.ResolveTemplateDir([]string{filepath.Join(tf.dir, dirCatalog)}, "SEO agent"); !ok || filepath.Base(d) != seoAgent {
		t.Errorf("resolve %q: %s %v", "SEO agent", d, ok)
	}
	if _, ok := filesapi.ResolveTemplateDir([]string{filepath.Join(tf.dir, dirCatalog)}, ".."); ok {
		t.Error("resolve ..: found a folder")
	}
}

// TestFilesAPIContentFidelity: a container read is cut at 5 MiB and
// trimmed; a mirror read is exact; invalid UTF-8 comes back replaced while
// size counts the bytes read.
func TestFilesAPIContentFidelity(t *testing.T) {
	tf := newTestFleet(t, "unlimited")
	tn, w := tf.special(t, "stub") // any running workspace will do; place depends on the seed
	vol := volumeDir(tf.dir, containerName(w.ID))
	if tn.hosted() {
		tn = tf.tenantOf(t, kindSelfAPI)
		w = tn.Workspaces[0]
		vol = volumeDir(tf.dir, containerName(w.ID))
	}
	write := func(b []byte) {
		t.Helper()
		if err := writeAtomic(filepath.Join(vol, "config.yaml"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte("\n  name: padded\n\n"))
	if c, size := readBody(t, tf.get(t, tn.Name, readPath(w.ID), nil)); c != "name: padded" || size != len(c) {
		t.Errorf("trimmed: %q size %d", c, size)
	}
	big := bytes.Repeat([]byte("x"), filesapi.MaxContainerRead+1000)
	write(big)
	if c, size := readBody(t, tf.get(t, tn.Name, readPath(w.ID), nil)); len(c) != filesapi.MaxContainerRead || size != filesapi.MaxContainerRead {
		t.Errorf("over 5 MiB: content %d bytes, size %d; want cut at %d", len(c), size, filesapi.MaxContainerRead)
	}
	write([]byte("name: caf\xe9\n"))
	if c, size := readBody(t, tf.get(t, tn.Name, readPath(w.ID), nil)); c != "name: caf\uFFFD" || size != len("name: caf\xe9") {
		t.Errorf("invalid UTF-8: %q size %d", c, size)
	}
	// The host mirror answers byte for byte.
	hn, hw := tf.special(t, "hibernated-host-mirror")
	if c, _ := readBody(t, tf.get(t, hn.Name, readPath(hw.ID), nil)); c != string(hw.Live) || !strings.HasSuffix(c, "\n") {
		t.Errorf("mirror read not exact: %q", c)
	}
}

// TestOrgHeaderRule: a hosted server requires X-Molecule-Org-Id and hides
// a wrong one behind a bare 404; a self-hosted one ignores the header.
func TestOrgHeaderRule(t *testing.T) {
	tf := newTestFleet(t, "unlimited")
	hn, hw := tf.special(t, "hibernated-host-mirror")
	r := tf.get(t, hn.Name, readPath(hw.ID), map[string]string{filesapi.HeaderOrg: ""})
	var body map[string]any
	if r.code != http.StatusBadRequest || json.Unmarshal(r.body, &body) != nil ||
		body["code"] != filesapi.CodeOrgHeaderRequired || body["error"] != "missing tenant routing header" || body["required_header"] != filesapi.HeaderOrg {
		t.Errorf("no org header: %d %s", r.code, r.body)
	}
	for _, p := range []string{readPath(hw.ID), listPath(hw.ID)} {
		r = tf.get(t, hn.Name, p, map[string]string{filesapi.HeaderOrg: "00000000-0000-4000-8000-000000000000"})
		if r.code != http.StatusNotFound || len(r.body) != 0 || r.source() != "" {
			t.Errorf("wrong org %s: %d %q, want a bare 404", p, r.code, r.body)
		}
	}
	// The guard runs before the token check: a wrong org with no token is
	// still a bare 404.
	r = tf.get(t, hn.Name, readPath(hw.ID), map[string]string{filesapi.HeaderOrg: "x", "Authorization": ""})
	if r.code != http.StatusNotFound || len(r.body) != 0 {
		t.Errorf("wrong org, no token: %d %q", r.code, r.body)
	}
	for _, kind := range []string{kindSelfAPI, kindSelfExec} {
		tn := tf.tenantOf(t, kind)
		w := tn.Workspaces[0]
		for _, org := range []string{"", "someone-else"} {
			if r := tf.get(t, tn.Name, readPath(w.ID), map[string]string{filesapi.HeaderOrg: org}); r.code != http.StatusOK {
				t.Errorf("%s with org header %q: %d %s", kind, org, r.code, r.body)
			}
		}
	}
}

// TestRateLimit: a fixed window per org from its first request; every
// response carries X-RateLimit-*; refused requests count; 429 with
// Retry-After in whole seconds, which can be 0; the window resets.
func TestRateLimit(t *testing.T) {
	tf := newTestFleet(t, "3/min")
	hn, hw := tf.special(t, "hibernated-host-mirror")
	check := func(r response, code, remaining, reset int) {
		t.Helper()
		h := r.header
		if r.code != code || h.Get("X-RateLimit-Limit") != "3" || h.Get("X-RateLimit-Remaining") != strconv.Itoa(remaining) ||
			h.Get("X-RateLimit-Reset") != strconv.Itoa(reset) {
			t.Errorf("got %d limit %q remaining %q reset %q; want %d, 3, %d, %d (%s)", r.code, h.Get("X-RateLimit-Limit"),
				h.Get("X-RateLimit-Remaining"), h.Get("X-RateLimit-Reset"), code, remaining, reset, r.body)
		}
	}
	// The window starts at the first request (12:00:17), not on the minute.
	check(tf.get(t, hn.Name, readPath(hw.ID), nil), http.StatusOK, 2, 60)
	tf.clock.advance(10 * time.Second)
	// A refused request counts: one without an org header (400) against
	// its token's key, an unknown workspace's 404 against the org.
	r := tf.get(t, hn.Name, listPath(hw.ID), map[string]string{filesapi.HeaderOrg: ""})
	check(r, http.StatusBadRequest, 2, 60)
	check(tf.get(t, hn.Name, listPath(hw.ID), nil), http.StatusOK, 1, 50)
	check(tf.get(t, hn.Name, readPath("00000000-0000-4000-8000-000000000000"), nil), http.StatusNotFound, 0, 50)
	tf.clock.advance(500 * time.Millisecond)
	r = tf.get(t, hn.Name, readPath(hw.ID), nil)
	check(r, http.StatusTooManyRequests, 0, 49)
	if r.header.Get("Retry-After") != "49" || string(r.body) != `{"error":"rate limit exceeded","retry_after":49}` {
		t.Errorf("429: Retry-After %q body %s", r.header.Get("Retry-After"), r.body)
	}
	// Under a second left: Retry-After 0, still refused.
	tf.clock.advance(49*time.Second + 100*time.Millisecond)
	r = tf.get(t, hn.Name, readPath(hw.ID), nil)
	check(r, http.StatusTooManyRequests, 0, 0)
	if r.header.Get("Retry-After") != "0" || string(r.body) != `{"error":"rate limit exceeded","retry_after":0}` {
		t.Errorf("429 in the last second: Retry-After %q body %s", r.header.Get("Retry-After"), r.body)
	}
	// Another org (or another tenant's server) has its own window.
	check(tf.get(t, hn.Name, readPath(hw.ID), map[string]string{filesapi.HeaderOrg: "other-org"}), http.StatusNotFound, 2, 60)
	// At the window's end a new one starts with the next request.
	tf.clock.advance(400 * time.Millisecond)
	check(tf.get(t, hn.Name, readPath(hw.ID), nil), http.StatusOK, 2, 60)

	// Unlimited (the platform's dev mode) says so.
	tu := newTestFleet(t, "unlimited")
	if r := tu.get(t, hn.Name, readPath(hw.ID), nil); r.header.Get("X-RateLimit-Limit") != "unlimited" || r.header.Get("Retry-After") != "" {
		t.Errorf("unlimited: %v", r.header)
	}
	for _, c := range []struct {
		in     string
		limit  int
		window time.Duration
	}{{"600/min", 600, time.Minute}, {"40/5s", 40, 5 * time.Second}, {"10/s", 10, time.Second}, {"unlimited", 0, 0}} {
		l, w, err := filesapi.ParseRateLimit(c.in)
		if err != nil || l != c.limit || w != c.window {
			t.Errorf("ParseRateLimit(%q) = %d %v %v", c.in, l, w, err)
		}
	}
}

// TestFakeDocker runs DIR/bin/docker as backfill's exec collector does,
// with nothing in its environment but PATH: a running container prints its
// config, a stopped one and a removed one fail with the daemon's words.
func TestFakeDocker(t *testing.T) {
	tf := newTestFleet(t, "unlimited")
	docker := filepath.Join(tf.dir, dirBin, "docker")
	run := func(args ...string) (string, string, int) {
		t.Helper()
		cmd := exec.Command(docker, args...)
		cmd.Env = []string{"PATH=" + filepath.Join(tf.dir, dirBin)}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	// The inventory's reader: dd, which follows no symbolic link.
	cat := func(container string) (string, string, int) {
		return run(append([]string{"exec", container}, execArgv[3:]...)...)
	}
	tn := tf.tenantOf(t, kindSelfExec)
	running := tn.Workspaces[0]
	if out, errs, code := cat(containerName(running.ID)); code != 0 || out != string(running.Live) || errs != "" {
		t.Errorf("running: exit %d stdout %q stderr %q", code, out, errs)
	}
	_, stopped := tf.special(t, "stopped-exec-file")
	if out, errs, code := cat(containerName(stopped.ID)); code != 1 || out != "" ||
		errs != "Error response from daemon: container "+containerID(containerName(stopped.ID))+" is not running\n" {
		t.Errorf("stopped: exit %d stdout %q stderr %q", code, out, errs)
	}
	_, gone := tf.special(t, "hibernated-exec-file")
	if out, errs, code := cat(containerName(gone.ID)); code != 1 || out != "" ||
		errs != "Error response from daemon: No such container: ws-"+gone.ID+"\n" {
		t.Errorf("removed: exit %d stdout %q stderr %q", code, out, errs)
	}
	// The volume outlives the container: the file fallback's path.
	if b, err := os.ReadFile(filepath.Join(volumeDir(tf.dir, containerName(gone.ID)), "config.yaml")); err != nil || !bytes.Equal(b, gone.Live) {
		t.Errorf("removed container's volume: %v %q", err, b)
	}
	for _, f := range []string{"/configs/../../../etc/passwd", "/etc/passwd", "/configs/"} {
		if out, errs, code := run("exec", containerName(running.ID), "cat", f); code != 1 || out != "" || errs != "cat: "+f+": No such file or directory\n" {
			t.Errorf("cat %s: exit %d stdout %q stderr %q", f, code, out, errs)
		}
	}
	// cat is simulated too, and follows a link; dd refuses it.
	cfg := filepath.Join(volumeDir(tf.dir, containerName(running.ID)), "config.yaml")
	if out, _, code := run("exec", containerName(running.ID), "cat", "/configs/config.yaml"); code != 0 || out != string(running.Live) {
		t.Errorf("cat: exit %d stdout %q", code, out)
	}
	secret := filepath.Join(tf.dir, "secret")
	if err := os.WriteFile(secret, []byte("API_KEY=planted\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(cfg)
	if err := os.Symlink(secret, cfg); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := cat(containerName(running.ID)); code != 1 || out != "" || errs != "dd: failed to open '/configs/config.yaml': Too many levels of symbolic links\n" {
		t.Errorf("running, config a link: exit %d stdout %q stderr %q", code, out, errs)
	}
	os.Remove(cfg)
	if err := os.Mkdir(cfg, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, errs, code := cat(containerName(running.ID)); code != 1 || out != "" || errs != "dd: error reading '/configs/config.yaml': Is a directory\n" {
		t.Errorf("running, config a directory: exit %d stdout %q stderr %q", code, out, errs)
	}
	os.Remove(cfg)
	if _, errs, code := cat(containerName(running.ID)); code != 1 || errs != "dd: failed to open '/configs/config.yaml': No such file or directory\n" {
		t.Errorf("running, no config: exit %d stderr %q", code, errs)
	}
	if _, errs, code := run("exec", containerName(running.ID), "cat", "/configs/config.yaml"); code != 1 || errs != "cat: /configs/config.yaml: No such file or directory\n" {
		t.Errorf("running, no config, cat: exit %d stderr %q", code, errs)
	}
	for _, args := range [][]string{{"exec", "../docker", "cat", "/configs/config.yaml"}, {"exec", "-it", "cat", "/configs/x"}} {
		if _, errs, code := run(args...); code != 1 || !strings.HasPrefix(errs, "Error response from daemon: No such container: ") {
			t.Errorf("%q: exit %d stderr %q", args, code, errs)
		}
	}
	if _, _, code := run("ps"); code != 125 {
		t.Errorf("docker ps: exit %d, want 125 (not simulated)", code)
	}
}

// TestServedFleet starts the fleet's command line and checks what it
// serves and writes: one files API per tenant answering the inventory's
// credentials, the inventory's collectors, and a row retired by a read.
func TestServedFleet(t *testing.T) {
	admin := pgtest.NewDB(t)
	dir, _, _, _ := startCLI(t, "--pg", admin, "--tenants", "3", "--workspaces", "40", "--rate-limit", "1000/min", "--files-api-rate", "12")
	lookup, err := fleetEnv(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := design(3, 40, defaultSeed)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, fileInventory))
	if err != nil {
		t.Fatal(err)
	}
	var inv invFile
	if err := yaml.Unmarshal(b, &inv); err != nil {
		t.Fatal(err)
	}
	if len(inv.Tenants) != len(spec.Tenants) {
		t.Fatalf("inventory has %d tenants", len(inv.Tenants))
	}
	expand := func(s string) string {
		return os.Expand(s, func(k string) string { v, _ := lookup(k); return v })
	}
	if p, _ := lookup("PATH"); !strings.HasPrefix(p, filepath.Join(dir, dirBin)+":") {
		t.Errorf("env PATH %q does not find bin/docker first", p)
	}
	for i, it := range inv.Tenants {
		tn := spec.Tenants[i]
		if it.Name != tn.Name || it.DSN != "${"+tn.DSNEnv+"}" {
			t.Errorf("tenant %d: %+v", i, it)
		}
		if tn.collector() == collectExecFile {
			want := []invCollector{{Exec: []string{"docker", "exec", "{container}", "dd", "if=/configs/config.yaml", "iflag=nofollow", "status=none"}},
				{File: filepath.Join(dir, dirVolumes) + "/ws-{workspace_id}-configs/_data/config.yaml"}}
			if it.Collector != nil || fmt.Sprint(it.Collectors) != fmt.Sprint(want) {
				t.Errorf("%s: collectors %+v %+v", tn.Name, it.Collector, it.Collectors)
			}
			continue
		}
		if it.Collector == nil || it.Collector.FilesAPI == nil || it.Collectors != nil {
			t.Fatalf("%s: collector %+v", tn.Name, it.Collector)
		}
		fa := it.Collector.FilesAPI
		if fa.Rate != 12 || fa.Headers["Authorization"] != "Bearer ${"+tn.TokenEnv+"}" || fa.Headers[filesapi.HeaderOrg] != "${"+tn.OrgEnv+"}" {
			t.Errorf("%s: files_api %+v", tn.Name, fa)
		}
		// The inventory's own credentials work on its server.
		w := tn.Workspaces[0]
		req, _ := http.NewRequest(http.MethodGet, fa.BaseURL+listPath(w.ID), nil)
		for k, v := range fa.Headers {
			req.Header.Set(k, expand(v))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-RateLimit-Limit") != "1000" || resp.Header.Get(filesapi.HeaderSource) == "" {
			t.Errorf("%s: ListFiles with the inventory's headers: %d %v", tn.Name, resp.StatusCode, resp.Header)
		}
	}

	// Reading seo-deleted deletes its row: the next listing finds no workspace.
	var baseURL string
	var tn *tenantSpec
	var gone *workspaceSpec
	for i, t2 := range spec.Tenants {
		for _, w := range t2.Workspaces {
			if w.After == afterDelete {
				tn, gone, baseURL = t2, w, inv.Tenants[i].Collector.FilesAPI.BaseURL
			}
		}
	}
	get := func(path string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, baseURL+path, nil)
		req.Header.Set("Authorization", "Bearer "+expand("${"+tn.TokenEnv+"}"))
		req.Header.Set(filesapi.HeaderOrg, expand("${"+tn.OrgEnv+"}"))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get(readPath(gone.ID)); code != http.StatusOK {
		t.Fatalf("read %s: %d %s", gone.Name, code, body)
	}
	if code, body := get(listPath(gone.ID)); code != http.StatusNotFound || body != `{"error":"workspace not found"}` {
		t.Errorf("list after the delete: %d %s", code, body)
	}
	dsn, _ := lookup(tn.DSNEnv)
	rows, err := readTemplates(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rows[gone.ID]; ok {
		t.Errorf("row %s still in the database", gone.ID)
	}
	// The trap's row took the runtime column's default.
	_, trap := (&testFleet{spec: spec}).special(t, "template-dir-trap")
	for _, t2 := range spec.Tenants {
		d, _ := lookup(t2.DSNEnv)
		conn, err := pgx.Connect(context.Background(), d)
		if err != nil {
			t.Fatal(err)
		}
		var runtime string
		err = conn.QueryRow(context.Background(), `SELECT runtime FROM workspaces WHERE id = $1`, trap.ID).Scan(&runtime)
		conn.Close(context.Background())
		if err == nil && runtime != "hermes" {
			t.Errorf("trap row runtime %q, want hermes", runtime)
		}
	}
}
