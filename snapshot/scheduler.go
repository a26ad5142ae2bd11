package snapshot

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"backfill/internal/workspace"
)

// item is one workspace waiting to be captured, and how far its capture
// got: a 429 hands it back to the scheduler mid-chain, and it resumes there.
type item struct {
	tenant *tenantState
	row    workspace.Row

	pos       int           // the collector of the chain to run next
	attempt   int           // attempts made with it so far (429s are not attempts)
	started   time.Time     // its first attempt; zero before
	rows      []pendingRow  // records of earlier collectors, not yet written
	throttles int           // 429s met
	waited    time.Duration // waited for them, in all
	reserved  bool          // the scheduler took the tokens of the next attempt
	// leftOut says which collectors of the chain it did not try, and why:
	// they were left out for the tenant (breakCollector).
	leftOut []string
}

type tenantState struct {
	index    int
	urgent   []*item // template = '': these lose their identity on restart
	rest     []*item
	inflight int
	dropped  bool // stopped: nothing more is handed out

	// The tenant's rate limit, a token bucket shared by every worker:
	// refilled at rate tokens a second up to burst; each attempt of a
	// rate-limited collector takes one token per request it makes (its
	// cost). No rate means no bucket; a 429 still pauses the tenant.
	rate, burst, tokens float64
	last                time.Time
	costs               []int     // tokens per attempt, by chain position
	paused              time.Time // nothing of this tenant is handed out before this (a 429's wait)
	// pausedFor is how long 429s have paused it since its last other
	// answer; atomic, as every capture's answer clears it.
	pausedFor atomic.Int64
}

// head is the item the tenant would hand out next.
func (t *tenantState) head() *item {
	if len(t.urgent) > 0 {
		return t.urgent[0]
	}
	if len(t.rest) > 0 {
		return t.rest[0]
	}
	return nil
}

func (t *tenantState) cost(it *item) int {
	if it.pos < len(t.costs) {
		return t.costs[it.pos]
	}
	return 0
}

func (t *tenantState) refill(now time.Time) {
	if t.rate <= 0 || !now.After(t.last) {
		return
	}
	t.tokens = min(t.burst, t.tokens+now.Sub(t.last).Seconds()*t.rate)
	t.last = now
}

// readyAt is when the tenant can next hand out it: now, or after its
// pause, or once its bucket holds the attempt's tokens.
func (t *tenantState) readyAt(it *item, now time.Time) time.Time {
	at := now
	if t.paused.After(at) {
		at = t.paused
	}
	c := float64(t.cost(it))
	if c == 0 || t.rate <= 0 {
		return at
	}
	t.refill(now)
	if t.tokens >= c {
		return at
	}
	from := t.last
	if at.After(from) {
		from = at
	}
	return from.Add(time.Duration((c - t.tokens) / t.rate * float64(time.Second)))
}

// scheduler hands out captures across tenants. Workspaces with an empty
// template go first, fleet-wide. Among tenants with work of the same urgency
// it picks the one with the fewest captures in flight, and while other
// tenants have work no tenant gets more than its share of the workers, so a
// tenant whose collector hangs until the timeout never stalls the others.
// A tenant that is rate limited (its bucket is empty, or a 429 paused it)
// is passed over until it can make its next request, so its work never
// holds a worker waiting: the others' captures go on meanwhile.
type scheduler struct {
	mu      sync.Mutex
	cond    *sync.Cond
	workers int
	tenants []*tenantState
	pending int  // queued, not yet handed out
	open    bool // more work may still be added (tenants still listing)
	stopped bool

	timer   *time.Timer // wakes waiting workers when a rate-limited tenant becomes ready
	timerAt time.Time
	now     func() time.Time
}

func newScheduler(n, workers int) *scheduler {
	s := &scheduler{open: true, workers: workers, now: time.Now}
	s.cond = sync.NewCond(&s.mu)
	for i := 0; i < n; i++ {
		s.tenants = append(s.tenants, &tenantState{index: i})
	}
	return s
}

// limit sets a tenant's rate (requests a second; 0: none) and each chain
// position's requests per attempt. The bucket starts full.
func (s *scheduler) limit(tenant int, rate float64, costs []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	t.rate, t.costs = rate, costs
	t.burst = rate
	for _, c := range costs {
		t.burst = max(t.burst, float64(c))
	}
	t.tokens, t.last = t.burst, s.now()
}

// free makes a chain position cost nothing from now on: its collector was
// left out for the tenant, so its attempts are skipped, and reserving its
// requests would only hold the chain's others to a pace none of them use.
func (s *scheduler) free(tenant, pos int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if pos < len(t.costs) {
		t.costs = slices.Clone(t.costs)
		t.costs[pos] = 0
	}
}

// restore gives the collector at pos of a tenant's chain back its cost,
// after free.
func (s *scheduler) restore(tenant, pos, cost int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	if pos < len(t.costs) {
		t.costs = slices.Clone(t.costs)
		t.costs[pos] = cost
	}
}

// add queues a tenant's workspaces.
func (s *scheduler) add(tenant int, rows []workspace.Row) {
	s.mu.Lock()
	t := s.tenants[tenant]
	for _, r := range rows {
		it := &item{tenant: t, row: r}
		if r.Template == "" {
			t.urgent = append(t.urgent, it)
		} else {
			t.rest = append(t.rest, it)
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
	if s.timer != nil {
		s.timer.Stop()
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}

// watch stops the scheduler when ctx is done.
func (s *scheduler) watch(ctx context.Context) (release func()) {
	stop := context.AfterFunc(ctx, s.stop)
	return func() { stop() }
}

// next blocks until there is work a tenant can start now, returning false
// when there will be none.
func (s *scheduler) next() (*item, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.stopped {
			return nil, false
		}
		if s.pending > 0 {
			it, wake := s.pick()
			if it != nil {
				return it, true
			}
			s.wakeAt(wake)
		} else if !s.open {
			return nil, false
		}
		s.cond.Wait()
	}
}

// wakeAt arranges a broadcast at t, unless one is due sooner.
func (s *scheduler) wakeAt(t time.Time) {
	if t.IsZero() || (!s.timerAt.IsZero() && !t.Before(s.timerAt)) {
		return
	}
	if s.timer != nil {
		s.timer.Stop()
	}
	s.timerAt = t
	s.timer = time.AfterFunc(max(time.Until(t), 0), func() {
		s.mu.Lock()
		s.timerAt = time.Time{}
		s.mu.Unlock()
		s.cond.Broadcast()
	})
}

// pick returns the next item to hand out, or when every tenant with work
// is rate limited, nil and the earliest time one will be ready.
func (s *scheduler) pick() (*item, time.Time) {
	now := s.now()
	active := 0
	for _, t := range s.tenants {
		if t.inflight > 0 || t.head() != nil {
			active++
		}
	}
	share := max(2, (s.workers+active-1)/max(active, 1))
	var wake time.Time
	ready := func(t *tenantState) bool {
		at := t.readyAt(t.head(), now)
		if at.After(now) {
			if wake.IsZero() || at.Before(wake) {
				wake = at
			}
			return false
		}
		return true
	}
	best, bestUrgent := s.choose(func(t *tenantState) bool { return t.inflight < share && ready(t) })
	if best == nil {
		// Every tenant that can start is at its share: nobody else is waiting.
		best, bestUrgent = s.choose(ready)
	}
	if best == nil {
		return nil, wake
	}
	var it *item
	if bestUrgent {
		it, best.urgent = best.urgent[0], best.urgent[1:]
	} else {
		it, best.rest = best.rest[0], best.rest[1:]
	}
	if c := best.cost(it); c > 0 && best.rate > 0 {
		best.tokens -= float64(c)
		it.reserved = true
	}
	best.inflight++
	s.pending--
	return it, time.Time{}
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
func (s *scheduler) done(it *item) {
	s.mu.Lock()
	it.tenant.inflight--
	s.mu.Unlock()
}

// requeue hands an item back, first in its tenant's line, to resume later
// (after a 429). A stopped tenant's item is not queued again: requeue
// reports false and the caller accounts for it.
func (s *scheduler) requeue(it *item) bool {
	s.mu.Lock()
	t := it.tenant
	t.inflight--
	if t.dropped {
		s.mu.Unlock()
		return false
	}
	if it.row.Template == "" {
		t.urgent = append([]*item{it}, t.urgent...)
	} else {
		t.rest = append([]*item{it}, t.rest...)
	}
	s.pending++
	s.mu.Unlock()
	s.cond.Broadcast()
	return true
}

// acquire takes n tokens from the tenant's bucket for an attempt the
// scheduler did not reserve (a retry, or the next collector of a chain),
// waiting for them and for any pause; false when ctx ends first.
func (s *scheduler) acquire(ctx context.Context, t *tenantState, it *item) bool {
	for {
		s.mu.Lock()
		now := s.now()
		at := t.readyAt(it, now)
		if !at.After(now) {
			if c := t.cost(it); c > 0 && t.rate > 0 {
				t.tokens -= float64(c)
			}
			s.mu.Unlock()
			return true
		}
		s.mu.Unlock()
		if !sleep(ctx, at.Sub(now)) {
			return false
		}
	}
}

// pause holds the tenant back until t: its bucket starts again empty then.
func (s *scheduler) pause(ts *tenantState, until time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if until.After(ts.paused) {
		// Pauses that overlap count once: this is the tenant's time lost.
		ts.pausedFor.Add(int64(until.Sub(later(ts.paused, s.now()))))
		ts.paused = until
		ts.tokens = 0
		if until.After(ts.last) {
			ts.last = until
		}
	}
	return time.Duration(ts.pausedFor.Load())
}

// answered notes an answer other than a 429: the tenant is making
// progress, so only pauses in a row count against MaxThrottle.
func (s *scheduler) answered(ts *tenantState) {
	if ts.pausedFor.Load() != 0 {
		ts.pausedFor.Store(0)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// throttled counts the tenants paused by a 429 now.
func (s *scheduler) throttled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now, n := s.now(), 0
	for _, t := range s.tenants {
		if t.paused.After(now) {
			n++
		}
	}
	return n
}

// drop stops handing out a tenant's work and returns what was queued.
func (s *scheduler) drop(tenant int) []*item {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.tenants[tenant]
	t.dropped = true
	out := append(t.urgent, t.rest...)
	t.urgent, t.rest = nil, nil
	s.pending -= len(out)
	return out
}

// queued returns every item never handed out (or handed back).
func (s *scheduler) queued() []*item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*item
	for _, t := range s.tenants {
		out = append(append(out, t.urgent...), t.rest...)
	}
	return out
}

// remaining is the number of queued items never handed out.
func (s *scheduler) remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending
}
