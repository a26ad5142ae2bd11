package cli

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// sweepSecrets are distinct values, one for every place an operator's
// inventory or command line can hold a credential.
var sweepSecrets = map[string]string{
	"ALPHA_PG_PASSWORD": "alpha/Pw@with:special?#%chars", // written URL-encoded in the DSN
	"BETA_PG_PASSWORD":  "beta-dsn-pw-5c8e2a",
	"gamma DSN":         "gamma+pw&=v4lue;x",          // inside a whole DSN from ${GAMMA_DSN}
	"DELTA_PG_PASSWORD": "delta-unreachable-pw-91f3",  // a tenant that never answers
	"BETA_TOKEN":        "beta-bearer-tok-4e7a",       // Authorization: Bearer ${BETA_TOKEN}
	"BETA_ORG":          "beta-org-id-secret-77d0",    // X-Molecule-Org-Id: ${BETA_ORG}
	"literal header":    "beta-literal-hdr-3b9f",      // X-Api-Key written in the inventory
	"ALPHA_EXEC_TOKEN":  "alpha-exec-argv-tok-0c2d",   // an exec argv element
	"ALPHA_DIR_TOKEN":   "alpha-dir-tok-6a1b",         // an exec argv path component
	"GAMMA_DIR_TOKEN":   "gamma-dir-tok-8e4f",         // a file collector path component
	"cp DSN":            "cp-Pw@/:?&=3d2e with space", // the --cp postgres:// password
}

// secretForms returns s as it may appear escaped in a URL or JSON.
func secretForms(s string) []string {
	forms := []string{s, url.QueryEscape(s), url.PathEscape(s), strings.TrimPrefix(url.UserPassword("", s).String(), ":")}
	if b, err := json.Marshal(s); err == nil {
		forms = append(forms, string(b[1:len(b)-1]))
	}
	return forms
}

// userinfo is the password as written in a postgres:// URL's user-info.
func userinfo(pw string) string {
	return strings.TrimPrefix(url.UserPassword("", pw).String(), ":")
}

// dumpSQLite renders every column of every row of every table, opened
// read-only.
func dumpSQLite(t *testing.T, path string) map[string]string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	names := []string{"sqlite_master"}
	rows, err := db.Query("SELECT name FROM sqlite_master WHERE type = 'table'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	rows.Close()
	out := map[string]string{}
	for _, n := range names {
		rows, err := db.Query(`SELECT * FROM "` + n + `"`)
		if err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		cols, _ := rows.Columns()
		var b strings.Builder
		count := 0
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if bs, ok := v.([]byte); ok {
					v = string(bs)
				}
				fmt.Fprintf(&b, "%s=%v\n", cols[i], v)
			}
			count++
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		out["evidence table "+n] = b.String()
		t.Logf("evidence table %s: %d rows", n, count)
	}
	return out
}

func TestSecretsSweepEveryArtifact(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"USER": "alice"}
	for k, v := range sweepSecrets {
		if !strings.Contains(k, " ") {
			env[k] = v
		}
	}
	env["ALPHA_PG_PASSWORD"] = userinfo(sweepSecrets["ALPHA_PG_PASSWORD"])

	// Three reachable tenants, one per collector method. Per tenant, ws 0 and
	// 1 are captured, ws 2 is gone and ws 3 fails, so error paths run.
	dsns := map[string]string{}
	liveDirs := map[string]string{
		"alpha": filepath.Join(dir, "live", "alpha", sweepSecrets["ALPHA_DIR_TOKEN"]),
		"beta":  filepath.Join(dir, "live", "beta"),
		"gamma": filepath.Join(dir, "live", "gamma", sweepSecrets["GAMMA_DIR_TOKEN"]),
	}
	ids := map[string][]string{}
	for ti, tenant := range []string{"alpha", "beta", "gamma"} {
		dsn := pgtest.NewTenantDB(t)
		dsns[tenant] = dsn
		var rows []ws
		for i := 0; i < 4; i++ {
			id := uuidFor(ti+1, i)
			ids[tenant] = append(ids[tenant], id)
			rows = append(rows, ws{id: id, name: fmt.Sprintf("%s-ws-%d", tenant, i), instance: fmt.Sprintf("ws-%s-%d", tenant, i)})
			switch i {
			case 0, 1:
				if err := filesapi.WriteConfig(liveDirs[tenant], id, []byte(seoConfig)); err != nil {
					t.Fatal(err)
				}
			case 3:
				// A directory where the file should be: a read error.
				if err := os.MkdirAll(filepath.Join(liveDirs[tenant], id, "config.yaml"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		insertRows(t, dsn, rows...)
	}
	srv := filesServer(t, liveDirs["beta"], sweepSecrets["BETA_TOKEN"], 0)
	asUser := func(dsn, pw string) string {
		if !strings.HasPrefix(dsn, "postgres://postgres@") {
			t.Fatalf("unexpected test DSN form %q", dsn)
		}
		return strings.Replace(dsn, "postgres://postgres@", "postgres://postgres:"+pw+"@", 1)
	}
	env["GAMMA_DSN"] = asUser(dsns["gamma"], userinfo(sweepSecrets["gamma DSN"]))
	tenantsYAML := fmt.Sprintf(`  - name: alpha
    dsn: %q
    collector:
      exec: ["env", "BACKFILL_TOKEN=${ALPHA_EXEC_TOKEN}", "cat", "%s/${ALPHA_DIR_TOKEN}/{workspace_id}/config.yaml"]
  - name: beta
    dsn: %q
    collector:
      http:
        url: %q
        headers: {Authorization: "Bearer ${BETA_TOKEN}", X-Molecule-Org-Id: "${BETA_ORG}", X-Api-Key: %q}
        json_field: content
  - name: gamma
    dsn: "${GAMMA_DSN}"
    collector:
      file: "%s/${GAMMA_DIR_TOKEN}/{workspace_id}/config.yaml"
`, asUser(dsns["alpha"], "${ALPHA_PG_PASSWORD}"), filepath.Dir(liveDirs["alpha"]),
		asUser(dsns["beta"], "${BETA_PG_PASSWORD}"), srv.URL+"/configs/{workspace_id}/config.yaml",
		sweepSecrets["literal header"], filepath.Dir(liveDirs["gamma"]))
	unreachable := `  - name: delta
    dsn: "postgres://backfill:${DELTA_PG_PASSWORD}@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"
    collector:
      file: "/nonexistent/{workspace_id}/config.yaml"
`
	invAll := writeFile(t, filepath.Join(dir, "inventory.yaml"), "version: 1\ntenants:\n"+tenantsYAML+unreachable)
	invReachable := writeFile(t, filepath.Join(dir, "inventory-reachable.yaml"), "version: 1\ntenants:\n"+tenantsYAML)

	// The CP source: a database whose password is on the command line.
	cpDSN := pgtest.NewDB(t)
	execSQL(t, cpDSN, `CREATE TABLE cp_claims (tenant text NOT NULL, workspace_id uuid, template text NOT NULL);
INSERT INTO cp_claims VALUES ('alpha', NULL, 'seo-agent'), ('beta', NULL, 'seo-agent'), ('gamma', NULL, 'seo-agent');`)
	cpSrc := asUser(cpDSN, userinfo(sweepSecrets["cp DSN"]))
	writeCatalog(t, filepath.Join(dir, "catalog"))
	evidencePath := filepath.Join(dir, "evidence.db")
	planPath, reportPath := filepath.Join(dir, "plan.json"), filepath.Join(dir, "report.md")

	artifacts := map[string]string{}
	rawStore := func(after string) {
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if b, err := os.ReadFile(evidencePath + suffix); err == nil {
				artifacts["evidence.db"+suffix+" bytes after "+after] = string(b)
			}
		}
	}
	step := 0
	cli := func(wantCode int, args ...string) result {
		t.Helper()
		step++
		res := run(t, env, append([]string{"--evidence", evidencePath}, args...)...)
		// Named by the command only: other arguments may hold a secret.
		command := ""
		for _, a := range args {
			if strings.Contains(" preflight snapshot audit status verify plan show approve apply rollback export ", " "+a+" ") {
				command = a
				break
			}
		}
		name := fmt.Sprintf("run #%d (%s)", step, command)
		if res.code != wantCode {
			t.Fatalf("%s: exit %d, want %d\n%s%s", name, res.code, wantCode, res.stdout, res.stderr)
		}
		artifacts["stdout of "+name] = res.stdout
		artifacts["stderr of "+name] = res.stderr
		rawStore(name)
		return res
	}
	mustContain := func(res result, wants ...string) {
		t.Helper()
		for _, w := range wants {
			if !strings.Contains(res.stdout+res.stderr, w) {
				t.Fatalf("output lacks %q:\n%s%s", w, res.stdout, res.stderr)
			}
		}
	}

	// Preflight, then phase one, with text and json logs; failing captures
	// and an unreachable tenant make the error paths run.
	mustContain(cli(3, "preflight", "--inventory", invAll), "3 of 4 tenants ready", "(tenants-not-ready)")
	res := cli(3, "snapshot", "--inventory", invAll, "--retries", "0")
	cli(3, "--log-format", "json", "preflight", "--inventory", invAll, "--json")
	mustContain(res, "captured now 6,", "tenant delta not listed", "gone alpha/", "failed alpha/", "gone beta/", "failed beta/", "gone gamma/", "failed gamma/")
	cli(3, "--log-format", "json", "snapshot", "--inventory", invAll, "--retries", "0", "--refresh")
	cli(0, "status")
	cli(0, "verify")

	// Phase two. A plan over an unreachable tenant plans the others and
	// exits 3, naming it; a CP query that fails reports the database error.
	mustContain(cli(3, "plan", "--inventory", invAll, "--cp", cpSrc, "--cp-query", "SELECT tenant, workspace_id, template FROM cp_claims",
		"--catalog", filepath.Join(dir, "catalog"), "--out", planPath), `tenant delta unreachable`)
	mustContain(cli(1, "plan", "--inventory", invReachable, "--cp", cpSrc, "--cp-query", "SELECT tenant, workspace_id, template FROM no_such_table",
		"--catalog", filepath.Join(dir, "catalog"), "--out", planPath), "no_such_table")
	cli(0, "--log-format", "json", "plan", "--inventory", invReachable, "--cp", cpSrc, "--cp-query", "SELECT tenant, workspace_id, template FROM cp_claims",
		"--catalog", filepath.Join(dir, "catalog"), "--out", planPath, "--report", reportPath)
	cli(0, "show", planPath)
	cli(0, "show", planPath, "--json")
	// approve and apply read the CP database again, password and all.
	cpAgain := []string{"--cp", cpSrc, "--cp-query", "SELECT tenant, workspace_id, template FROM cp_claims"}
	cli(0, append([]string{"approve", planPath, "--catalog", filepath.Join(dir, "catalog"), "--by", "bob"}, cpAgain...)...)
	mustContain(cli(0, append([]string{"apply", "--inventory", invReachable, "--plan", planPath}, cpAgain...)...), "would-write 6")
	// A lock timeout fails alpha, so a database error reaches the journal.
	release := lockRow(t, dsns["alpha"], ids["alpha"][0])
	mustContain(cli(3, append([]string{"--log-format", "json", "apply", "--inventory", invReachable, "--plan", planPath, "--execute", "--lock-timeout", "200ms"}, cpAgain...)...),
		"lock timeout")
	release()
	mustContain(cli(0, append([]string{"apply", "--inventory", invReachable, "--plan", planPath, "--execute"}, cpAgain...)...), "applied 2")
	cli(0, "rollback", "--inventory", invReachable, "--plan", planPath)
	mustContain(cli(0, "rollback", "--inventory", invReachable, "--plan", planPath, "--execute"), "rolled-back 6")
	// The standing audit: its report, its JSON and its record in the store.
	mustContain(cli(3, "audit", "--inventory", invAll, "--retries", "0"), "unreachable: list workspaces", "gone alpha/", "failed beta/")
	cli(3, "--log-format", "json", "audit", "--inventory", invAll, "--retries", "0", "--json", "--max-evidence-age", "1s")
	cli(0, "status", "--json")
	cli(0, "status")
	cli(0, "export", "--format", "json")
	cli(0, "export", "--format", "csv")
	cli(0, "verify")

	for _, p := range []string{planPath, reportPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		artifacts[filepath.Base(p)] = string(b)
	}
	for name, text := range dumpSQLite(t, evidencePath) {
		artifacts[name] = text
	}
	rawStore("the last command")

	names := make([]string, 0, len(artifacts))
	for name := range artifacts {
		names = append(names, name)
	}
	sort.Strings(names)
	checked := 0
	for _, where := range sortedKeys(sweepSecrets) {
		for _, form := range secretForms(sweepSecrets[where]) {
			checked++
			for _, name := range names {
				if strings.Contains(artifacts[name], form) {
					t.Errorf("secret %s (as %q) appears in %s", where, form, name)
				}
			}
		}
	}
	t.Logf("%d secrets in %d spellings checked against %d artifacts", len(sweepSecrets), checked, len(artifacts))
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestALinkToAProcessEnvironmentPutsNothingInTheStore: an agent makes its
// config.yaml a symbolic link to a process's environment, and the exec
// collector's cat follows it. The answer holds NUL bytes, as no YAML file
// can: the capture fails and neither the secret nor any of the bytes
// reaches the store.
func TestALinkToAProcessEnvironmentPutsNothingInTheStore(t *testing.T) {
	f := newFleet(t, 3, 0)
	id := uuidFor(1, 0) // alpha: exec ["cat", ROOT/{workspace_id}/config.yaml]
	environ := filepath.Join(f.dir, "environ")
	if err := os.WriteFile(environ, []byte("HOME=/root\x00API_KEY="+plantedToken+"\x00"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(f.roots["alpha"], id, "config.yaml")
	os.Remove(cfg)
	if err := os.Symlink(environ, cfg); err != nil {
		t.Fatal(err)
	}
	res := f.snapshot(t)
	if res.code != 3 || !strings.Contains(res.stdout, "holds a NUL byte") {
		t.Fatalf("snapshot: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for name, dump := range dumpSQLite(t, f.evidence) {
		if strings.Contains(dump, plantedToken) || strings.Contains(dump, "API_KEY=") {
			t.Errorf("%s holds the environment's bytes", name)
		}
	}
}
