package cli

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// fleet is three tenants, one per collector method, each with live
// workspaces, one already templated and one removed.
type fleet struct {
	dir       string
	inventory string
	evidence  string
	env       map[string]string
	live      map[string]string // "tenant/workspace" -> config content
	roots     map[string]string // tenant -> directory of live configs
	dsns      map[string]string
}

const (
	plantedPGPassword = "pg-Pa55-planted-7731"
	plantedToken      = "tok-planted-9d1c2e"
	plantedOrgID      = "org-planted-5521"
)

func newFleet(t *testing.T, perTenant int, latency time.Duration) *fleet {
	t.Helper()
	f := &fleet{dir: t.TempDir(), env: map[string]string{}, live: map[string]string{}, roots: map[string]string{}, dsns: map[string]string{}}
	f.evidence = filepath.Join(f.dir, "evidence.db")
	var tenantsYAML strings.Builder
	for ti, tenant := range []string{"alpha", "beta", "gamma"} {
		dsn := pgtest.NewTenantDB(t)
		f.dsns[tenant] = dsn
		root := filepath.Join(f.dir, "live", tenant)
		f.roots[tenant] = root
		var rows []ws
		for i := 0; i < perTenant; i++ {
			id := uuidFor(ti+1, i)
			r := ws{id: id, name: fmt.Sprintf("%s-ws-%d", tenant, i), instance: fmt.Sprintf("ws-%s-%d", tenant, i)}
			content := seoConfig
			if i%3 == 2 {
				r.template = "seo-agent"
				content = seoConfig + "# templated\n"
			}
			rows = append(rows, r)
			if err := filesapi.WriteConfig(root, id, []byte(content)); err != nil {
				t.Fatal(err)
			}
			f.live[tenant+"/"+id] = content
		}
		// A removed workspace is never listed or captured.
		rows = append(rows, ws{id: uuidFor(ti+1, 999), name: "removed", status: "removed"})
		insertRows(t, dsn, rows...)
		envName := strings.ToUpper(tenant) + "_PG_PASSWORD"
		f.env[envName] = plantedPGPassword
		fmt.Fprintf(&tenantsYAML, "  - name: %s\n    dsn: %q\n", tenant, dsnRef(tenant, dsn))
		switch tenant {
		case "alpha":
			fmt.Fprintf(&tenantsYAML, "    collector:\n      exec: [\"cat\", \"%s/{workspace_id}/config.yaml\"]\n", root)
		case "beta":
			srv := filesServer(t, root, plantedToken, latency)
			f.env["BETA_TOKEN"] = plantedToken
			f.env["BETA_ORG"] = plantedOrgID
			fmt.Fprintf(&tenantsYAML, "    collector:\n      http:\n        url: %q\n        headers: {Authorization: \"Bearer ${BETA_TOKEN}\", X-Molecule-Org-Id: \"${BETA_ORG}\"}\n        json_field: content\n",
				srv.URL+"/configs/{workspace_id}/config.yaml")
		case "gamma":
			fmt.Fprintf(&tenantsYAML, "    collector:\n      file: \"%s/{workspace_id}/config.yaml\"\n", root)
		}
	}
	f.inventory = writeFile(t, filepath.Join(f.dir, "inventory.yaml"), "version: 1\ntenants:\n"+tenantsYAML.String())
	return f
}

// dsnRef is how the fleet's inventory spells a tenant's DSN: the password
// comes from the environment.
func dsnRef(tenant, dsn string) string {
	return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:${"+strings.ToUpper(tenant)+"_PG_PASSWORD}@", 1)
}

// repoint makes the inventory reach a tenant's database through dsn.
func (f *fleet) repoint(t *testing.T, tenant, dsn string) {
	t.Helper()
	b, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf("%q", dsnRef(tenant, f.dsns[tenant]))
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("inventory lacks %s", old)
	}
	writeFile(t, f.inventory, string(bytes.Replace(b, []byte(old), fmt.Appendf(nil, "%q", dsnRef(tenant, dsn)), 1)))
}

func (f *fleet) snapshot(t *testing.T, extra ...string) result {
	t.Helper()
	return run(t, f.env, append([]string{"--evidence", f.evidence, "snapshot", "--inventory", f.inventory}, extra...)...)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func exportJSON(t *testing.T, f *fleet) map[string]exportRecord {
	t.Helper()
	res := run(t, nil, "export", "--evidence", f.evidence, "--format", "json")
	if res.code != 0 {
		t.Fatalf("export: %d %s", res.code, res.stderr)
	}
	var recs []exportRecord
	if err := json.Unmarshal([]byte(res.stdout), &recs); err != nil {
		t.Fatal(err)
	}
	out := map[string]exportRecord{}
	for _, r := range recs {
		out[r.Tenant+"/"+r.WorkspaceID] = r
	}
	return out
}

func TestSnapshotEndToEndAllCollectors(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 6, 0)
	res := f.snapshot(t)
	if res.code != 0 {
		t.Fatalf("snapshot exit %d\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "snapshot complete") || !strings.Contains(res.stdout, "18 live workspaces") {
		t.Fatalf("summary:\n%s", res.stdout)
	}
	fi, err := os.Stat(f.evidence)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("evidence mode: %v %v", fi.Mode(), err)
	}
	recs := exportJSON(t, f)
	if len(recs) != len(f.live) {
		t.Fatalf("export has %d workspaces, want %d", len(recs), len(f.live))
	}
	for key, content := range f.live {
		r := recs[key]
		if r.LatestOutcome != "captured" || r.EarliestSHA256 != sha(content) || r.CapturedAt == "" {
			t.Errorf("%s: %+v", key, r)
		}
	}
	// Provenance of each method is kept.
	db, err := sql.Open("sqlite", "file:"+f.evidence+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for method, key := range map[string]string{"exec": "exit_code", "http": "header.X-Molecule-Files-Source", "file": "mtime"} {
		var n int
		err := db.QueryRow(`SELECT count(*) FROM captures WHERE method = ? AND json_extract(provenance, '$."`+key+`"') IS NOT NULL`, method).Scan(&n)
		if err != nil || n != 6 {
			t.Errorf("%s captures with %s provenance: %d (%v)", method, key, n, err)
		}
	}
	// A re-run resumes: nothing new is captured.
	again := f.snapshot(t)
	if again.code != 0 || !strings.Contains(again.stdout, "captured now 0, captured earlier 18") {
		t.Fatalf("re-run: %d\n%s", again.code, again.stdout)
	}
	// --refresh captures again; export still reports the earliest capture.
	refresh := f.snapshot(t, "--refresh")
	if refresh.code != 0 || !strings.Contains(refresh.stdout, "captured now 18") {
		t.Fatalf("refresh: %d\n%s", refresh.code, refresh.stdout)
	}
	for key, r := range exportJSON(t, f) {
		if r.Attempts != 2 || r.EarliestID != recs[key].EarliestID {
			t.Errorf("%s after refresh: %+v", key, r)
		}
	}
	st := run(t, nil, "status", "--evidence", f.evidence)
	if st.code != 0 || !strings.Contains(st.stdout, "TOTAL") {
		t.Fatalf("status: %d %s %s", st.code, st.stdout, st.stderr)
	}
	for _, tenant := range []string{"alpha", "beta", "gamma"} {
		if !strings.Contains(st.stdout, tenant) {
			t.Errorf("status lacks %s:\n%s", tenant, st.stdout)
		}
	}
	v := run(t, nil, "verify", "--evidence", f.evidence)
	if v.code != 0 || !strings.Contains(v.stdout, "verify ok") {
		t.Fatalf("verify: %d %s %s", v.code, v.stdout, v.stderr)
	}
	csv := run(t, nil, "export", "--evidence", f.evidence, "--format", "csv")
	if csv.code != 0 || strings.Count(csv.stdout, "\n") != 19 || !strings.HasPrefix(csv.stdout, "tenant,workspace_id,name,") {
		t.Fatalf("csv export: %d\n%s", csv.code, csv.stdout)
	}
}

// TestSnapshotRaceWithRestartWave overwrites live configs with the runtime
// default at a steady rate while snapshot runs, as a restart wave does.
func TestSnapshotRaceWithRestartWave(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 40, 5*time.Millisecond)
	type overwrite struct {
		key string
		at  time.Time
	}
	done := make(chan []overwrite)
	stop := make(chan struct{})
	go func() {
		var ows []overwrite
		// The wave starts once the first capture is recorded: started any
		// earlier, on a loaded machine it can end before the snapshot has
		// even listed its tenants, and then nothing races.
		waitForCapture(t, f.evidence, stop)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for key := range f.live {
			select {
			case <-stop:
				done <- ows
				return
			case <-tick.C:
			}
			tenant, id, _ := strings.Cut(key, "/")
			// Record the time before the write: anything that started
			// reading earlier can only have seen the original bytes.
			at := time.Now()
			if err := filesapi.WriteConfig(f.roots[tenant], id, []byte(defaultConfig)); err != nil {
				t.Error(err)
			}
			ows = append(ows, overwrite{key, at})
		}
		done <- ows
	}()
	res := f.snapshot(t, "--concurrency", "4")
	close(stop)
	ows := <-done
	if res.code != 0 {
		t.Fatalf("snapshot exit %d\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	overwritten := map[string]time.Time{}
	for _, o := range ows {
		overwritten[o.key] = o.at
	}
	recs := exportJSON(t, f)
	before, after := 0, 0
	for key, content := range f.live {
		r := recs[key]
		capturedAt, err := time.Parse(time.RFC3339Nano, r.CapturedAt)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		at, hit := overwritten[key]
		switch {
		case !hit || capturedAt.Before(at):
			before++
			if r.EarliestSHA256 != sha(content) {
				t.Errorf("%s captured before its overwrite but holds other bytes", key)
			}
		default:
			after++
			if r.EarliestSHA256 != sha(content) && r.EarliestSHA256 != sha(defaultConfig) {
				t.Errorf("%s holds bytes that were never live", key)
			}
		}
	}
	if before == 0 {
		t.Fatal("no capture won the race; the test proves nothing")
	}
	t.Logf("%d captured before their overwrite, %d after", before, after)
	// After the wave a refresh captures the defaults, and export still
	// reports the earliest capture: the original bytes.
	if res := f.snapshot(t, "--refresh"); res.code != 0 {
		t.Fatalf("refresh: %d %s", res.code, res.stderr)
	}
	for key, r := range exportJSON(t, f) {
		if r.EarliestSHA256 != recs[key].EarliestSHA256 {
			t.Errorf("%s: export changed its earliest capture after a refresh", key)
		}
	}
}

func TestVerifyNamesTamperedCapture(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	if res := f.snapshot(t); res.code != 0 {
		t.Fatalf("snapshot: %d %s", res.code, res.stderr)
	}
	db, err := sql.Open("sqlite", "file:"+f.evidence)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	var tenant, wsID string
	if err := db.QueryRow("SELECT id, tenant, workspace_id FROM captures WHERE tenant = 'beta' ORDER BY id LIMIT 1").Scan(&id, &tenant, &wsID); err != nil {
		t.Fatal(err)
	}
	// One byte of one capture's content, changed with a raw connection.
	for _, q := range []string{
		"DROP TRIGGER content_no_update",
		fmt.Sprintf("UPDATE content SET bytes = CAST(replace(CAST(bytes AS TEXT), 'SEO', 'SEX') AS BLOB) WHERE sha256 = (SELECT sha256 FROM captures WHERE id = %d)", id),
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	res := run(t, nil, "verify", "--evidence", f.evidence)
	want := fmt.Sprintf("capture %d (tenant %s, workspace %s)", id, tenant, wsID)
	if res.code != 1 || !strings.Contains(res.stdout, want) {
		t.Fatalf("verify exit %d, want 1 naming %q\n%s\n%s", res.code, want, res.stdout, res.stderr)
	}
}

func TestSnapshotPartialWhenTenantUnreachable(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	// Point one tenant at a server that refuses connections.
	inv, _ := os.ReadFile(f.inventory)
	dead := "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=2"
	fixed := strings.Replace(string(inv), strings.Replace(f.dsns["gamma"], "postgres://postgres@", "postgres://postgres:${GAMMA_PG_PASSWORD}@", 1), dead, 1)
	if fixed == string(inv) {
		t.Fatal("inventory rewrite failed")
	}
	os.WriteFile(f.inventory, []byte(fixed), 0o600)
	res := f.snapshot(t)
	if res.code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "tenant gamma not listed") || !strings.Contains(res.stdout, "captured now 6") {
		t.Fatalf("summary:\n%s", res.stdout)
	}
	st := run(t, nil, "status", "--evidence", f.evidence)
	if !strings.Contains(st.stdout, "last listing failed") {
		t.Fatalf("status does not show the unreachable tenant:\n%s", st.stdout)
	}
}

func TestSnapshotBadWorkspaceInputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	marker := filepath.Join(dir, "ran")
	// A collector that would leave a marker if it ever ran for a bad name.
	script := writeFile(t, filepath.Join(dir, "collect.sh"), fmt.Sprintf("#!/bin/sh\ntouch %s-$1\ncase \"$1\" in hang*) trap '' TERM; while :; do sleep 1; done;; big*) head -c 5242880 /dev/zero;; *) echo \"name: ok $1\";; esac\n", marker))
	os.Chmod(script, 0o755)
	insertRows(t, dsn,
		ws{id: uuidFor(1, 1), name: "inject", instance: "x; touch /tmp/pwned"},
		ws{id: uuidFor(1, 2), name: "traverse", instance: "../../etc/passwd"},
		ws{id: uuidFor(1, 3), name: "big", instance: "big-1"},
		ws{id: uuidFor(1, 4), name: "hang", instance: "hang-1"},
		ws{id: uuidFor(1, 5), name: "fine", instance: "fine-1"},
		ws{id: uuidFor(1, 6), name: "nullinstance"},
	)
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf(`version: 1
defaults:
  collector:
    exec: [%q, "{instance_id}"]
tenants:
  - name: t1
    dsn: %q
`, script, dsn))
	ev := filepath.Join(dir, "evidence.db")
	// The timeout ends the hanging command; it is long enough that the
	// 5 MiB writer reaches the size cap first on a loaded machine.
	res := run(t, nil, "--evidence", ev, "snapshot", "--inventory", inv, "--timeout", "3s", "--retries", "0")
	if res.code != 3 {
		t.Fatalf("exit %d, want 3\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{"x; touch /tmp/pwned", "../../etc/passwd", "too large", "timeout", "failed t1/" + uuidFor(1, 6)} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, res.stdout)
		}
	}
	if !strings.Contains(res.stdout, "captured now 1,") {
		t.Errorf("the healthy workspace was not captured:\n%s", res.stdout)
	}
	matches, _ := filepath.Glob(marker + "-*")
	ran := map[string]bool{}
	for _, m := range matches {
		ran[strings.TrimPrefix(m, marker+"-")] = true
	}
	if len(ran) != 3 || !ran["big-1"] || !ran["hang-1"] || !ran["fine-1"] {
		t.Fatalf("collector ran for %v; bad names must run nothing", ran)
	}
	if _, err := os.Stat("/tmp/pwned"); err == nil {
		t.Fatal("/tmp/pwned exists")
	}
}

func TestSecretsNeverLeak(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	// Make one capture fail so that error paths are exercised too.
	os.Remove(filepath.Join(f.roots["beta"], uuidFor(2, 0), "config.yaml"))
	var outputs []string
	for _, format := range []string{"text", "json"} {
		res := f.snapshot(t, "--log-format", format, "--refresh")
		if res.code != 3 {
			t.Fatalf("%s: exit %d\n%s", format, res.code, res.stderr)
		}
		outputs = append(outputs, res.stdout, res.stderr)
	}
	for _, cmd := range [][]string{{"status"}, {"verify"}, {"export"}, {"export", "--format", "csv"}} {
		res := run(t, nil, append(cmd, "--evidence", f.evidence)...)
		outputs = append(outputs, res.stdout, res.stderr)
	}
	for _, p := range []string{f.evidence, f.evidence + "-wal"} {
		if b, err := os.ReadFile(p); err == nil {
			outputs = append(outputs, string(b))
		}
	}
	for _, secretValue := range []string{plantedPGPassword, plantedToken, plantedOrgID} {
		for i, o := range outputs {
			if strings.Contains(o, secretValue) {
				t.Errorf("secret %q leaked into output %d", secretValue, i)
			}
		}
	}
}

// TestSnapshotAllowGoneAndJSON: a workspace whose config is gone for good
// keeps snapshot at exit 3, with reason "gone" in --json; --allow-gone
// exits 0, so a job that retries on failure is not retried forever.
func TestSnapshotAllowGoneAndJSON(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	gone := uuidFor(3, 0) // gamma's file collector: a missing file is gone
	if err := os.RemoveAll(filepath.Join(f.roots["gamma"], gone)); err != nil {
		t.Fatal(err)
	}
	res := f.snapshot(t, "--json")
	var doc snapshotJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("--json: %v\n%s", err, res.stdout)
	}
	if res.code != 3 || doc.SchemaVersion != 1 || doc.Reason != "gone" || doc.Gone != 1 || doc.Complete || len(doc.Failures) != 1 || doc.Failures[0].WorkspaceID != gone {
		t.Fatalf("snapshot --json with one gone: %d %+v", res.code, doc)
	}
	if res := f.snapshot(t, "--allow-gone"); res.code != 0 {
		t.Fatalf("--allow-gone: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// A tenant that cannot be listed is never excused by --allow-gone.
	f.repoint(t, "alpha", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	if res := f.snapshot(t, "--allow-gone", "--json"); res.code != 3 || !strings.Contains(res.stdout, `"reason": "tenants-failed"`) {
		t.Fatalf("--allow-gone with a tenant down: %d\n%s", res.code, res.stdout)
	}
}

// TestSnapshotAndPlanTenantFilters: snapshot --tenant captures only the
// matching tenants; --max-bytes takes a size with a unit.
func TestSnapshotAndPlanTenantFilters(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	res := f.snapshot(t, "--tenant", "al*", "--max-bytes", "2MiB", "--json")
	var doc snapshotJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 0 || doc.Tenants != 1 || doc.Captured != 3 {
		t.Fatalf("snapshot --tenant al*: %d %v %+v\n%s", res.code, err, doc, res.stderr)
	}
	st := run(t, nil, "--evidence", f.evidence, "status", "--tenant", "al*")
	if st.code != 0 || !strings.Contains(st.stdout, "alpha") || strings.Contains(st.stdout, "beta") {
		t.Fatalf("status --tenant al*: %d\n%s", st.code, st.stdout)
	}
	ex := run(t, nil, "--evidence", f.evidence, "export", "--tenant", "al*", "--format", "csv")
	if ex.code != 0 || strings.Count(ex.stdout, "\n") != 4 || strings.Contains(ex.stdout, "beta") {
		t.Fatalf("export --tenant al*: %d\n%s", ex.code, ex.stdout)
	}
}

// waitForCapture polls the store, read-only, until it holds a capture, stop
// is closed, or 60 s pass.
func waitForCapture(t *testing.T, path string, stop <-chan struct{}) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		default:
		}
		if _, err := os.Stat(path); err == nil {
			db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
			if err == nil {
				var n int
				err = db.QueryRow("SELECT count(*) FROM captures").Scan(&n)
				db.Close()
				if err == nil && n > 0 {
					return
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
}
