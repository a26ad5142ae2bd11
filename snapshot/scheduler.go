package snapshot

import (
	"context"
	"sync"

	"backfill/internal/workspace"
)

// item is one workspace waiting to be captured.
type item struct {
	tenant *tenantState
	row    workspace.Row
}

type tenantState struct {
	index    int
	urgent   []workspace.Row // template = '': these lose their identity on restart
	rest     []workspace.Row
	inflight int
}

// scheduler hands out captures across tenants. Workspaces with an empty
// template go first, fleet-wide. Among tenants with work of the same urgency
// it picks the one with the fewest captures in flight, and while other
// tenants have work no tenant gets more than its share of the workers, so a
// tenant whose collector hangs until the timeout never stalls the others.
type scheduler struct {
	mu      sync.Mutex
	cond    *sync.Cond
	workers int
	tenants []*tenantState
	pending int  // queued, not yet handed out
	open    bool // more work may still be added (tenants still listing)
	stopped bool
}

func newScheduler(n, workers int) *scheduler {
	s := &scheduler{open: true, workers: workers}
	s.cond = sync.NewCond(&s.mu)
	for i := 0; i < n; i++ {
		s.tenants = append(s.tenants, &tenantState{index: i})
	}
	return s
}

// add queues a tenant's workspaces.
func (s *scheduler) add(tenant int, rows []workspace.Row) {
	s.mu.Lock()
	t := s.tenants[tenant]
	for _, r := range rows {
		if r.Template == "" {
			t.urgent = append(t.urgent, r)
		} else {
			t.rest = append(t.rest, r)
		}
	}
	s.pending += len(rows)
	s.mu.Unlock()
	s.cond.Broadcast()
}

// close says no more work will be added.
func (s *scheduler) close() {
	s.mu.Lock()
	s.open = false
	s.mu.Unlock()
	s.cond.Broadcast()
}

// stop makes next return nothing more; queued work stays unattempted.
func (s *scheduler) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.cond.Broadcast()
}

// watch stops the scheduler when ctx is done.
func (s *scheduler) watch(ctx context.Context) (release func()) {
	stop := context.AfterFunc(ctx, s.stop)
	return func() { stop() }
}

// next blocks until there is work, returning false when there will be none.
func (s *scheduler) next() (item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stopped {
			return item{}, false
		}
		if s.pending > 0 {
			return s.pick(), true
		}
		if !s.open {
			return item{}, false
		}
		s.cond.Wait()
	}
}

func (s *scheduler) pick() item {
	active := 0
	for _, t := range s.tenants {
		if t.inflight > 0 || len(t.urgent)+len(t.rest) > 0 {
			active++
		}
	}
	share := max(2, (s.workers+active-1)/max(active, 1))
	best, bestUrgent := s.choose(func(t *tenantState) bool { return t.inflight < share })
	if best == nil {
		// Every tenant with work is at its share: nobody else is waiting.
		best, bestUrgent = s.choose(func(*tenantState) bool { return true })
	}
	var r workspace.Row
	if bestUrgent {
		r, best.urgent = best.urgent[0], best.urgent[1:]
	} else {
		r, best.rest = best.rest[0], best.rest[1:]
	}
	best.inflight++
	s.pending--
	return item{tenant: best, row: r}
}

// choose returns the tenant to serve among those allowed: urgent work
// first, then the fewest captures in flight.
func (s *scheduler) choose(allowed func(*tenantState) bool) (*tenantState, bool) {
	var best *tenantState
	bestUrgent := false
	for _, t := range s.tenants {
		u := len(t.urgent) > 0
		if (!u && len(t.rest) == 0) || !allowed(t) {
			continue
		}
		if best == nil || (u && !bestUrgent) || (u == bestUrgent && t.inflight < best.inflight) {
			best, bestUrgent = t, u
		}
	}
	return best, bestUrgent
}

// done marks a handed-out item finished.
func (s *scheduler) done(it item) {
	s.mu.Lock()
	it.tenant.inflight--
	s.mu.Unlock()
}

// remaining is the number of queued items never handed out.
func (s *scheduler) remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}
