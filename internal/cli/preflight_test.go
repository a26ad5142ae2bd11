package cli

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/filesapi"
)

// platformServer starts a stand-in for a tenant's workspace server, with
// the platform's rate limit (600 a minute, headers on every answer).
func platformServer(t *testing.T, org string) (*filesapi.MemoryPlatform, string) {
	t.Helper()
	p := &filesapi.MemoryPlatform{Org: org, Token: filesToken, Limit: 600}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return p, srv.URL
}

// storeCounts is the row count of every table of the evidence store at
// path, read through a read-only handle.
func storeCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	s, err := evidence.OpenReadOnly(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out := map[string]int{}
	for _, table := range []string{"content", "listings", "captures", "approvals", "journal", "plans", "merged_from"} {
		var n int
		if err := s.DB().QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out[table] = n
	}
	return out
}

// dirState is every file of dir with its size and sha256: what a run that
// writes nothing leaves as it was.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		if e.IsDir() {
			out[e.Name()] = "dir"
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		out[e.Name()] = fmt.Sprintf("%d %s", len(b), hex.EncodeToString(sum[:]))
	}
	return out
}

// tenantWrites is how many template changes the countWrites trigger saw.
func tenantWrites(t *testing.T, dsn string) int {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM template_writes").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

var cellGap = regexp.MustCompile(` {2,}`)

// tableRow is the printed row of tenant in preflight's table, its cells
// two spaces apart whatever their widths.
func tableRow(t *testing.T, out, tenant string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, tenant+" ") {
			return cellGap.ReplaceAllString(strings.TrimSpace(line), "  ")
		}
	}
	t.Fatalf("no row for %s in:\n%s", tenant, out)
	return ""
}

// TestPreflightHealthyFleetIsReady: a fleet whose every tenant is reachable,
// granted and answering from an evidence source exits 0, its table naming
// each sample's source (container and host-mirror through the files API;
// a self-hosted tenant's hibernated workspace through exec, a real stand-in
// docker that says "No such container", then its config volume) and the
// rate headroom the platform reported. Preflight writes nothing: the store
// a snapshot made keeps its bytes and row counts, no file appears beside
// it, and no tenant row changes (a trigger counts every template write).
func TestPreflightHealthyFleetIsReady(t *testing.T) {
	live := readLive(t, "custom-seo-agent.yaml")
	f := newPlatformFleet(t)

	hosted, hostedURL := platformServer(t, filesOrg)
	f.tenant(t, "hosted", 1, filesAPIYAML(hostedURL, true), ws{name: "no-config"}, ws{name: "seo-running"}, ws{name: "set-already", template: "seo-agent"})
	// A running container without a config.yaml, and nothing else that
	// holds one: that workspace has no evidence, the tenant is fine.
	hosted.Put(f.ids["no-config"], filesapi.MemoryWorkspace{Name: "no-config", Running: true})
	hosted.Put(f.ids["seo-running"], filesapi.MemoryWorkspace{Name: "seo-running", Running: true, Container: &live})
	hosted.Put(f.ids["set-already"], filesapi.MemoryWorkspace{Name: "set-already", Running: true, Container: &live})

	mirror, mirrorURL := platformServer(t, filesOrg)
	f.tenant(t, "asleep", 2, filesAPIYAML(mirrorURL, true), ws{name: "seo-hibernated", status: "hibernated"})
	mirror.Put(f.ids["seo-hibernated"], filesapi.MemoryWorkspace{Name: "seo-hibernated", Mirror: &live})

	bin, volumes := filepath.Join(f.dir, "bin"), filepath.Join(f.dir, "volumes")
	writeFile(t, filepath.Join(bin, "docker"), `#!/bin/sh
# docker exec <container> cat /configs/config.yaml: every container here was removed
echo "Error response from daemon: No such container: $2" >&2
exit 1
`)
	if err := os.Chmod(filepath.Join(bin, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.env["PATH"] = bin + ":/usr/bin:/bin"
	f.tenant(t, "self", 3, fmt.Sprintf(`    collectors:
      - exec: ["docker", "exec", "{container}", "cat", "/configs/config.yaml"]
      - file: {path: "%s/ws-{workspace_id}-configs/_data/config.yaml", root: %q}
`, volumes, volumes), ws{name: "self-hibernated", status: "hibernated"})
	writeFile(t, filepath.Join(volumes, "ws-"+f.ids["self-hibernated"]+"-configs", "_data", "config.yaml"), live)
	f.write(t, "")

	if res := f.run(t, "snapshot", "--inventory", "inventory.yaml"); res.code != 3 || !strings.Contains(res.stdout, "captured now 4,") {
		t.Fatalf("snapshot: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, tn := range []string{"hosted", "asleep", "self"} {
		countWrites(t, f.dsns[tn])
	}
	rowsBefore := map[string]map[string]rowState{}
	for tn, dsn := range f.dsns {
		rowsBefore[tn] = rowsNow(t, dsn)
	}
	countsBefore := storeCounts(t, filepath.Join(f.dir, "evidence.db"))
	dirBefore := dirState(t, f.dir)
	requestsBefore, _, _ := hosted.Stats()

	res := f.run(t, "preflight", "--inventory", "inventory.yaml")
	t.Logf("preflight:\n%s", res.stdout)
	if res.code != 0 || !strings.Contains(res.stdout, "preflight: 3 of 3 tenants ready, store ready") {
		t.Fatalf("preflight: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	header := strings.Fields(strings.Split(res.stdout, "\n")[0])
	if want := []string{"TENANT", "DB", "GRANTS", "LIVE", "EMPTY-TEMPLATE", "SAMPLE", "SOURCE", "RATE", "HEADROOM", "READY", "WHY"}; !slices.Equal(header, want) {
		t.Errorf("header %q", header)
	}
	for tenant, want := range map[string][]string{
		// The window is the org's, from its first request: the snapshot's
		// eight requests are in it, and preflight's four.
		"hosted": {"ok  ok  3  2  container  480/600 per min, 588 left, resets", "yes",
			"note: passed over sample " + f.ids["no-config"] + " (status online): files_api: not-running: read: HTTP 404 Not Found"},
		"asleep": {"ok  ok  1  1  host-mirror  480/600 per min, 595 left", "yes", "note: sample answered from the host mirror"},
		"self":   {"ok  ok  1  1", "file", "-", "yes", "note: sample captured by file after exec: not-running"},
	} {
		row := tableRow(t, res.stdout, tenant)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row lacks %q:\n%s", tenant, w, row)
			}
		}
	}
	if !strings.Contains(res.stdout, "store evidence.db (exists): directory . writable,") {
		t.Errorf("store line:\n%s", res.stdout)
	}
	// The samples are the empty-template rows, each read once through the
	// chain: a list, a read (and a list again when the read answered).
	if n, _, byPath := hosted.Stats(); n-requestsBefore != 5 || byPath["/workspaces/"+f.ids["seo-running"]+"/files"] != 4 {
		t.Errorf("hosted: %d requests, by path %v", n-requestsBefore, byPath)
	}

	if got := dirState(t, f.dir); fmt.Sprint(got) != fmt.Sprint(dirBefore) {
		t.Errorf("the store's directory changed:\nbefore %v\nafter  %v", dirBefore, got)
	}
	if got := storeCounts(t, filepath.Join(f.dir, "evidence.db")); fmt.Sprint(got) != fmt.Sprint(countsBefore) {
		t.Errorf("store rows changed: before %v, after %v", countsBefore, got)
	}
	for tn, dsn := range f.dsns {
		if n := tenantWrites(t, dsn); n != 0 {
			t.Errorf("%s: %d template writes", tn, n)
		}
		if got := rowsNow(t, dsn); fmt.Sprint(got) != fmt.Sprint(rowsBefore[tn]) {
			t.Errorf("%s rows changed:\nbefore %v\nafter  %v", tn, rowsBefore[tn], got)
		}
	}
}

// TestPreflightReportsMisconfiguredTenants: a tenant whose org header is
// wrong (a bare 404) or missing (400 TENANT_ORG_HEADER_REQUIRED) is not
// ready, reported as misconfigured; so is one whose files API answers
// "workspace not found" for a row its database lists live (base_url points
// at another tenant's server), one whose rate is above the platform's 600
// a minute, one whose org window is used up (429), and one whose database
// is down. A healthy tenant beside them is ready; the run exits 3, and
// nothing is recorded: the store is not created.
func TestPreflightReportsMisconfiguredTenants(t *testing.T) {
	live := "name: Hermes Agent\nruntime: hermes\n"
	f := newPlatformFleet(t)
	good, goodURL := platformServer(t, filesOrg)
	_, wrongURL := platformServer(t, "org-someone-else")
	_, noOrgURL := platformServer(t, filesOrg)
	busy, busyURL := platformServer(t, filesOrg)

	f.tenant(t, "good", 1, filesAPIYAML(goodURL, true), ws{name: "good-1"})
	f.tenant(t, "wrong-org", 2, filesAPIYAML(wrongURL, true), ws{name: "wrong-1"})
	f.tenant(t, "no-org", 3, filesAPIYAML(noOrgURL, false), ws{name: "no-org-1"})
	f.tenant(t, "elsewhere", 4, filesAPIYAML(goodURL, true), ws{name: "elsewhere-1"}) // the good tenant's server
	f.tenant(t, "too-fast", 5, fmt.Sprintf("    collector:\n      files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\", X-Molecule-Org-Id: \"${FILES_ORG}\"}, rate: 12}\n", goodURL),
		ws{name: "fast-1"})
	f.tenant(t, "busy", 6, filesAPIYAML(busyURL, true), ws{name: "busy-1"})
	// A wrong org header before a volume that holds the config: the sample
	// goes on to the volume, as a snapshot would, and says so.
	vol := t.TempDir()
	f.tenant(t, "wrong-then-file", 7, fmt.Sprintf("    collectors:\n      - files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\", X-Molecule-Org-Id: \"${FILES_ORG}\"}}\n      - file: \"%s/{workspace_id}.yaml\"\n", wrongURL, vol),
		ws{name: "then-file-1"})
	writeFile(t, filepath.Join(vol, f.ids["then-file-1"]+".yaml"), live)
	// A files API pointed at another tenant's server, before the volume:
	// ready, the volume captures, with a note on the files API's 404.
	f.tenant(t, "elsewhere-then-file", 8, fmt.Sprintf("    collectors:\n      - files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\", X-Molecule-Org-Id: \"${FILES_ORG}\"}}\n      - file: \"%s/{workspace_id}.yaml\"\n", goodURL, vol),
		ws{name: "elsewhere-file-1"})
	writeFile(t, filepath.Join(vol, f.ids["elsewhere-file-1"]+".yaml"), live)
	// Two collectors refused: both named.
	f.tenant(t, "two-refused", 9, fmt.Sprintf("    collectors:\n      - files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\", X-Molecule-Org-Id: \"${FILES_ORG}\"}}\n      - files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\"}}\n", wrongURL, noOrgURL),
		ws{name: "two-refused-1"})
	for _, name := range []string{"good-1", "fast-1"} {
		good.Put(f.ids[name], filesapi.MemoryWorkspace{Name: name, Running: true, Container: &live})
	}
	busy.Put(f.ids["busy-1"], filesapi.MemoryWorkspace{Name: "busy-1", Running: true, Container: &live})
	// A database that refuses connections: a closed port on loopback.
	fmt.Fprintf(&f.yaml, "  - name: down\n    dsn: %q\n%s", "postgres://postgres@127.0.0.1:1/none?connect_timeout=2", filesAPIYAML(goodURL, true))
	f.write(t, "")
	// The org's own users have used all but one request of busy's window:
	// preflight's listing gets the last, its read a 429.
	for i := 0; i < 599; i++ {
		req := httptest.NewRequest("GET", "/workspaces/"+f.ids["busy-1"]+"/files?root=/configs", nil)
		req.Header.Set("X-Molecule-Org-Id", filesOrg)
		req.Header.Set("Authorization", "Bearer "+filesToken)
		busy.Handler().ServeHTTP(httptest.NewRecorder(), req)
	}

	res := f.run(t, "preflight", "--inventory", "inventory.yaml", "--timeout", "3s")
	t.Logf("preflight:\n%s", res.stdout)
	if res.code != 3 || !strings.Contains(res.stdout, "preflight: 2 of 10 tenants ready, store ready") ||
		!strings.Contains(res.stdout, "not ready (tenants-not-ready)") {
		t.Fatalf("preflight: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, want := range map[string][]string{
		"good":      {"container", "yes"},
		"wrong-org": {"failed", "no", "collector misconfigured: check X-Molecule-Org-Id (and the URL): HTTP 404 Not Found with no JSON error"},
		"no-org":    {"failed", "no", "collector misconfigured: check X-Molecule-Org-Id: HTTP 400 Bad Request TENANT_ORG_HEADER_REQUIRED"},
		"elsewhere": {"gone", "no", `list: HTTP 404 Not Found "workspace not found"`, "the database lists them live", "check base_url"},
		"too-fast":  {"container", "720/600 per min", "no", "rate 12/s is 720 requests a minute, above the platform's 600"},
		"busy":      {"failed", "480/600 per min, 429, 0 left, resets", "no", "rate limited now"},
		"down":      {"unreachable", "no", "database: failed to connect"},
		"wrong-then-file": {" file ", "no", "collector misconfigured: check X-Molecule-Org-Id (and the URL)",
			"sample captured by file after a collector of the chain was refused for the tenant"},
		"elsewhere-then-file": {" file ", "yes", "files_api answered 404 for a workspace the database lists live and file then captured: it may reach another tenant's server (check base_url)"},
		"two-refused":         {"no", "files_api: collector misconfigured: check X-Molecule-Org-Id (and the URL)", "files_api: collector misconfigured: check X-Molecule-Org-Id: HTTP 400 Bad Request TENANT_ORG_HEADER_REQUIRED"},
	} {
		row := tableRow(t, res.stdout, tenant)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row lacks %q:\n%s", tenant, w, row)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "evidence.db")); !os.IsNotExist(err) {
		t.Errorf("preflight created the store: %v", err)
	}
	// The --json document says the same, the misconfiguration in its own field.
	var doc preflightJSON
	j := f.run(t, "preflight", "--inventory", "inventory.yaml", "--timeout", "3s", "--json")
	if err := json.Unmarshal([]byte(j.stdout), &doc); err != nil || j.code != 3 || doc.Ready || doc.Reason != "tenants-not-ready" || doc.TenantsReady != 2 {
		t.Fatalf("--json: %d %v %+v\n%s", j.code, err, doc, j.stdout)
	}
	for _, tr := range doc.Tenants {
		wantMisconfigured := tr.Tenant == "wrong-org" || tr.Tenant == "no-org" || tr.Tenant == "wrong-then-file" || tr.Tenant == "two-refused"
		prefix := "collector misconfigured: check X-Molecule-Org-Id"
		if tr.Tenant == "wrong-then-file" || tr.Tenant == "two-refused" {
			prefix = "files_api: " + prefix // a chain's refusals are named by collector
		}
		if (tr.Misconfigured != "") != wantMisconfigured || (wantMisconfigured && !strings.HasPrefix(tr.Misconfigured, prefix)) {
			t.Errorf("%s: misconfigured %q", tr.Tenant, tr.Misconfigured)
		}
	}
}

// TestPreflightNamesTheMissingGrant: a tenant whose role may not SELECT
// the columns the listing reads is not ready, naming the grant and the
// statement that gives it, and its listing is not attempted; a role with
// only the README's read grants (no write grant) is ready.
func TestPreflightNamesTheMissingGrant(t *testing.T) {
	f := newPlatformFleet(t)
	dir := t.TempDir()
	fileYAML := fmt.Sprintf("    collector:\n      file: \"%s/{workspace_id}.yaml\"\n", dir)
	for i, tn := range []string{"read-role", "some-columns", "no-select"} {
		f.tenant(t, tn, i+1, fileYAML, ws{name: tn + "-1"})
		writeFile(t, filepath.Join(dir, f.ids[tn+"-1"]+".yaml"), seoConfig)
	}
	b := make([]byte, 4)
	rand.Read(b)
	suffix := hex.EncodeToString(b)
	roles := map[string]string{"read-role": "bf_pf_read_" + suffix, "some-columns": "bf_pf_cols_" + suffix, "no-select": "bf_pf_none_" + suffix}
	admin := f.dsns["read-role"]
	conn, err := pgx.Connect(context.Background(), admin)
	if err != nil {
		t.Fatal(err)
	}
	var created []string
	for _, tn := range []string{"read-role", "some-columns", "no-select"} {
		if _, err = conn.Exec(context.Background(), "CREATE ROLE "+roles[tn]+" LOGIN"); err != nil {
			break
		}
		created = append(created, roles[tn])
	}
	conn.Close(context.Background())
	t.Cleanup(func() {
		for _, tn := range []string{"read-role", "some-columns", "no-select"} {
			execSQL(t, f.dsns[tn], "DROP OWNED BY "+strings.Join(created, ", "))
		}
		if len(created) > 0 {
			execSQL(t, admin, "DROP ROLE "+strings.Join(created, ", "))
		}
	})
	if err != nil {
		t.Skipf("SKIPPED: this server does not let the test create roles: %v", err)
	}
	for tn, role := range roles {
		execSQL(t, f.dsns[tn], fmt.Sprintf(`REVOKE ALL ON DATABASE %[1]s FROM PUBLIC; REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT CONNECT ON DATABASE %[1]s TO %[2]s; GRANT USAGE ON SCHEMA public TO %[2]s`, currentDatabase(t, f.dsns[tn]), role))
	}
	execSQL(t, f.dsns["read-role"], "GRANT SELECT ON workspaces TO "+roles["read-role"])
	execSQL(t, f.dsns["some-columns"], "GRANT SELECT (id, name, runtime, kind) ON workspaces TO "+roles["some-columns"])
	inv := f.yaml.String()
	for tn, role := range roles {
		dsn := f.dsns[tn]
		inv = strings.Replace(inv, fmt.Sprintf("%q", dsn), fmt.Sprintf("%q", roleDSN(t, dsn, role, plantedPGPassword)), 1)
	}
	f.yaml.Reset()
	f.yaml.WriteString(inv)
	f.write(t, "")

	res := f.run(t, "preflight", "--inventory", "inventory.yaml")
	t.Logf("preflight:\n%s", res.stdout)
	if res.code != 3 || !strings.Contains(res.stdout, "preflight: 1 of 3 tenants ready") {
		t.Fatalf("preflight: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for tenant, want := range map[string][]string{
		"read-role": {"ok  ok  1  1  file", "yes"},
		"some-columns": {"ok  missing  -  -  -", "no",
			"role " + roles["some-columns"] + " lacks SELECT on public.workspaces (template, status, instance_id, updated_at)",
			`(GRANT SELECT ON public.workspaces TO "` + roles["some-columns"] + `";)`},
		"no-select": {"ok  missing", "no", "role " + roles["no-select"] + " lacks SELECT on public.workspaces (GRANT SELECT"},
	} {
		row := tableRow(t, res.stdout, tenant)
		for _, w := range want {
			if !strings.Contains(row, w) {
				t.Errorf("%s: row lacks %q:\n%s", tenant, w, row)
			}
		}
	}
	if strings.Contains(res.stdout, plantedPGPassword) || strings.Contains(res.stderr, plantedPGPassword) {
		t.Errorf("the DSN's password was printed")
	}
}

var (
	preflightPortRE = regexp.MustCompile(`http://127\.0\.0\.1:\d+`)
	preflightVarRE  = regexp.MustCompile(`"(free_bytes|reset_seconds|elapsed_seconds)": [0-9.]+`)
)

// TestPreflightJSONDocument: preflight --json is one document with a
// schema_version, each tenant's result and the store check, kept as a
// golden file (what varies from run to run, the servers' ports, free
// space and the window's reset, replaced). The file tenant's online
// workspace has no config left (gone): it is passed over for the next. The
// store does not exist, and preflight does not create it.
func TestPreflightJSONDocument(t *testing.T) {
	live := readLive(t, "custom-seo-agent.yaml")
	f := newPlatformFleet(t)
	p, url := platformServer(t, filesOrg)
	f.tenant(t, "hosted", 1, filesAPIYAML(url, true), ws{name: "seo-running"}, ws{name: "seo-set", template: "seo-agent"})
	p.Put(f.ids["seo-running"], filesapi.MemoryWorkspace{Name: "seo-running", Running: true, Container: &live})
	_, noOrg := platformServer(t, filesOrg)
	f.tenant(t, "no-org", 2, filesAPIYAML(noOrg, false), ws{name: "no-org-1"})
	dir := filepath.Join(f.dir, "live")
	f.tenant(t, "volume", 3, fmt.Sprintf("    collector:\n      file: \"%s/{workspace_id}.yaml\"\n", dir), ws{name: "vol-0"}, ws{name: "vol-1", status: "paused"})
	writeFile(t, filepath.Join(dir, f.ids["vol-1"]+".yaml"), seoConfig)
	f.write(t, "")

	res := f.run(t, "preflight", "--inventory", "inventory.yaml", "--json")
	if res.code != 3 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, res.stdout)
	}
	if doc["schema_version"] != 1.0 || doc["reason"] != "tenants-not-ready" {
		t.Errorf("schema_version %v, reason %v", doc["schema_version"], doc["reason"])
	}
	out := preflightPortRE.ReplaceAllString(res.stdout, "http://SERVER")
	out = preflightVarRE.ReplaceAllString(out, `"$1": 0`)
	golden(t, "json/preflight.json", stable(out))
	if _, err := os.Stat(filepath.Join(f.dir, "evidence.db")); !os.IsNotExist(err) {
		t.Errorf("preflight created the store: %v", err)
	}
}

// TestPreflightEscapesWhatTenantsSend: what a tenant's server answers
// reaches the table, the logs and --json escaped or JSON-encoded, never
// raw; and no credential of the inventory is shown.
func TestPreflightEscapesWhatTenantsSend(t *testing.T) {
	f := newPlatformFleet(t)
	evil := "nope\x1b[2J\x1b]0;pwned\x07\u202e"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "600")
		w.Header().Set("X-RateLimit-Remaining", "599")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		json.NewEncoder(w).Encode(map[string]string{"error": evil})
	}))
	t.Cleanup(srv.Close)
	f.tenant(t, "evil", 1, filesAPIYAML(srv.URL, true), ws{name: "evil-1"})
	f.write(t, "")
	for _, args := range [][]string{{"preflight", "--inventory", "inventory.yaml"}, {"--log-format", "json", "preflight", "--inventory", "inventory.yaml", "--json"}} {
		res := f.run(t, args...)
		if res.code != 3 {
			t.Fatalf("%v: %d\n%s%s", args, res.code, res.stdout, res.stderr)
		}
		for _, s := range []string{res.stdout, res.stderr} {
			if strings.ContainsAny(s, "\x1b\x07") || (!slices.Contains(args, "--json") && strings.Contains(s, "\u202e")) {
				t.Errorf("%v: raw control characters:\n%q", args, s)
			}
			for _, secret := range []string{filesToken, filesOrg} {
				if strings.Contains(s, secret) {
					t.Errorf("%v: %q shown", args, secret)
				}
			}
		}
		if !slices.Contains(args, "--json") && !strings.Contains(res.stdout, `nope\x1b[2J`) {
			t.Errorf("the answer is not shown escaped:\n%s", res.stdout)
		}
	}
}
