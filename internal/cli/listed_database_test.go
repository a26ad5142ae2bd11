package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"backfill/apply/plan"
	"backfill/internal/fixture"
	"backfill/internal/tenantdb"
)

// Found by review: a tenant's DSN pointed, between the snapshot and the
// plan, at another database holding the same workspaces (a restored copy,
// a clone) was planned there, approved and written there, and the tenant's
// own database was left as it was; a plan whose databases record was
// edited to name such a copy, and re-sealed, did the same. A snapshot's
// listing now names the database it read; plan does not plan a tenant
// whose DSN reaches another (unless --allow-moved, which the plan records
// as moved_from), and approve and apply refuse a plan that writes to a
// tenant in another database than its evidence was listed from without
// saying so.
func TestAPlanReadingAnotherDatabaseThanTheEvidenceWasListedFrom(t *testing.T) {
	f := newFleet(t, 3, 0)
	t.Chdir(f.dir)
	if res := run(t, f.env, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory); res.code != 0 {
		t.Fatalf("snapshot: %d %s%s", res.code, res.stdout, res.stderr)
	}
	catalog := fixture.CatalogDir(t)
	cp := writeFile(t, filepath.Join(f.dir, "cp.csv"), "tenant,workspace_id,template\nalpha,,seo-agent\nbeta,,seo-agent\ngamma,,seo-agent\n")
	planTo := func(out string, extra ...string) (result, *plan.Plan) {
		res := runAt(t, f.env, append([]string{"--evidence", f.evidence, "plan", "--inventory", f.inventory, "--cp", cp, "--catalog", catalog,
			"--out", filepath.Join(f.dir, out), "--author", "ops"}, extra...)...)
		p, err := plan.LoadPlan(filepath.Join(f.dir, out))
		if err != nil {
			t.Fatalf("plan %s: %v\n%s%s", out, err, res.stdout, res.stderr)
		}
		return res, p
	}
	writesIn := func(p *plan.Plan, tenant string) int {
		n := 0
		for _, it := range p.Agreed() {
			if it.Tenant == tenant {
				n++
			}
		}
		return n
	}
	_, honest := planTo("honest.json")
	if writesIn(honest, "beta") != 2 {
		t.Fatalf("the honest plan writes %d rows in beta, want 2", writesIn(honest, "beta"))
	}

	// beta's DSN now reaches a copy of its database.
	restored := copyOfBeta(t)
	f.repoint(t, "beta", restored)
	res, moved := planTo("moved.json")
	if writesIn(moved, "beta") != 0 || writesIn(moved, "alpha") != 2 || !strings.Contains(res.stderr, "its evidence was listed from") {
		t.Fatalf("beta re-pointed: %d writes in beta, %d in alpha\n%s", writesIn(moved, "beta"), writesIn(moved, "alpha"), res.stderr)
	}
	// Found by the next review: a snapshot run again after the DSN moved
	// listed beta from the copy, and the plan, comparing with the latest
	// listing alone, planned beta there unsaid. Every database its
	// listings name counts.
	if res := run(t, f.env, "--evidence", f.evidence, "snapshot", "--inventory", f.inventory); res.code != 0 {
		t.Fatalf("snapshot again: %d %s%s", res.code, res.stdout, res.stderr)
	}
	if res, again := planTo("again.json"); writesIn(again, "beta") != 0 || !strings.Contains(res.stderr, "its evidence was listed from") {
		t.Fatalf("beta re-pointed and snapshotted again: %d writes in beta\n%s", writesIn(again, "beta"), res.stderr)
	}
	res, allowed := planTo("allowed.json", "--allow-moved", "beta", "--report", filepath.Join(f.dir, "allowed.md"))
	var from []string
	for _, d := range allowed.Databases {
		if d.Tenant == "beta" {
			from = d.MovedFrom
		}
	}
	if writesIn(allowed, "beta") != 2 || len(from) != 1 || !strings.Contains(res.stderr, "--allow-moved") {
		t.Fatalf("--allow-moved beta: %d writes, moved_from %q\n%s", writesIn(allowed, "beta"), from, res.stderr)
	}
	if report, err := os.ReadFile(filepath.Join(f.dir, "allowed.md")); err != nil || !strings.Contains(string(report), "**Moved tenant** beta") {
		t.Fatalf("the report does not say beta moved: %v\n%s", err, report)
	}
	approve := func(path string) result {
		return runAt(t, nil, "--evidence", f.evidence, "approve", filepath.Join(f.dir, path), "--by", "bob", "--cp", cp, "--catalog", catalog)
	}
	if res := approve("allowed.json"); res.code != 0 || !strings.Contains(res.stdout, "moved tenant beta: its writes go to") {
		t.Fatalf("approve the plan that says beta moved: %d %s%s", res.code, res.stdout, res.stderr)
	}

	// The honest plan's beta database edited to name the copy, re-sealed:
	// the move unsaid.
	conn, err := tenantdb.Connect(t.Context(), restored, tenantdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var copyDB tenantdb.Database
	err = tenantdb.ReadOnly(t.Context(), conn, func(tx pgx.Tx) error { copyDB, err = tenantdb.Identify(t.Context(), tx); return err })
	conn.Close(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	reseal(t, filepath.Join(f.dir, "honest.json"), filepath.Join(f.dir, "forged.json"), func(p *plan.Plan) {
		for i := range p.Databases {
			if p.Databases[i].Tenant == "beta" {
				p.Databases[i].Database = copyDB
			}
		}
	})
	if res := approve("forged.json"); res.code != 1 || !strings.Contains(res.stderr, "its evidence was listed from") {
		t.Fatalf("approve a plan naming beta's copy, the move unsaid: %d %s", res.code, res.stderr)
	}
	// Found by the next review: a second beta entry naming the copy, put
	// before the honest one, was what apply read while the check read the
	// other. A plan names each tenant once.
	b, err := os.ReadFile(filepath.Join(f.dir, "honest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var twice plan.Plan
	if err := json.Unmarshal(b, &twice); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(twice.Databases, func(d plan.TenantDatabase) bool { return d.Tenant == "beta" })
	twice.Databases = slices.Insert(twice.Databases, i, plan.TenantDatabase{Tenant: "beta", Database: copyDB})
	twice.Seal()
	var buf bytes.Buffer
	if err := twice.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.dir, "twice.json"), buf.String())
	if res := approve("twice.json"); res.code != 1 || !strings.Contains(res.stderr, "more than once") {
		t.Fatalf("approve a plan naming beta twice: %d %s", res.code, res.stderr)
	}
	res = runAt(t, f.env, "--evidence", f.evidence, "apply", "--inventory", f.inventory, "--plan", filepath.Join(f.dir, "twice.json"), "--execute", "--operator", "ops")
	if res.code != 1 || !strings.Contains(res.stderr, "more than once") {
		t.Fatalf("apply --execute of a plan naming beta twice: %d %s%s", res.code, res.stdout, res.stderr)
	}
	approveRaw(t, filepath.Join(f.dir, "forged.json"))
	res = runAt(t, f.env, "--evidence", f.evidence, "apply", "--inventory", f.inventory, "--plan", filepath.Join(f.dir, "forged.json"), "--execute", "--operator", "ops")
	if res.code != 1 || !strings.Contains(res.stderr, "its evidence was listed from") {
		t.Fatalf("apply --execute of the forged plan: %d %s%s", res.code, res.stdout, res.stderr)
	}
}

// Found by review: a physical copy of a tenant's cluster (a cold backup, a
// volume snapshot, a restore to a new instance) has the original's system
// identifier and every OID, so with the DSN pointed at it apply wrote the
// copy, reported the writes applied, and never wrote the real rows after.
// The plan records where each DSN led, and apply refuses a DSN that leads
// elsewhere unless told (--allow-moved); pointed back, it writes the real
// rows.
func TestApplyRefusesAPhysicalCopyOfTheTenantDatabase(t *testing.T) {
	f := newPlanFixture(t, "acme")
	f.planAndApprove(t)
	cp, err := f.clusters["acme"].PhysicalCopy()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cp.Close)
	real := f.dsns["acme"]
	copyDSN := strings.Replace(real, f.clusters["acme"].Dir(), cp.Dir(), 1)
	if copyDSN == real {
		t.Fatalf("could not point %s at the copy", real)
	}
	f.env["ACME_DSN"] = copyDSN
	for _, args := range [][]string{nil, {"--execute"}} {
		res := f.apply(t, args...)
		if res.code != 3 || !strings.Contains(res.stderr+res.stdout, `tenant "acme"'s DSN now leads to`) {
			t.Fatalf("apply %v through the copy: %d\n%s%s", args, res.code, res.stdout, res.stderr)
		}
	}
	f.dsns["acme"] = copyDSN
	for _, n := range agreed["acme"] {
		if s := f.row(t, "acme", n); s.template != "" {
			t.Errorf("the copy's acme/%s written: %+v", n, s)
		}
	}
	f.dsns["acme"], f.env["ACME_DSN"] = real, real
	if res := f.apply(t, "--execute"); res.code != 0 || !strings.Contains(res.stdout, "applied 2") {
		t.Fatalf("apply through the real DSN: %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, n := range agreed["acme"] {
		if s := f.row(t, "acme", n); s.template == "" {
			t.Errorf("the real acme/%s not written", n)
		}
	}
}
