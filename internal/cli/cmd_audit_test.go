package cli

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// auditT0 is the clock of the first audit in these tests; later ones run
// at fixed times after it, so every capture's time, and so every age, is
// known.
var auditT0 = time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)

// runClock runs backfill in-process with a clock fixed at now.
func runClock(t *testing.T, env map[string]string, now time.Time, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := Run(context.Background(), append([]string{"backfill"}, args...), Env{
		Stdout: &out, Stderr: &errb,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Now:       func() time.Time { return now },
	})
	return result{code, out.String(), errb.String()}
}

// audit runs `audit --json` on the fleet at now and decodes its document.
func (f *fleet) audit(t *testing.T, now time.Time, extra ...string) (result, auditJSON) {
	t.Helper()
	res := runClock(t, f.env, now, append([]string{"--evidence", f.evidence, "audit", "--inventory", f.inventory, "--json"}, extra...)...)
	var doc auditJSON
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil {
		t.Fatalf("audit --json: exit %d, not one JSON document: %v\n%s\n%s", res.code, err, res.stdout, res.stderr)
	}
	return res, doc
}

// addWorkspace creates a live workspace in a tenant of the fleet, as the
// platform's org or bundle import does (an empty template unless given), with its
// config where the tenant's collector reads it.
func (f *fleet) addWorkspace(t *testing.T, tenant string, n int, template string) string {
	t.Helper()
	ti := slices.Index([]string{"alpha", "beta", "gamma"}, tenant) + 1
	id := uuidFor(ti, n)
	insertRows(t, f.dsns[tenant], ws{id: id, name: fmt.Sprintf("%s-new-%d", tenant, n), template: template, instance: fmt.Sprintf("ws-%s-%d", tenant, n)})
	content := seoConfig + fmt.Sprintf("# created later, %d\n", n)
	if err := filesapi.WriteConfig(f.roots[tenant], id, []byte(content)); err != nil {
		t.Fatal(err)
	}
	f.live[tenant+"/"+id] = content
	return tenant + "/" + id
}

// evidenceCaptures counts each workspace's captures that are evidence,
// read from the store with a connection of its own.
func evidenceCaptures(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("SELECT tenant, workspace_id, count(*) FROM captures WHERE outcome = 'captured' GROUP BY 1, 2")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var tenant, id string
		var n int
		if err := rows.Scan(&tenant, &id, &n); err != nil {
			t.Fatal(err)
		}
		out[tenant+"/"+id] = n
	}
	return out
}

func keysOf(ws []auditWorkspace) []string {
	var out []string
	for _, w := range ws {
		out = append(out, w.Tenant+"/"+w.WorkspaceID)
	}
	sort.Strings(out)
	return out
}

// templateEmpty is the fleet's workspaces with an empty template (newFleet
// sets a template on every third).
func (f *fleet) templateEmpty(perTenant int) []string {
	var out []string
	for ti, tenant := range []string{"alpha", "beta", "gamma"} {
		for i := 0; i < perTenant; i++ {
			if i%3 != 2 {
				out = append(out, tenant+"/"+uuidFor(ti+1, i))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestAuditCapturesWhatAppearedSince: the first audit captures every
// workspace with an empty template and nothing else; workspaces created
// between two audits are captured by the second, which captures exactly
// those and reports exactly those as appeared since the first; a third
// with nothing new captures nothing. Each audit is recorded, chained, and
// shown by status.
func TestAuditCapturesWhatAppearedSince(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	first := f.templateEmpty(3)

	res, doc := f.audit(t, auditT0)
	if res.code != 0 || doc.Reason != "complete" || !doc.Complete || doc.PreviousAudit != nil || doc.AuditID != 1 ||
		doc.TemplateEmpty != 6 || doc.WithEvidence != 6 || doc.Captured != 6 || doc.Appeared != 6 || doc.WithoutEvidence != 0 {
		t.Fatalf("first audit: exit %d %+v\n%s", res.code, doc, res.stderr)
	}
	if got := evidenceCaptures(t, f.evidence); !slices.Equal(slices.Sorted(maps.Keys(got)), first) {
		t.Fatalf("the first audit captured %v, want exactly the template = '' workspaces %v", slices.Sorted(maps.Keys(got)), first)
	}
	if got := keysOf(doc.AppearedList); !slices.Equal(got, first) {
		t.Fatalf("first audit: appeared %v", got)
	}

	// The platform creates three workspaces with template = '' and one
	// with a template between the two audits.
	added := []string{f.addWorkspace(t, "alpha", 10, ""), f.addWorkspace(t, "alpha", 11, ""), f.addWorkspace(t, "gamma", 10, "")}
	f.addWorkspace(t, "beta", 10, "seo-agent")
	sort.Strings(added)
	before := evidenceCaptures(t, f.evidence)

	res, doc = f.audit(t, auditT0.Add(time.Hour))
	if res.code != 0 || doc.Reason != "complete" || doc.AuditID != 2 || doc.PreviousAudit == nil || doc.PreviousAudit.ID != 1 ||
		doc.TemplateEmpty != 9 || doc.WithEvidence != 9 || doc.Captured != 3 || doc.Appeared != 3 {
		t.Fatalf("second audit: exit %d %+v\n%s", res.code, doc, res.stderr)
	}
	if got := keysOf(doc.AppearedList); !slices.Equal(got, added) {
		t.Fatalf("second audit: appeared %v, want exactly %v", got, added)
	}
	after := evidenceCaptures(t, f.evidence)
	var capturedNow []string
	for k, n := range after {
		if n != before[k] {
			capturedNow = append(capturedNow, k)
		}
	}
	sort.Strings(capturedNow)
	if !slices.Equal(capturedNow, added) {
		t.Fatalf("the second audit captured %v, want exactly %v", capturedNow, added)
	}
	byTenant := map[string]auditTenantJSON{}
	for _, bt := range doc.ByTenant {
		byTenant[bt.Tenant] = bt
	}
	if a := byTenant["alpha"]; a.Appeared != 2 || a.Captured != 2 || a.TemplateEmpty != 4 || a.AppearedSince == nil || a.AppearedSince.ID != 1 ||
		a.OldestEvidenceAgeSeconds == nil || *a.OldestEvidenceAgeSeconds != 3600 || *a.NewestEvidenceAgeSeconds != 0 {
		t.Errorf("alpha in the second audit: %+v", a)
	}
	if b := byTenant["beta"]; b.Appeared != 0 || b.Captured != 0 || b.TemplateEmpty != 2 {
		t.Errorf("beta in the second audit (its new workspace has a template): %+v", b)
	}

	res, doc = f.audit(t, auditT0.Add(2*time.Hour))
	if res.code != 0 || doc.Appeared != 0 || doc.Captured != 0 || len(doc.AppearedList) != 0 || doc.PreviousAudit.ID != 2 {
		t.Fatalf("third audit: exit %d %+v", res.code, doc)
	}
	if got := evidenceCaptures(t, f.evidence); len(got) != len(after) {
		t.Fatalf("the third audit captured again: %v", got)
	}

	// The text report says the same.
	res = runClock(t, f.env, auditT0.Add(3*time.Hour), "--evidence", f.evidence, "audit", "--inventory", f.inventory)
	for _, want := range []string{"audit complete", "9 workspaces with template = ''", "appeared since the last audit (3, 2026-12-01T11:00:00Z): 0",
		"oldest 3h0m0s ago", "evidence: " + f.evidence + " (audit 4 recorded)"} {
		if res.code != 0 || !strings.Contains(res.stdout, want) {
			t.Errorf("audit report lacks %q (exit %d):\n%s", want, res.code, res.stdout)
		}
	}

	st := run(t, nil, "status", "--evidence", f.evidence)
	for _, want := range []string{"AUDIT", "4 audits recorded", "2026-12-01T10:00:00Z"} {
		if st.code != 0 || !strings.Contains(st.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, st.stdout)
		}
	}
	var sj statusJSON
	sres := run(t, nil, "status", "--evidence", f.evidence, "--json", "--audits", "2")
	if err := json.Unmarshal([]byte(sres.stdout), &sj); err != nil || sres.code != 0 || sj.SchemaVersion != 1 || sj.AuditsRecorded != 4 ||
		len(sj.Audits) != 2 || sj.Audits[0].ID != 4 || sj.Audits[1].ID != 3 || sj.Audits[1].TemplateEmpty != 9 || len(sj.Audits[0].ByTenant) != 3 {
		t.Fatalf("status --json: %d %v %+v\n%s", sres.code, err, sj, sres.stdout)
	}
	v := run(t, nil, "verify", "--evidence", f.evidence, "--json")
	if v.code != 0 || !strings.Contains(v.stdout, `"audits": 4`) {
		t.Fatalf("verify: %d\n%s%s", v.code, v.stdout, v.stderr)
	}
}

// TestAuditMaxEvidenceAge: --max-evidence-age captures again exactly the
// workspaces whose latest evidence is older than the limit, appending a
// capture and keeping the old one; a re-capture that fails leaves the
// workspace with its evidence, reported stale, and the audit complete.
func TestAuditMaxEvidenceAge(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	old := f.templateEmpty(3)
	if res, doc := f.audit(t, auditT0); res.code != 0 || doc.Captured != 6 {
		t.Fatalf("first audit: %d %+v", res.code, doc)
	}
	young := []string{f.addWorkspace(t, "alpha", 10, ""), f.addWorkspace(t, "beta", 10, ""), f.addWorkspace(t, "gamma", 10, "")}
	if res, doc := f.audit(t, auditT0.Add(50*time.Minute)); res.code != 0 || doc.Captured != 3 || doc.Appeared != 3 {
		t.Fatalf("second audit: %d %+v", res.code, doc)
	}
	// One old workspace's config is gone by now: its re-capture fails.
	goneKey := "gamma/" + uuidFor(3, 0)
	if err := os.Remove(filepath.Join(f.roots["gamma"], uuidFor(3, 0), "config.yaml")); err != nil {
		t.Fatal(err)
	}

	res, doc := f.audit(t, auditT0.Add(70*time.Minute), "--max-evidence-age", "1h")
	if res.code != 0 || doc.Reason != "complete" || doc.MaxEvidenceAgeSeconds != 3600 || doc.Recaptured != 5 || doc.Stale != 1 ||
		doc.Captured != 0 || doc.WithEvidence != 9 || doc.WithoutEvidence != 0 {
		t.Fatalf("audit with --max-evidence-age 1h: exit %d %+v\n%s", res.code, doc, res.stderr)
	}
	if len(doc.StaleList) != 1 || doc.StaleList[0].Tenant+"/"+doc.StaleList[0].WorkspaceID != goneKey || doc.StaleList[0].Outcome != "gone" {
		t.Fatalf("stale: %+v, want %s, gone", doc.StaleList, goneKey)
	}
	counts := evidenceCaptures(t, f.evidence)
	for _, k := range old {
		want := 2
		if k == goneKey {
			want = 1
		}
		if counts[k] != want {
			t.Errorf("%s (evidence 70 minutes old): %d captures, want %d", k, counts[k], want)
		}
	}
	for _, k := range young {
		if counts[k] != 1 {
			t.Errorf("%s (evidence 20 minutes old): %d captures, want 1: it was captured again", k, counts[k])
		}
	}
	// Ten minutes on, only the one whose re-capture failed is past the
	// limit; the workspace that is still old is named again.
	res, doc = f.audit(t, auditT0.Add(80*time.Minute), "--max-evidence-age", "1h")
	if res.code != 0 || doc.Recaptured != 0 || doc.Stale != 1 || doc.OldestEvidenceAgeSeconds == nil || *doc.OldestEvidenceAgeSeconds != 80*60 {
		t.Fatalf("audit ten minutes on: exit %d %+v", res.code, doc)
	}
	if got := evidenceCaptures(t, f.evidence); !maps.Equal(got, counts) {
		t.Fatalf("captures changed: %v, were %v", got, counts)
	}
}

// TestAuditExitCodes (usage errors, which exit 2 and create no store, are
// transcripts under testdata/transcripts/audit): exit 3 when
// a workspace with an empty template has no evidence (gone: reason gone, and
// --allow-gone exits 0; failed: incomplete), or a tenant cannot be listed
// (tenants-failed, its workspaces named from its latest listing, and the
// audit after it compares with the audit before it); --partial-exit-code
// replaces 3; 0 once every one has evidence.
func TestAuditExitCodes(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	// Usage errors are transcripts (testdata/transcripts/audit).
	gone := uuidFor(3, 0)
	if err := os.RemoveAll(filepath.Join(f.roots["gamma"], gone)); err != nil {
		t.Fatal(err)
	}
	res, doc := f.audit(t, auditT0)
	if res.code != 3 || doc.Reason != "gone" || doc.Complete || doc.WithoutEvidence != 1 || len(doc.WithoutEvidenceList) != 1 ||
		doc.WithoutEvidenceList[0].WorkspaceID != gone || doc.WithoutEvidenceList[0].Outcome != "gone" || doc.WithoutEvidenceList[0].Name != "gamma-ws-0" {
		t.Fatalf("one gone: exit %d %+v", res.code, doc)
	}
	if res, doc := f.audit(t, auditT0.Add(time.Minute), "--allow-gone"); res.code != 0 || doc.Reason != "gone" {
		t.Fatalf("--allow-gone: exit %d %+v", res.code, doc)
	}
	if res := runClock(t, f.env, auditT0.Add(2*time.Minute), "--partial-exit-code", "0", "--evidence", f.evidence, "audit", "--inventory", f.inventory); res.code != 0 ||
		!strings.Contains(res.stdout, "gone gamma/"+gone) {
		t.Fatalf("--partial-exit-code 0: exit %d\n%s", res.code, res.stdout)
	}

	// A config larger than --max-bytes fails: incomplete.
	big := f.addWorkspace(t, "alpha", 10, "")
	bigID := strings.TrimPrefix(big, "alpha/")
	if err := filesapi.WriteConfig(f.roots["alpha"], bigID, []byte(seoConfig+strings.Repeat("# padding\n", 500))); err != nil {
		t.Fatal(err)
	}
	res, doc = f.audit(t, auditT0.Add(3*time.Minute), "--max-bytes", "2000")
	if res.code != 3 || doc.Reason != "incomplete" || doc.WithoutEvidence != 2 || doc.Appeared != 1 || keysOf(doc.AppearedList)[0] != big {
		t.Fatalf("one too large: exit %d %+v", res.code, doc)
	}
	for _, w := range doc.WithoutEvidenceList {
		if w.WorkspaceID == bigID && (w.Outcome != "failed" || !strings.Contains(w.Reason, "too large")) {
			t.Errorf("the large config: %+v", w)
		}
	}

	// gamma's database is down: its workspaces are counted from its latest
	// listing, the one without evidence named as the tenant's.
	inv, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	f.repoint(t, "gamma", "postgres://postgres@127.0.0.1:1/x?connect_timeout=2")
	res, doc = f.audit(t, auditT0.Add(4*time.Minute), "--max-bytes", "2000")
	if res.code != 3 || doc.Reason != "tenants-failed" || len(doc.TenantsFailed) != 1 || doc.TenantsFailed[0].Tenant != "gamma" {
		t.Fatalf("gamma down: exit %d %+v", res.code, doc)
	}
	var gamma auditTenantJSON
	for _, bt := range doc.ByTenant {
		if bt.Tenant == "gamma" {
			gamma = bt
		}
	}
	if gamma.Status != "unreachable" || gamma.RowsListedAt == nil || *gamma.RowsListedAt != "2026-12-01T09:03:00Z" || gamma.TemplateEmpty != 2 ||
		gamma.WithEvidence != 1 || gamma.WithoutEvidence != 1 || gamma.Appeared != 0 || gamma.AppearedSince != nil {
		t.Fatalf("gamma down: %+v", gamma)
	}
	named := false
	for _, w := range doc.WithoutEvidenceList {
		named = named || w.WorkspaceID == gone && w.Outcome == "tenant unreachable" && strings.Contains(w.Reason, "list workspaces")
	}
	if !named {
		t.Fatalf("the gamma workspace without evidence is not named for its tenant: %+v", doc.WithoutEvidenceList)
	}

	// gamma back, its workspace's config back, the large config trimmed:
	// complete; gamma's appeared counts against the last audit that listed
	// it, not the one that could not.
	writeFile(t, f.inventory, string(inv))
	if err := filesapi.WriteConfig(f.roots["gamma"], gone, []byte(seoConfig)); err != nil {
		t.Fatal(err)
	}
	if err := filesapi.WriteConfig(f.roots["alpha"], bigID, []byte(seoConfig)); err != nil {
		t.Fatal(err)
	}
	res, doc = f.audit(t, auditT0.Add(5*time.Minute), "--max-bytes", "2000")
	if res.code != 0 || doc.Reason != "complete" || doc.Appeared != 0 || doc.Captured != 2 || doc.PreviousAudit.ID != 5 {
		t.Fatalf("everything back: exit %d %+v", res.code, doc)
	}
	for _, bt := range doc.ByTenant {
		if bt.Tenant == "gamma" && (bt.AppearedSince == nil || bt.AppearedSince.ID != 4) {
			t.Errorf("gamma compared with %+v, want audit 4 (audit 5 could not list it)", bt.AppearedSince)
		}
	}
}

// TestAuditJSONGolden: `audit --json` is one document with a
// schema_version, kept as a golden file: a third audit that finds one
// workspace appeared and captures it, captures again what is older than
// --max-evidence-age (one of them in vain: stale), and names the one
// workspace still without evidence; then status --json with the history.
func TestAuditJSONGolden(t *testing.T) {
	f := newFleet(t, 3, 0)
	t.Chdir(f.dir)
	if err := os.RemoveAll(filepath.Join(f.roots["gamma"], uuidFor(3, 0))); err != nil {
		t.Fatal(err)
	}
	if res := runClock(t, f.env, auditT0, "audit", "--inventory", "inventory.yaml"); res.code != 3 {
		t.Fatalf("first audit: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	f.addWorkspace(t, "alpha", 10, "")
	if res := runClock(t, f.env, auditT0.Add(40*time.Minute), "audit", "--inventory", "inventory.yaml"); res.code != 3 {
		t.Fatalf("second audit: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	f.addWorkspace(t, "beta", 10, "")
	if err := os.Remove(filepath.Join(f.roots["alpha"], uuidFor(1, 0), "config.yaml")); err != nil {
		t.Fatal(err)
	}
	res := runClock(t, f.env, auditT0.Add(70*time.Minute), "audit", "--inventory", "inventory.yaml", "--max-evidence-age", "1h", "--json")
	if res.code != 3 {
		t.Fatalf("second audit: exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || doc["schema_version"] != 1.0 {
		t.Fatalf("not one JSON document with schema_version 1: %v\n%s", err, res.stdout)
	}
	golden(t, "json/audit.json", stable(strings.ReplaceAll(res.stdout, f.dir, "DIR")))

	st := runClock(t, nil, auditT0.Add(2*time.Hour), "status", "--json", "--audits", "2")
	if st.code != 0 {
		t.Fatalf("status --json: %d %s", st.code, st.stderr)
	}
	golden(t, "json/status-audits.json", stable(strings.ReplaceAll(st.stdout, f.dir, "DIR")))
}

// TestAuditNamesAStoppedTenant: a tenant whose collector turns out
// misconfigured (its files API answers a bare 404) is stopped as snapshot
// stops it: the audit exits 3 with reason tenants-failed and names the
// workspaces it could not capture with the tenant's reason.
func TestAuditNamesAStoppedTenant(t *testing.T) {
	t.Parallel()
	f := newFleet(t, 3, 0)
	if res, doc := f.audit(t, auditT0); res.code != 0 {
		t.Fatalf("first audit: %d %+v", res.code, doc)
	}
	added := []string{f.addWorkspace(t, "beta", 10, ""), f.addWorkspace(t, "beta", 11, "")}
	b, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(b), "/configs/{workspace_id}/config.yaml", "/no-such-route/{workspace_id}", 1)
	if broken == string(b) {
		t.Fatal("inventory rewrite failed")
	}
	writeFile(t, f.inventory, broken)
	res, doc := f.audit(t, auditT0.Add(time.Hour), "--concurrency", "1")
	if res.code != 3 || doc.Reason != "tenants-failed" || len(doc.TenantsFailed) != 1 || !doc.TenantsFailed[0].Stopped ||
		doc.Appeared != 2 || doc.WithoutEvidence != 2 || !slices.Equal(keysOf(doc.WithoutEvidenceList), added) {
		t.Fatalf("audit with beta misconfigured: exit %d %+v", res.code, doc)
	}
	outcomes := map[string]bool{}
	for _, w := range doc.WithoutEvidenceList {
		outcomes[w.Outcome] = true
		if w.Outcome == "tenant stopped" && !strings.Contains(w.Reason, "misconfigured") || w.Reason == "" {
			t.Errorf("%s: %s %q does not say why", w.WorkspaceID, w.Outcome, w.Reason)
		}
	}
	if !outcomes["tenant stopped"] {
		t.Errorf("no workspace named as its stopped tenant's: %+v", doc.WithoutEvidenceList)
	}
	for _, bt := range doc.ByTenant {
		if bt.Tenant == "beta" && (bt.Status != "stopped" || bt.Appeared != 2 || bt.TemplateEmpty != 4) {
			t.Errorf("beta: %+v", bt)
		}
	}
	// The stopped tenant was listed: the next audit compares with this one.
	writeFile(t, f.inventory, string(b))
	res, doc = f.audit(t, auditT0.Add(2*time.Hour))
	if res.code != 0 || doc.Appeared != 0 || doc.Captured != 2 {
		t.Fatalf("audit with beta repaired: exit %d %+v", res.code, doc)
	}
}

// A tenant dropped from the inventory (a ConfigMap edit, a typo in its
// name) takes its workspaces without evidence out of the audit: the first
// audit that misses it names it, says what the audit before counted, and
// exits 3; the audit after, which has already said so, does not again.
func TestAuditNamesATenantThatLeftTheInventory(t *testing.T) {
	f := newFleet(t, 3, 0)
	// gamma's first template = '' workspace has no config: it stays without evidence.
	os.Remove(filepath.Join(f.roots["gamma"], uuidFor(3, 0), "config.yaml"))
	res, doc := f.audit(t, auditT0)
	if res.code != 3 || doc.WithoutEvidence != 1 {
		t.Fatalf("audit 1: %d %+v", res.code, doc)
	}
	b, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.Index(string(b), "  - name: gamma")
	if i < 0 {
		t.Fatalf("no gamma in\n%s", b)
	}
	writeFile(t, f.inventory, string(b[:i]))
	res, doc = f.audit(t, auditT0.Add(time.Hour))
	var left *auditTenantJSON
	for k := range doc.ByTenant {
		if doc.ByTenant[k].Tenant == "gamma" {
			left = &doc.ByTenant[k]
		}
	}
	if res.code != 3 || doc.Reason != "tenants-failed" || left == nil || left.Status != "left-inventory" ||
		!strings.Contains(left.Reason, "not in the inventory now") || !strings.Contains(left.Reason, "1 without evidence then") ||
		len(doc.TenantsFailed) != 1 || doc.TenantsFailed[0].Tenant != "gamma" {
		t.Fatalf("audit 2, gamma gone from the inventory: %d %s %+v\n%s", res.code, doc.Reason, left, res.stderr)
	}
	res, doc = f.audit(t, auditT0.Add(2*time.Hour))
	if res.code != 0 || doc.Reason != "complete" || len(doc.ByTenant) != 2 {
		t.Fatalf("audit 3: %d %s %+v", res.code, doc.Reason, doc.ByTenant)
	}
	text := run(t, nil, "--evidence", f.evidence, "status")
	if text.code != 0 {
		t.Fatalf("status: %d %s", text.code, text.stderr)
	}
}

// copyOfBeta is a new tenant database holding the rows newFleet(t, 3, 0)
// gives beta: the same workspaces, as a restore of it holds them.
func copyOfBeta(t *testing.T) string {
	t.Helper()
	dsn := pgtest.NewTenantDB(t)
	var rows []ws
	for i := 0; i < 3; i++ {
		r := ws{id: uuidFor(2, i), name: fmt.Sprintf("beta-ws-%d", i), instance: fmt.Sprintf("ws-beta-%d", i)}
		if i%3 == 2 {
			r.template = "seo-agent"
		}
		rows = append(rows, r)
	}
	insertRows(t, dsn, rows...)
	return dsn
}

// TestAuditNamesATenantListedFromAnotherDatabase: a tenant whose DSN now
// reaches another database (a restore, a ConfigMap edit) holding the same
// workspaces, all with evidence, would pass the audit unseen. The first
// audit that lists it there fails once, naming both databases, even when
// an audit in between could not reach it; the next one passes.
func TestAuditNamesATenantListedFromAnotherDatabase(t *testing.T) {
	f := newFleet(t, 3, 0)
	if res, doc := f.audit(t, auditT0); res.code != 0 || doc.Reason != "complete" {
		t.Fatalf("audit 1: %d %s\n%s", res.code, doc.Reason, res.stderr)
	}
	// A copy of beta's rows in a new database: the same workspaces, each
	// with evidence already.
	restored := copyOfBeta(t)

	// In between, beta cannot be reached: the database the audits knew is
	// carried over to the next.
	unreachable := "postgres://postgres@127.0.0.1:1/x?connect_timeout=2"
	f.repoint(t, "beta", unreachable)
	original := f.dsns["beta"]
	f.dsns["beta"] = unreachable
	if res, doc := f.audit(t, auditT0.Add(time.Hour)); res.code != 3 || doc.Reason != "tenants-failed" {
		t.Fatalf("audit 2, beta unreachable: %d %s", res.code, doc.Reason)
	}
	f.repoint(t, "beta", restored)
	f.dsns["beta"] = restored
	res, doc := f.audit(t, auditT0.Add(2*time.Hour))
	var beta *auditTenantJSON
	for k := range doc.ByTenant {
		if doc.ByTenant[k].Tenant == "beta" {
			beta = &doc.ByTenant[k]
		}
	}
	if res.code != 3 || doc.Reason != "tenants-failed" || beta == nil || beta.Status != "database-changed" ||
		!strings.Contains(beta.Reason, "another database than audit 2 knew") || beta.WithEvidence != 2 ||
		len(doc.TenantsFailed) != 1 || doc.TenantsFailed[0].Tenant != "beta" {
		t.Fatalf("audit 3, beta re-pointed: %d %s %+v %+v\n%s", res.code, doc.Reason, beta, doc.TenantsFailed, res.stderr)
	}
	// Both databases named by what tells them apart, never a password.
	if strings.Count(beta.Reason, "public.workspaces oid") != 2 || strings.Contains(res.stdout, plantedPGPassword) {
		t.Fatalf("reason: %s", beta.Reason)
	}
	text := runClock(t, f.env, auditT0.Add(3*time.Hour), "--evidence", f.evidence, "audit", "--inventory", f.inventory)
	if text.code != 0 || !strings.Contains(text.stdout, "audit complete") {
		t.Fatalf("audit 4, beta known at its new database: %d\n%s\n%s", text.code, text.stdout, text.stderr)
	}
	// Back to the original database: another change, named again.
	f.repoint(t, "beta", original)
	f.dsns["beta"] = original
	text = runClock(t, f.env, auditT0.Add(4*time.Hour), "--evidence", f.evidence, "audit", "--inventory", f.inventory)
	if text.code != 3 || !strings.Contains(text.stdout, "database-changed: listed from another database than audit 4 knew") {
		t.Fatalf("audit 5, beta back: %d\n%s\n%s", text.code, text.stdout, text.stderr)
	}
}

// TestAuditKnowsTheDatabaseOfATenantBackInTheInventory: a tenant dropped
// from the inventory for an audit, then put back with its DSN pointed at
// another database, is compared with the database an audit last knew for
// it: database-changed, not a silent pass.
func TestAuditKnowsTheDatabaseOfATenantBackInTheInventory(t *testing.T) {
	f := newFleet(t, 3, 0)
	if res, doc := f.audit(t, auditT0); res.code != 0 || doc.Reason != "complete" {
		t.Fatalf("audit 1: %d %s\n%s", res.code, doc.Reason, res.stderr)
	}
	other := copyOfBeta(t)
	orig, err := os.ReadFile(f.inventory)
	if err != nil {
		t.Fatal(err)
	}
	s := string(orig)
	i, j := strings.Index(s, "  - name: beta"), strings.Index(s, "  - name: gamma")
	writeFile(t, f.inventory, s[:i]+s[j:])
	if res, doc := f.audit(t, auditT0.Add(time.Hour)); res.code != 3 || doc.Reason != "tenants-failed" {
		t.Fatalf("audit 2, beta left: %d %s", res.code, doc.Reason)
	}
	// Two audits without beta: the one before the return does not name it.
	if res, doc := f.audit(t, auditT0.Add(2*time.Hour)); res.code != 0 || len(doc.ByTenant) != 2 {
		t.Fatalf("audit 3, beta still out: %d %s %+v", res.code, doc.Reason, doc.ByTenant)
	}
	writeFile(t, f.inventory, s)
	f.repoint(t, "beta", other)
	f.dsns["beta"] = other
	res, doc := f.audit(t, auditT0.Add(3*time.Hour))
	for _, bt := range doc.ByTenant {
		if bt.Tenant == "beta" && bt.Status == "database-changed" && strings.Contains(bt.Reason, "than audit 1 knew") && res.code == 3 {
			return
		}
	}
	t.Fatalf("audit 4, beta back at another database: exit %d, reason %s, %+v", res.code, doc.Reason, doc.ByTenant)
}
