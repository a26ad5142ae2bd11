package snapshot

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
)

// fleetRow is a workspace row of runFleet's tenant databases.
type fleetRow struct{ id, name, status string }

// insertRows writes rows into a tenant database.
func insertRows(t *testing.T, dsn string, rows ...fleetRow) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, r := range rows {
		if _, err := conn.Exec(ctx, `INSERT INTO workspaces (id, name, runtime, template, status) VALUES ($1, $2, 'claude-code', '', $3)`,
			r.id, r.name, r.status); err != nil {
			t.Fatal(err)
		}
	}
}

// closedPort returns a loopback address nothing listens on: a tenant
// database there refuses connections at once.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A fleet of three tenants: a hosted one read through the files API
// (captured from running containers, not-live from the template folder
// named like a workspace, not-running where the API has no source), one
// read from files (captured, gone, failed as too large; a removed row not
// listed) and one whose database refuses connections. Run's summary
// counts each outcome and names each workspace left without evidence; the
// store holds each tenant's listing and every capture, and still does once
// closed and opened again, where a second run finds the captured
// workspaces already done and attempts only the others.
func TestRunFleetOutcomesAndDurability(t *testing.T) {
	ctx := context.Background()
	id := func(tenant, i int) string { return fmt.Sprintf("%08d-0000-4000-8000-%012d", tenant, i) }
	live := "name: SEO Agent\nruntime: claude-code\n"

	// hosted: four live workspaces behind the platform's files API.
	hostedDSN := pgtest.NewTenantDB(t)
	insertRows(t, hostedDSN,
		fleetRow{id(1, 0), "ws-running-0", "online"},
		fleetRow{id(1, 1), "ws-running-1", "online"},
		fleetRow{id(1, 2), "SEO Agent", "hibernated"},
		fleetRow{id(1, 3), "zzz", "offline"})
	p := &filesapi.MemoryPlatform{Org: testOrg, Templates: map[string]*string{"seo-agent": filesapi.Ptr(string(fixture.Template("seo-agent")))}}
	p.Put(id(1, 0), filesapi.MemoryWorkspace{Name: "ws-running-0", Running: true, Container: &live})
	p.Put(id(1, 1), filesapi.MemoryWorkspace{Name: "ws-running-1", Running: true, Container: &live})
	p.Put(id(1, 2), filesapi.MemoryWorkspace{Name: "SEO Agent"}) // container down, no mirror: the template folder answers
	p.Put(id(1, 3), filesapi.MemoryWorkspace{Name: "zzz"})       // nothing anywhere
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)

	// files: one readable config, one missing, one too large; a removed row.
	filesDSN := pgtest.NewTenantDB(t)
	insertRows(t, filesDSN,
		fleetRow{id(2, 0), "f-ok", "online"},
		fleetRow{id(2, 1), "f-gone", "online"},
		fleetRow{id(2, 2), "f-big", "online"},
		fleetRow{id(2, 3), "f-removed", "removed"})
	root := t.TempDir()
	const maxBytes = 4 << 10
	for i, content := range map[int]string{0: live, 2: strings.Repeat("# padding\n", maxBytes/5), 3: live} {
		if err := os.MkdirAll(filepath.Join(root, id(2, i)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, id(2, i), "config.yaml"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	downDSN := "postgres://backfill@" + closedPort(t) + "/tenant?sslmode=disable&connect_timeout=5"
	inv, err := inventory.Parse("inventory.yaml", fmt.Appendf(nil, `version: 1
tenants:
  - name: hosted
    dsn: %q
    collector: {files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}}}
  - name: files
    dsn: %q
    collector: {file: "%s/{workspace_id}/config.yaml"}
  - name: down
    dsn: %q
    collector: {file: "%s/{workspace_id}/config.yaml"}
`, hostedDSN, srv.URL, testOrg, filesDSN, root, downDSN, root), nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "evidence.db")
	store, err := evidence.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Inventory: inv, Store: store, Concurrency: 4, Retries: -1, Timeout: 10 * time.Second, MaxBytes: maxBytes}
	sum, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}

	// The summary: counts, the failed tenant, and each workspace left
	// without evidence with its outcome.
	if sum.Tenants != 3 || sum.Live != 7 || sum.Captured != 3 || sum.NotLive != 1 || sum.NotRunning != 1 ||
		sum.Gone != 1 || sum.Failed != 1 || sum.AlreadyCaptured != 0 || sum.NotAttempted != 0 || sum.NotRecorded != 0 || sum.Interrupted {
		t.Errorf("summary counts: %+v", sum)
	}
	if len(sum.TenantsFailed) != 1 || sum.TenantsFailed[0].Tenant != "down" || sum.TenantsFailed[0].Stopped {
		t.Errorf("failed tenants: %+v, want down, unlisted", sum.TenantsFailed)
	}
	if sum.Complete() || sum.CompleteBut() || sum.Reason() != "tenants-failed" {
		t.Errorf("complete %v, complete but gone %v, reason %q", sum.Complete(), sum.CompleteBut(), sum.Reason())
	}
	wantFailures := map[string]string{
		id(1, 2): evidence.NotLive, id(1, 3): evidence.NotRunning, id(2, 1): evidence.Gone, id(2, 2): evidence.Failed,
	}
	gotFailures := map[string]string{}
	for _, f := range sum.Failures {
		gotFailures[f.WorkspaceID] = f.Outcome
		if f.Reason == "" || f.Attempt != 1 {
			t.Errorf("failure %+v: want a reason and attempt 1", f)
		}
	}
	if fmt.Sprint(gotFailures) != fmt.Sprint(wantFailures) {
		t.Errorf("failures by workspace %v, want %v", gotFailures, wantFailures)
	}

	// The store: each tenant's listing, and one capture per attempted
	// workspace with its outcome, source and bytes.
	checkListings := func(s *evidence.Store) {
		t.Helper()
		listings, err := s.LatestListings(ctx, false)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string][]string{
			"hosted": {id(1, 0), id(1, 1), id(1, 2), id(1, 3)},
			"files":  {id(2, 0), id(2, 1), id(2, 2)}, // the removed row is not live
		}
		for tenant, ids := range want {
			l := listings[tenant]
			if l == nil || l.Outcome != evidence.Listed {
				t.Errorf("listing of %s: %+v", tenant, l)
				continue
			}
			var got []string
			for _, r := range l.Rows {
				got = append(got, r.ID)
			}
			sort.Strings(got)
			if fmt.Sprint(got) != fmt.Sprint(ids) {
				t.Errorf("listing of %s holds %v, want %v", tenant, got, ids)
			}
		}
		if l := listings["down"]; l == nil || l.Outcome != evidence.Unreachable || l.Reason == "" || len(l.Rows) != 0 {
			t.Errorf("listing of down: %+v, want unreachable with a reason", l)
		}
	}
	type captureKey struct{ workspace, outcome, source string }
	wantCaptures := map[captureKey]bool{
		{id(1, 0), evidence.Captured, "container"}: true, {id(1, 1), evidence.Captured, "container"}: true,
		{id(1, 2), evidence.NotLive, "template-dir"}: true, {id(1, 3), evidence.NotRunning, "none"}: true,
		{id(2, 0), evidence.Captured, "file"}: true, {id(2, 1), evidence.Gone, "file"}: true, {id(2, 2), evidence.Failed, "file"}: true,
	}
	checkCaptures := func(s *evidence.Store) []*evidence.Capture {
		t.Helper()
		all := captures(t, s)
		got := map[captureKey]bool{}
		for _, c := range all {
			got[captureKey{c.WorkspaceID, c.Outcome, c.SourceClass()}] = true
			if c.Outcome != evidence.Captured {
				continue
			}
			want := live
			if c.SourceClass() == "container" {
				want = strings.TrimSpace(live) // the platform trims what cat prints
			}
			b, err := s.Content(ctx, c.SHA256)
			if err != nil || !bytes.Equal(b, []byte(want)) {
				t.Errorf("capture %d (%s): content %q, %v; want the live config", c.ID, c.WorkspaceID, b, err)
			}
		}
		if len(all) != len(wantCaptures) || fmt.Sprint(got) != fmt.Sprint(wantCaptures) {
			t.Errorf("captures (workspace, outcome, source) %v, want %v", got, wantCaptures)
		}
		return all
	}
	checkListings(store)
	before := checkCaptures(store)
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}

	// Durability: the store opened again holds the same records, its
	// chains verify, and a second run skips what is captured.
	store, err = evidence.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	checkListings(store)
	after := checkCaptures(store)
	for i := range before {
		if i >= len(after) || after[i].ID != before[i].ID || after[i].Hash != before[i].Hash {
			t.Fatalf("capture %d changed across the reopen", before[i].ID)
		}
	}
	if rep, err := store.Verify(ctx); err != nil || !rep.OK() {
		t.Fatalf("verify after reopen: %v %+v", err, rep)
	}
	opts.Store = store
	again, err := Run(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if again.Live != 7 || again.AlreadyCaptured != 3 || again.Captured != 0 || again.NotLive != 1 || again.NotRunning != 1 ||
		again.Gone != 1 || again.Failed != 1 {
		t.Errorf("second run: %+v, want the three captured skipped and the other four attempted again", again)
	}
	if n := len(captures(t, store)); n != len(before)+4 {
		t.Errorf("after the second run the store holds %d captures, want %d", n, len(before)+4)
	}
}
