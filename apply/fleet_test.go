package apply_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/apply"
	"backfill/apply/plan"
	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/fixture"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
	"backfill/internal/workspace"
)

// planned is the value every workspace of a fleet is planned to get: the
// template the captured config and the CP records agree on.
const planned = "seo-agent"

// fleet is an approved plan over throwaway tenant databases, each holding
// rows with an empty template that the plan agrees to write.
type fleet struct {
	inv   *inventory.Inventory
	store *evidence.Store
	cat   *catalog.Catalog
	cp    *cp.Records // what the plan was made with
	plan  *plan.Plan
	dsn   map[string]string   // per tenant
	ids   map[string][]string // per tenant, in plan order
}

// newFleet makes the fleet as an operator would: captures in an evidence
// store, CP records, the catalog, plan.Build over the tenant databases,
// then an approval by someone other than the author.
func newFleet(t *testing.T, tenants, per int) *fleet {
	t.Helper()
	ctx := context.Background()
	catDir := fixture.CatalogDir(t)
	cat, err := catalog.Load(catDir)
	if err != nil {
		t.Fatal(err)
	}
	seo := fixture.Live("custom-seo-agent.yaml")
	store, err := evidence.Open(ctx, filepath.Join(t.TempDir(), "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f := &fleet{inv: &inventory.Inventory{Path: "inventory.yaml"}, store: store, cat: cat, dsn: map[string]string{}, ids: map[string][]string{}}
	var cpCSV strings.Builder
	cpCSV.WriteString("tenant,workspace_id,template\n")
	at := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for n := 0; n < tenants; n++ {
		name := fmt.Sprintf("t%d", n)
		dsn := pgtest.NewTenantDB(t)
		f.inv.Tenants = append(f.inv.Tenants, inventory.Tenant{Name: name, DSN: dsn})
		f.dsn[name] = dsn
		fmt.Fprintf(&cpCSV, "%s,,%s\n", name, planned)
		var recs []evidence.Record
		for i := 0; i < per; i++ {
			id := fmt.Sprintf("%08d-0000-4000-8000-%012d", n, i)
			r := workspace.Row{ID: id, Name: fmt.Sprintf("ws-%d", i), Runtime: "claude-code", Status: "online", Kind: "workspace"}
			recs = append(recs, &evidence.Capture{Tenant: name, WorkspaceID: id, Row: r, Method: "exec", Target: "test", StartedAt: at,
				EndedAt: at, Attempt: 1, Outcome: evidence.Captured, Content: seo, Source: "exec", Provenance: map[string]string{}})
			f.ids[name] = append(f.ids[name], id)
		}
		// One statement per tenant: a connection and commit per row would
		// dominate a large fleet's setup.
		f.exec(t, name, `INSERT INTO workspaces (id, name, runtime, status, template)
  SELECT id, 'ws-' || (n - 1), 'claude-code', 'online', '' FROM unnest($1::uuid[]) WITH ORDINALITY AS u(id, n)`, f.ids[name])
		if err := store.Append(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	records, err := cp.Parse("cp.csv", []byte(cpCSV.String()))
	if err != nil {
		t.Fatal(err)
	}
	f.plan, _, err = plan.Build(ctx, plan.BuildOptions{Inventory: f.inv, Store: store, CP: records, CPSource: "cp.csv", Catalog: cat,
		CatalogDir: catDir, Author: "author"})
	if err != nil {
		t.Fatal(err)
	}
	if n := f.plan.Writes(); n != tenants*per {
		t.Fatalf("the plan agrees on %d writes, want %d", n, tenants*per)
	}
	f.cp = records
	if _, err := apply.Approve(ctx, apply.ApproveOptions{Plan: f.plan, Store: store, Catalog: cat, CP: records, By: "reviewer"}); err != nil {
		t.Fatal(err)
	}
	return f
}

// options are a run's options over the fleet, as the CLI sets them.
func (f *fleet) options(execute bool) apply.Options {
	return apply.Options{Plan: f.plan, Inventory: f.inv, Store: f.store, Catalog: f.cat, CP: f.cp, Execute: execute, Operator: "operator"}
}

func (f *fleet) apply(t *testing.T, o apply.Options) *apply.Report {
	t.Helper()
	rep, err := apply.Apply(context.Background(), o)
	if err != nil {
		t.Fatalf("apply (execute %v): %v", o.Execute, err)
	}
	return rep
}

func (f *fleet) rollback(t *testing.T, o apply.Options) *apply.Report {
	t.Helper()
	rep, err := apply.Rollback(context.Background(), o)
	if err != nil {
		t.Fatalf("rollback (execute %v): %v", o.Execute, err)
	}
	return rep
}

func (f *fleet) exec(t *testing.T, tenant, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.dsn[tenant])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// row is a workspace row as the tenant database holds it now.
type row struct {
	template string
	updated  time.Time
	exists   bool
}

// rows reads every planned row of the fleet, by workspace id.
func (f *fleet) rows(t *testing.T) map[string]row {
	t.Helper()
	ctx := context.Background()
	out := map[string]row{}
	for tenant, ids := range f.ids {
		conn, err := pgx.Connect(ctx, f.dsn[tenant])
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			var r row
			err := conn.QueryRow(ctx, `SELECT template, updated_at FROM workspaces WHERE id = $1`, id).Scan(&r.template, &r.updated)
			if err != nil && err != pgx.ErrNoRows {
				t.Fatal(err)
			}
			r.exists = err == nil
			out[id] = r
		}
		conn.Close(ctx)
	}
	return out
}

// journal returns the plan's journal entries' outcomes per workspace, in
// order, of operation op.
func (f *fleet) journal(t *testing.T, op string) map[string][]string {
	t.Helper()
	entries, err := f.store.Journal(context.Background(), f.plan.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, e := range entries {
		if e.Operation == op {
			out[e.WorkspaceID] = append(out[e.WorkspaceID], e.Outcome)
		}
	}
	return out
}

// outcomes returns each workspace's outcome in the report.
func outcomes(rep *apply.Report) map[string]string {
	out := map[string]string{}
	for _, tr := range rep.Tenants {
		for _, r := range tr.Results {
			out[r.WorkspaceID] = r.Outcome
		}
	}
	return out
}

// templates returns each row's template, "<gone>" for a row that no longer
// exists.
func templates(rows map[string]row) map[string]string {
	out := map[string]string{}
	for id, r := range rows {
		out[id] = r.template
		if !r.exists {
			out[id] = "<gone>"
		}
	}
	return out
}

// each maps every planned workspace of the fleet to v.
func (f *fleet) each(v string) map[string]string {
	out := map[string]string{}
	for _, ids := range f.ids {
		for _, id := range ids {
			out[id] = v
		}
	}
	return out
}

func sameMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

// unreachable is the fleet's inventory with tenant's DSN pointing at a port
// nothing listens on.
func unreachable(f *fleet, tenant string) *inventory.Inventory {
	inv := *f.inv
	inv.Tenants = append([]inventory.Tenant(nil), f.inv.Tenants...)
	for i := range inv.Tenants {
		if inv.Tenants[i].Name == tenant {
			inv.Tenants[i].DSN = "postgres://backfill@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=5"
		}
	}
	return &inv
}

// equalRows reports whether no row changed, updated_at included.
func equalRows(a, b map[string]row) bool {
	if len(a) != len(b) {
		return false
	}
	for id, r := range a {
		if s := b[id]; s.template != r.template || s.exists != r.exists || !s.updated.Equal(r.updated) {
			return false
		}
	}
	return true
}

func fmtSlice(s []string) string { return fmt.Sprint(s) }
