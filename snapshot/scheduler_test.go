package snapshot

import (
	"fmt"
	"testing"
	"time"

	"backfill/internal/workspace"
)

func rows(n int, template string) []workspace.Row {
	var out []workspace.Row
	for i := 0; i < n; i++ {
		out = append(out, workspace.Row{ID: fmt.Sprint(i), Template: template})
	}
	return out
}

func TestSchedulerUrgentFirstButFair(t *testing.T) {
	s := newScheduler(2, 4)
	s.add(0, rows(10, ""))         // a tenant whose captures will hang
	s.add(1, rows(10, "template")) // a healthy tenant with no urgent work
	got := map[int]int{}
	for i := 0; i < 4; i++ {
		it, ok := s.next()
		if !ok {
			t.Fatal("no work")
		}
		got[it.tenant.index]++
	}
	// Nothing finishes: the hanging tenant holds only its share.
	if got[0] != 2 || got[1] != 2 {
		t.Fatalf("in flight per tenant = %v, want 2 and 2", got)
	}
	// Once the healthy tenant has nothing left, the other may use every worker.
	s2 := newScheduler(2, 4)
	s2.add(0, rows(10, ""))
	for i := 0; i < 4; i++ {
		if it, _ := s2.next(); it.tenant.index != 0 {
			t.Fatal("picked a tenant without work")
		}
	}
}

func TestSchedulerUrgentFirstWithinShare(t *testing.T) {
	s := newScheduler(2, 8)
	s.add(0, rows(3, "x"))
	s.add(1, rows(3, ""))
	for i := 0; i < 3; i++ {
		it, _ := s.next()
		if it.row.Template != "" {
			t.Fatalf("pick %d was not urgent", i)
		}
	}
	s.close()
	n := 0
	for {
		if _, ok := s.next(); !ok {
			break
		}
		n++
	}
	if n != 3 {
		t.Fatalf("%d left, want 3", n)
	}
}

// A rate-limited tenant is passed over while its bucket is empty, even
// with urgent work, so the other tenants' captures keep every worker; a
// 429's pause holds it back until its end, and the scheduler says when
// something will next be ready.
func TestSchedulerRateLimitedTenantYields(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := newScheduler(2, 4)
	s.now = func() time.Time { return now }
	s.limit(0, 1, []int{3}) // 1 request a second, 3 per attempt: burst 3
	s.add(0, rows(5, ""))   // urgent, but rate limited
	s.add(1, rows(5, "x"))
	s.mu.Lock()
	defer s.mu.Unlock()
	first, _ := s.pick()
	if first.tenant.index != 0 || !first.reserved {
		t.Fatalf("first pick: tenant %d reserved %v, want the urgent rate-limited tenant with its tokens", first.tenant.index, first.reserved)
	}
	for i := 0; i < 5; i++ {
		it, _ := s.pick()
		if it == nil || it.tenant.index != 1 {
			t.Fatalf("pick %d: %+v, want the other tenant while the bucket refills", i, it)
		}
	}
	it, wake := s.pick()
	if it != nil || !wake.Equal(now.Add(3*time.Second)) {
		t.Fatalf("nothing ready: got %+v, wake %s; want nil, wake in 3s", it, wake)
	}
	now = now.Add(3 * time.Second)
	if it, _ := s.pick(); it == nil || it.tenant.index != 0 {
		t.Fatalf("after 3s: %+v", it)
	}
	// A 429 pauses the tenant past its refill.
	s.mu.Unlock()
	s.pause(s.tenants[0], now.Add(10*time.Second))
	n := s.throttled()
	s.mu.Lock()
	if n != 1 {
		t.Fatalf("throttled = %d", n)
	}
	now = now.Add(9 * time.Second)
	if it, wake := s.pick(); it != nil || !wake.Equal(now.Add(time.Second+3*time.Second)) {
		t.Fatalf("paused: %+v wake %s", it, wake)
	}
}

// A requeued item goes first in its tenant's line and keeps its progress;
// a dropped tenant takes none back.
func TestSchedulerRequeueAndDrop(t *testing.T) {
	s := newScheduler(1, 2)
	s.add(0, rows(3, ""))
	it, _ := s.next()
	it.pos, it.attempt = 1, 2
	if !s.requeue(it) {
		t.Fatal("requeue refused")
	}
	again, _ := s.next()
	if again != it || again.pos != 1 || again.attempt != 2 {
		t.Fatalf("next after requeue: %+v", again)
	}
	dropped := s.drop(0)
	if len(dropped) != 2 || s.remaining() != 0 {
		t.Fatalf("dropped %d, remaining %d", len(dropped), s.remaining())
	}
	if s.requeue(again) {
		t.Fatal("a dropped tenant took an item back")
	}
}

// Found by review: a collector left out for a tenant kept its requests'
// cost, so the scheduler reserved three tokens a workspace for attempts
// never made and held the chain's others to the files API's pace. Freed,
// its position costs nothing: the tenant's workspaces are handed out as
// fast as the workers take them, and the caller's costs are not touched.
func TestSchedulerLeftOutCollectorCostsNothing(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	s := newScheduler(1, 4)
	s.now = func() time.Time { return now }
	costs := []int{3, 0}
	s.limit(0, 1, costs) // files_api then file: burst 3, one request a second
	s.add(0, rows(5, ""))
	s.free(0, 0)
	if costs[0] != 3 {
		t.Fatalf("the caller's costs changed: %v", costs)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range 5 {
		if it, wake := s.pick(); it == nil {
			t.Fatalf("pick %d: nothing ready (wake %s): the left-out collector still paces the tenant", i, wake)
		}
	}
}
