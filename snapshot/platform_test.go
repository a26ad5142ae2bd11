package snapshot

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/inventory"
	"backfill/internal/pgtest"
)

const testOrg = "org-5a7e0c11"

// tenantWith makes a tenant database holding n live workspaces (template
// empty) and returns its DSN and their ids.
func tenantWith(t *testing.T, tenant, n int) (string, []string) {
	t.Helper()
	dsn := pgtest.NewTenantDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var ids []string
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%08d-0000-4000-8000-%012d", tenant, i)
		if _, err := conn.Exec(ctx, `INSERT INTO workspaces (id, name, runtime, template) VALUES ($1, $2, 'claude-code', '')`, id, fmt.Sprintf("ws-%d", i)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return dsn, ids
}

func runSnapshot(t *testing.T, inv string, o Options) (*Summary, *evidence.Store) {
	t.Helper()
	o = withInventory(t, inv, o)
	sum, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return sum, o.Store
}

// withInventory is o with the inventory inv parsed and a new store.
func withInventory(t *testing.T, inv string, o Options) Options {
	t.Helper()
	parsed, err := inventory.Parse("inventory.yaml", []byte(inv), nil)
	if err != nil {
		t.Fatal(err)
	}
	store, err := evidence.Open(context.Background(), filepath.Join(t.TempDir(), "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	o.Inventory, o.Store = parsed, store
	return o
}

func captures(t *testing.T, s *evidence.Store) []*evidence.Capture {
	t.Helper()
	var out []*evidence.Capture
	if err := s.Captures(context.Background(), func(c *evidence.Capture) error { out = append(out, c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// A tenant whose server allows 10 requests a second and answers 429 beyond
// it completes: every workspace captured, each in one attempt (no retry is
// spent on a 429; --retries 0 would fail them otherwise), while a second
// tenant's captures finish long before, on the same two workers.
func TestThrottledTenantCompletesWithoutSpendingRetries(t *testing.T) {
	const n = 12
	slowDSN, ids := tenantWith(t, 1, n)
	p, srv := limitedPlatform(t, ids, 10)

	fastDSN, fastIDs := tenantWith(t, 2, 40)
	root := configTree(t, fastIDs)
	// rate 30 asks more than the server's 10: 429s are certain.
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: slow
    dsn: %q
    collector: {files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}, rate: 30}}
  - name: fast
    dsn: %q
    collector: {file: "%s/{workspace_id}/config.yaml"}
`, slowDSN, srv.URL, testOrg, fastDSN, root)
	var maxThrottled int
	sum, store := runSnapshot(t, inv, Options{Concurrency: 2, Retries: 0, Timeout: 10 * time.Second,
		ProgressEvery: 20 * time.Millisecond, OnProgress: func(p Progress) { maxThrottled = max(maxThrottled, p.Throttled) }})
	if !sum.Complete() || sum.Captured != n+40 || len(sum.Failures) != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	_, throttled, _ := p.Stats()
	if throttled == 0 {
		t.Fatal("the server never answered 429: the test does not test throttling")
	}
	var slowEnd, fastEnd time.Time
	rowsThrottled := 0
	for _, c := range captures(t, store) {
		if c.Attempt != 1 || c.Outcome != evidence.Captured {
			t.Errorf("capture %d (%s): attempt %d, outcome %s: %s", c.ID, c.Tenant, c.Attempt, c.Outcome, c.Reason)
		}
		switch c.Tenant {
		case "slow":
			if c.Source != "container" {
				t.Errorf("capture %d: source %q", c.ID, c.Source)
			}
			if c.Provenance["throttled"] != "" {
				rowsThrottled++
			}
			if c.EndedAt.After(slowEnd) {
				slowEnd = c.EndedAt
			}
		case "fast":
			if c.EndedAt.After(fastEnd) {
				fastEnd = c.EndedAt
			}
		}
	}
	if rowsThrottled == 0 {
		t.Errorf("%d 429s, but no capture records having waited for one", throttled)
	}
	// 36 requests at 10 a second take over 3 s; 40 file reads take
	// milliseconds unless workers sat waiting on the throttled tenant.
	if !fastEnd.Before(slowEnd.Add(-1500 * time.Millisecond)) {
		t.Errorf("the fast tenant finished at %s, the throttled one at %s: it waited on the throttled tenant", fastEnd, slowEnd)
	}
	if maxThrottled == 0 {
		t.Errorf("progress never showed a throttled tenant")
	}
	t.Logf("%d requests answered 429; %d captures waited; slow tenant took until %s after the fast one",
		throttled, rowsThrottled, slowEnd.Sub(fastEnd).Round(time.Millisecond))
}

// 404s before any answer shows the collector reaches the tenant's
// workspaces stop the tenant once they reach the threshold, and nothing of
// it is recorded gone; after such an answer, a 404 is gone.
func TestFirst404sStopTheTenant(t *testing.T) {
	// A self-hosted server ignores the org header: pointed at another
	// tenant's server, every workspace is "workspace not found".
	elsewhere := &filesapi.MemoryPlatform{}
	srvElsewhere := httptest.NewServer(elsewhere.Handler())
	t.Cleanup(srvElsewhere.Close)
	wrongDSN, _ := tenantWith(t, 3, 9)

	right := &filesapi.MemoryPlatform{}
	srvRight := httptest.NewServer(right.Handler())
	t.Cleanup(srvRight.Close)
	rightDSN, ids := tenantWith(t, 4, 6)
	for _, id := range ids[:4] {
		right.Put(id, filesapi.MemoryWorkspace{Name: "x", Running: true, Container: filesapi.Ptr("name: x\n")})
	}
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: wrong
    dsn: %q
    collector: {files_api: {base_url: %q, rate: 1000}}
  - name: right
    dsn: %q
    collector: {files_api: {base_url: %q, rate: 1000}}
`, wrongDSN, srvElsewhere.URL, rightDSN, srvRight.URL)
	sum, store := runSnapshot(t, inv, Options{Concurrency: 4, MisconfiguredAfter: 3})
	if len(sum.TenantsFailed) != 1 || sum.TenantsFailed[0].Tenant != "wrong" || !sum.TenantsFailed[0].Stopped ||
		!strings.Contains(sum.TenantsFailed[0].Reason, "collector misconfigured: check X-Molecule-Org-Id and the URL: the tenant's first 3 answers were all 404") {
		t.Fatalf("tenants failed: %+v", sum.TenantsFailed)
	}
	if sum.Captured != 4 || sum.Gone != 2 { // answers in flight at the threshold are waited for: all may be attempted
		t.Fatalf("summary: %+v", sum)
	}
	wrongRows := 0
	for _, c := range captures(t, store) {
		switch {
		case c.Tenant == "wrong" && c.Outcome == evidence.Gone:
			t.Errorf("capture %d of the misconfigured tenant recorded gone: %s", c.ID, c.Reason)
		case c.Tenant == "wrong":
			wrongRows++
			if c.Outcome != evidence.Failed || !strings.Contains(c.Reason, `"workspace not found"; collector misconfigured`) {
				t.Errorf("capture %d: %s %q", c.ID, c.Outcome, c.Reason)
			}
		case c.Tenant == "right" && c.Outcome == evidence.Gone && !strings.Contains(c.Reason, "workspace not found"):
			t.Errorf("capture %d: gone for %q", c.ID, c.Reason)
		}
	}
	if wrongRows < 3 || wrongRows+sum.NotAttempted != 9 {
		t.Fatalf("%d rows and %d not attempted for 9 workspaces", wrongRows, sum.NotAttempted)
	}
	for _, f := range sum.Failures {
		if f.Tenant == "wrong" && f.Outcome == "not attempted" && f.Reason != whyStopped {
			t.Errorf("not attempted without the reason: %+v", f)
		}
	}
}

// A files API whose 404s reach the threshold is left out for the tenant,
// not the tenant stopped, when its chain has another collector: a volume
// holding the same configs is still read, for every workspace. No 404 of
// it is taken as gone, and neither is the volume's gone for a workspace it
// lacks: the files API never showed it reaches the tenant.
func TestFirst404sLeaveTheCollectorOutNotTheChain(t *testing.T) {
	elsewhere := &filesapi.MemoryPlatform{}
	srv := httptest.NewServer(elsewhere.Handler())
	t.Cleanup(srv.Close)
	dsn, ids := tenantWith(t, 6, 9)
	root := configTree(t, ids[:8]) // the volume lacks the last workspace's config
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: wrong
    dsn: %q
    collectors:
      - files_api: {base_url: %q, rate: 1000}
      - file: "%s/{workspace_id}/config.yaml"
`, dsn, srv.URL, root)
	sum, store := runSnapshot(t, inv, Options{Concurrency: 4, MisconfiguredAfter: 3})
	if len(sum.TenantsFailed) != 0 || sum.NotAttempted != 0 || sum.Captured != 8 || sum.Gone != 0 || sum.Failed != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	if len(sum.CollectorsLeftOut) != 1 || sum.CollectorsLeftOut[0].Method != "files_api" || sum.CollectorsLeftOut[0].Position != 1 ||
		!strings.Contains(sum.CollectorsLeftOut[0].Reason, "collector misconfigured: check X-Molecule-Org-Id and the URL: the tenant's first 3 answers were all 404") {
		t.Fatalf("collectors left out: %+v", sum.CollectorsLeftOut)
	}
	byMethod := map[string]int{}
	for _, c := range captures(t, store) {
		byMethod[c.Method]++
		if c.Outcome == evidence.Gone {
			t.Errorf("capture %d (%s) recorded gone: %s", c.ID, c.Method, c.Reason)
		}
		if c.Method == "files_api" && (c.Outcome != evidence.Failed ||
			!strings.Contains(c.Reason, "collector misconfigured") && !strings.Contains(c.Reason, "not taken as gone")) {
			t.Errorf("capture %d: files_api %s %q", c.ID, c.Outcome, c.Reason)
		}
		if c.WorkspaceID == ids[8] && c.Method == "file" && (c.Outcome != evidence.Failed || !strings.Contains(c.Reason, "not taken as gone")) {
			t.Errorf("the workspace the volume lacks: %s %q", c.Outcome, c.Reason)
		}
	}
	if byMethod["file"] != 9 || byMethod["files_api"] < 3 {
		t.Fatalf("records by method: %v", byMethod)
	}
}

// A files API after a volume is asked only for the workspaces the volume
// lacks, which may be gone: its 404s reaching the threshold leave it out
// saying so, and the tenant is not stopped.
func TestFirst404sOfALaterCollectorSayItSawOnlyTheRest(t *testing.T) {
	elsewhere := &filesapi.MemoryPlatform{}
	srv := httptest.NewServer(elsewhere.Handler())
	t.Cleanup(srv.Close)
	dsn, ids := tenantWith(t, 9, 6)
	root := configTree(t, ids[:2])
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: later
    dsn: %q
    collectors:
      - file: "%s/{workspace_id}/config.yaml"
      - files_api: {base_url: %q, rate: 1000}
`, dsn, root, srv.URL)
	sum, _ := runSnapshot(t, inv, Options{Concurrency: 1, MisconfiguredAfter: 3})
	if len(sum.TenantsFailed) != 0 || sum.Captured != 2 || sum.Gone != 0 || sum.Failed != 4 {
		t.Fatalf("summary: %+v", sum)
	}
	if len(sum.CollectorsLeftOut) != 1 || sum.CollectorsLeftOut[0].Position != 2 ||
		!strings.Contains(sum.CollectorsLeftOut[0].Reason, "it is asked only for what the chain's first collector did not capture: they may be workspaces that are gone") {
		t.Fatalf("collectors left out: %+v", sum.CollectorsLeftOut)
	}
}

// An answer of one collector of the chain shows that collector reaches the
// tenant, not the others: a files API pointed at another tenant's server
// answers "workspace not found" for everything while the chain's plain
// config server captures what it holds. The workspace that server lacks is
// not gone, whichever comes first: the files API never showed it reaches
// the tenant.
func TestOneCollectorsAnswerVerifiesItAloneNotTheChain(t *testing.T) {
	for _, order := range []string{"files_api,http", "http,files_api"} {
		t.Run(order, func(t *testing.T) {
			elsewhere := &filesapi.MemoryPlatform{}
			srvElsewhere := httptest.NewServer(elsewhere.Handler())
			t.Cleanup(srvElsewhere.Close)
			dsn, ids := tenantWith(t, 7, 4)
			plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/configs/"+ids[3]+"/config.yaml" {
					http.NotFound(w, r)
					return
				}
				w.Write([]byte("name: x\n"))
			}))
			t.Cleanup(plain.Close)
			cols := []string{fmt.Sprintf("files_api: {base_url: %q, rate: 1000}", srvElsewhere.URL),
				fmt.Sprintf("http: {url: \"%s/configs/{workspace_id}/config.yaml\"}", plain.URL)}
			if order == "http,files_api" {
				cols[0], cols[1] = cols[1], cols[0]
			}
			inv := fmt.Sprintf("version: 1\ntenants:\n  - name: mixed\n    dsn: %q\n    collectors:\n      - %s\n      - %s\n", dsn, cols[0], cols[1])
			sum, store := runSnapshot(t, inv, Options{Concurrency: 1, MisconfiguredAfter: 3})
			if sum.Captured != 3 || sum.Gone != 0 || sum.Failed != 1 || sum.CompleteBut() {
				t.Fatalf("summary: %+v", sum)
			}
			for _, c := range captures(t, store) {
				if c.Outcome == evidence.Gone {
					t.Errorf("capture %d (%s of %s) recorded gone: %s", c.ID, c.Method, c.WorkspaceID, c.Reason)
				}
			}
		})
	}
}

// A tenant with fewer workspaces than the threshold, all 404, is stopped
// too: its every answer was a 404.
func TestAll404sOfASmallTenantStopIt(t *testing.T) {
	p := &filesapi.MemoryPlatform{}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	dsn, _ := tenantWith(t, 5, 2)
	inv := fmt.Sprintf("version: 1\ntenants:\n  - name: small\n    dsn: %q\n    collector: {files_api: {base_url: %q, rate: 1000}}\n", dsn, srv.URL)
	sum, store := runSnapshot(t, inv, Options{Concurrency: 4})
	if len(sum.TenantsFailed) != 1 || !strings.Contains(sum.TenantsFailed[0].Reason, "first 2 answers were all 404") || sum.Gone != 0 || sum.Failed != 2 {
		t.Fatalf("summary: %+v", sum)
	}
	for _, c := range captures(t, store) {
		if c.Outcome != evidence.Failed {
			t.Errorf("capture %d: %s", c.ID, c.Outcome)
		}
	}
}

// A files API that answers nothing but 429 stops its tenant once the
// tenant has been paused MaxThrottle in all, whatever its number of
// workspaces (each waiting its own MaxThrottle would hold the run for that
// long per workspace), while another tenant is captured.
func TestTenantThrottledPastTheLimitIsStopped(t *testing.T) {
	hostileDSN, ids := tenantWith(t, 1, 6)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("X-RateLimit-Limit", "600")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"rate limit exceeded"}`))
	}))
	t.Cleanup(srv.Close)
	otherDSN, otherIDs := tenantWith(t, 2, 3)
	root := configTree(t, otherIDs)
	inv := fmt.Sprintf(`version: 1
tenants:
  - name: hostile
    dsn: %q
    collector: {files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}}}
  - name: other
    dsn: %q
    collector: {file: "%s/{workspace_id}/config.yaml"}
`, hostileDSN, srv.URL, testOrg, otherDSN, root)
	sum, store := runSnapshot(t, inv, Options{Concurrency: 8, Timeout: time.Second, MaxThrottle: 2500 * time.Millisecond})
	if sum.Complete() || len(sum.TenantsFailed) != 1 || !sum.TenantsFailed[0].Stopped ||
		!strings.Contains(sum.TenantsFailed[0].Reason, "rate limited (429) for ") || !strings.Contains(sum.TenantsFailed[0].Reason, "in all, more than 2.5s") {
		t.Fatalf("summary: %+v", sum)
	}
	recorded := map[string]int{}
	for _, c := range captures(t, store) {
		recorded[c.Tenant+" "+string(c.Outcome)]++
	}
	// A few captures were in flight; the rest of the tenant is not attempted.
	if recorded["other captured"] != 3 || recorded["hostile failed"] == 0 || recorded["hostile failed"]+sum.NotAttempted != len(ids) {
		t.Fatalf("recorded %v, not attempted %d", recorded, sum.NotAttempted)
	}
}

// configTree is a directory holding ID/config.yaml for each of ids, for a
// file collector.
func configTree(t *testing.T, ids []string) string {
	t.Helper()
	root := t.TempDir()
	for _, id := range ids {
		if err := os.MkdirAll(filepath.Join(root, id), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, id, "config.yaml"), []byte("name: x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// A tenant that keeps answering between 429s (an org whose own users take
// part of its window) is making progress: only pauses with no other answer
// between them count against MaxThrottle, so it is never stopped.
func TestThrottledTenantThatProgressesIsNotStopped(t *testing.T) {
	const n = 16
	dsn, ids := tenantWith(t, 1, n)
	p, srv := limitedPlatform(t, ids, 6)
	inv := fmt.Sprintf("version: 1\ntenants:\n  - name: busy\n    dsn: %q\n    collector: {files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}, rate: 30}}\n",
		dsn, srv.URL, testOrg)
	sum, _ := runSnapshot(t, inv, Options{Concurrency: 2, Timeout: 10 * time.Second, MaxThrottle: 3 * time.Second})
	if _, throttled, _ := p.Stats(); throttled == 0 {
		t.Fatal("the server never answered 429: the test does not test throttling")
	}
	if !sum.Complete() || sum.Captured != n {
		t.Fatalf("summary: %+v", sum)
	}
}

// limitedPlatform serves ids' running containers, answering 429 past limit
// requests a second.
func limitedPlatform(t *testing.T, ids []string, limit int) (*filesapi.MemoryPlatform, *httptest.Server) {
	t.Helper()
	p := &filesapi.MemoryPlatform{Org: testOrg, Limit: limit, Window: time.Second}
	for _, id := range ids {
		p.Put(id, filesapi.MemoryWorkspace{Name: "x", Running: true, Container: filesapi.Ptr("name: SEO Agent\n")})
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return p, srv
}
