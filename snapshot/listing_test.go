package snapshot

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// stallingProxy forwards sessions to dsn's server, except the first stall
// of them: accepted and never answered, as a server busy opening a hundred
// other sessions leaves the last ones. It returns a DSN through it and its
// session count.
func stallingProxy(t *testing.T, dsn string, stall int32) (string, *atomic.Int32) {
	t.Helper()
	return pgtest.FaultyProxy(t, dsn, stall, func(client net.Conn) { t.Cleanup(func() { client.Close() }) })
}

// A tenant whose server keeps the listing's session waiting past the
// connect timeout is listed again, as a blip is, and its workspaces
// captured: a listing lost is the tenant's whole evidence. The tries are
// still bounded by --retries: a server that never answers leaves its
// tenant unreachable after 1+retries sessions, recorded so.
func TestListingRetriesASessionThatNeverStarted(t *testing.T) {
	t.Parallel()
	dsn, ids := tenantWith(t, 7, 3)
	p := &filesapi.MemoryPlatform{Org: testOrg}
	for _, id := range ids {
		p.Put(id, filesapi.MemoryWorkspace{Name: "x", Running: true, Container: filesapi.Ptr("name: x\n")})
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	inv := func(dsn string) string {
		return fmt.Sprintf("version: 1\ntenants:\n  - name: slow\n    dsn: %q\n    collector: {files_api: {base_url: %q, headers: {X-Molecule-Org-Id: %q}, rate: 1000}}\n",
			dsn, srv.URL, testOrg)
	}
	o := Options{Timeout: 2 * time.Second, Retries: 1, Backoff: time.Millisecond}

	once, sessions := stallingProxy(t, dsn, 1)
	sum, store := runSnapshot(t, inv(once), o)
	if len(sum.TenantsFailed) != 0 || sum.Captured != len(ids) {
		t.Fatalf("tenant kept waiting once: %+v", sum)
	}
	if n := sessions.Load(); n != 2 {
		t.Fatalf("%d sessions, want 2: the one kept waiting and the retry", n)
	}
	if l, err := store.LatestListing(context.Background(), "slow"); err != nil || l == nil || len(l.Rows) != len(ids) {
		t.Fatalf("listing recorded: %+v, %v", l, err)
	}

	never, sessions := stallingProxy(t, dsn, 1<<30)
	sum, store = runSnapshot(t, inv(never), o)
	if len(sum.TenantsFailed) != 1 || !strings.Contains(sum.TenantsFailed[0].Reason, "timeout") {
		t.Fatalf("tenant never answered: %+v", sum.TenantsFailed)
	}
	if n := sessions.Load(); n != 2 {
		t.Fatalf("%d sessions to a server that never answers, want 2 (--retries 1)", n)
	}
	latest, err := store.LatestListings(context.Background(), false)
	if err != nil || latest["slow"] == nil || latest["slow"].Outcome != evidence.Unreachable {
		t.Fatalf("latest listing of the tenant that never answered: %+v, %v", latest["slow"], err)
	}
}

// A tenant still being listed when the run is interrupted gets a listing
// recorded all the same (unreachable, "not listed: run interrupted"): a
// store with no listing of a tenant cannot say it lacks one, and a copy
// published from it would look complete.
func TestATenantNotListedWhenInterruptedIsRecorded(t *testing.T) {
	t.Parallel()
	dsn, _ := tenantWith(t, 8, 2)
	never, sessions := stallingProxy(t, dsn, 1<<30)
	inv := fmt.Sprintf("version: 1\ntenants:\n  - name: hung\n    dsn: %q\n    collector: {file: \"/nonexistent/{workspace_id}.yaml\"}\n", never)
	o := withInventory(t, inv, Options{Timeout: time.Minute, Retries: 0})
	store := o.Store
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Summary)
	go func() {
		sum, err := Run(ctx, o)
		if err != nil {
			t.Error(err)
		}
		done <- sum
	}()
	for sessions.Load() == 0 { // the listing's session has reached the server
		time.Sleep(time.Millisecond)
	}
	cancel()
	sum := <-done
	if sum == nil || !sum.Interrupted || len(sum.TenantsFailed) != 1 {
		t.Fatalf("summary: %+v", sum)
	}
	latest, err := store.LatestListings(context.Background(), false)
	if err != nil || latest["hung"] == nil || latest["hung"].Outcome != evidence.Unreachable || latest["hung"].Reason != "not listed: run interrupted" {
		t.Fatalf("listing of the tenant interrupted: %+v, %v", latest["hung"], err)
	}
}
