// Package snapshot is backfill's first phase: it lists every tenant's live
// workspaces and captures each one's /configs/config.yaml into the evidence
// store before a restart wave overwrites it.
package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"backfill/internal/collector"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/placeholder"
	"backfill/internal/secret"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// Options configure a snapshot run. Zero values take the SPEC's defaults.
type Options struct {
	Inventory   *inventory.Inventory
	Store       *evidence.Store
	Tenants     func(name string) bool // selects tenants (sharding); nil: all
	Concurrency int                    // default 32
	Timeout     time.Duration          // per capture attempt, default 10s
	Retries     int                    // extra attempts for transient failures; negative: none
	MaxBytes    int64                  // default 1 MiB
	Refresh     bool                   // capture again workspaces already captured
	Backoff     time.Duration          // first retry delay, default 500ms; doubles, with jitter
	HTTPClient  *http.Client           // nil: the collector's default
	Logger      *slog.Logger
	Redactor    *secret.Redactor
	Now         func() time.Time
	// OnProgress, when set, receives counters every ProgressEvery.
	OnProgress    func(Progress)
	ProgressEvery time.Duration
}

// Progress is a running count for the progress line.
type Progress struct {
	Total    int // workspaces to capture this run, as far as listed so far
	Done     int
	Failed   int // gone or failed so far
	Elapsed  time.Duration
	Listing  int // tenants still being listed
	Stopping bool
}

// TenantFailure is a tenant whose workspaces could not be listed.
type TenantFailure struct {
	Tenant string
	Reason string
}

// WorkspaceFailure is a workspace left without a successful capture.
type WorkspaceFailure struct {
	Tenant      string
	WorkspaceID string
	Outcome     string // gone, failed, or "not attempted"
	Reason      string
}

// Summary is the result of a run.
type Summary struct {
	Tenants         int
	TenantsFailed   []TenantFailure
	Live            int // live workspaces listed
	AlreadyCaptured int // skipped: captured by an earlier run
	Captured        int
	Gone            int
	Failed          int
	NotAttempted    int // queued when the run was interrupted
	CoveredEarlier  int // --refresh: not captured again, but captured by an earlier run
	NotRecorded     int // read, but lost to an evidence store failure
	Interrupted     bool
	Failures        []WorkspaceFailure
	Elapsed         time.Duration
}

// Complete reports whether every live workspace of every tenant has a
// successful capture, this run or an earlier one, which is what exit status
// 0 promises.
func (s *Summary) Complete() bool {
	return len(s.TenantsFailed) == 0 && s.AlreadyCaptured+s.Captured+s.CoveredEarlier == s.Live
}

type engine struct {
	o          Options
	tenants    []inventory.Tenant
	collectors []*collector.Collector
	writer     *evidence.Writer
	sched      *scheduler

	mu      sync.Mutex
	sum     Summary
	earlier map[evidence.Key]bool // workspaces with a successful capture before this run; read-only

	total, done, failed, listing atomic.Int64
	writeErr                     atomic.Pointer[error]
}

// Run captures every selected tenant's live workspaces. It returns an error
// only when the run could not start or the evidence store failed; tenants and
// workspaces that could not be captured are in the Summary. When ctx is
// cancelled no new capture starts; captures in flight finish (bounded by the
// timeout) and are recorded.
func Run(ctx context.Context, o Options) (*Summary, error) {
	o = withDefaults(o)
	e := &engine{o: o}
	for _, t := range o.Inventory.Tenants {
		if o.Tenants != nil && !o.Tenants(t.Name) {
			continue
		}
		c, err := collector.New(collector.Spec(t.Collector), collector.Spec(t.Raw), o.MaxBytes, o.HTTPClient)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: tenant %q: %v", o.Inventory.Path, t.Line, t.Name, err)
		}
		e.tenants = append(e.tenants, t)
		e.collectors = append(e.collectors, c)
	}
	captured, err := o.Store.CapturedKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("read evidence store: %w", err)
	}
	e.earlier = captured
	start := o.Now()
	e.sum.Tenants = len(e.tenants)
	e.sched = newScheduler(len(e.tenants), o.Concurrency)
	defer e.sched.watch(ctx)()
	e.writer = o.Store.NewWriter()

	stopProgress := e.startProgress(ctx, start)

	var workers sync.WaitGroup
	for i := 0; i < o.Concurrency; i++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for {
				it, ok := e.sched.next()
				if !ok {
					return
				}
				e.capture(ctx, it)
				e.sched.done(it)
			}
		}()
	}

	// Listing is light; a bounded number of tenants at a time keeps a large
	// fleet from opening hundreds of connections at once.
	var listers sync.WaitGroup
	sem := make(chan struct{}, min(o.Concurrency, 16))
	e.listing.Store(int64(len(e.tenants)))
	for i := range e.tenants {
		listers.Add(1)
		go func(i int) {
			defer listers.Done()
			defer e.listing.Add(-1)
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				e.tenantFailed(ctx, i, "")
				return
			}
			e.list(ctx, i, captured)
		}(i)
	}
	listers.Wait()
	e.sched.close()
	workers.Wait()
	e.writer.Close()
	stopProgress()

	e.sum.NotAttempted = e.sched.remaining()
	e.sum.Interrupted = ctx.Err() != nil
	if e.sum.NotAttempted > 0 {
		e.notAttempted()
	}
	e.sum.Elapsed = o.Now().Sub(start)
	sort.Slice(e.sum.TenantsFailed, func(i, j int) bool { return e.sum.TenantsFailed[i].Tenant < e.sum.TenantsFailed[j].Tenant })
	sort.Slice(e.sum.Failures, func(i, j int) bool {
		a, b := e.sum.Failures[i], e.sum.Failures[j]
		if a.Tenant != b.Tenant {
			return a.Tenant < b.Tenant
		}
		return a.WorkspaceID < b.WorkspaceID
	})
	if p := e.writeErr.Load(); p != nil {
		return &e.sum, fmt.Errorf("evidence store %s: %w (captures recorded before this are kept; re-run to resume)", o.Store.Path(), *p)
	}
	return &e.sum, nil
}

func withDefaults(o Options) Options {
	if o.Concurrency <= 0 {
		o.Concurrency = 32
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 20
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = time.Second
	}
	return o
}

func (e *engine) list(ctx context.Context, i int, captured map[evidence.Key]bool) {
	t := e.tenants[i]
	var rows []workspace.Row
	var err error
	for attempt := 1; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 3*e.o.Timeout)
		rows, err = tenantdb.ListLive(lctx, t.DSN, tenantdb.Options{ConnectTimeout: e.o.Timeout})
		cancel()
		// A blip while listing would cost the whole tenant's evidence:
		// retry it like a capture.
		if err == nil || !tenantdb.Transient(err) || attempt > e.o.Retries || ctx.Err() != nil {
			break
		}
		wait := e.backoff(attempt)
		e.o.Logger.Info("retrying tenant listing", "tenant", t.Name, "attempt", attempt, "reason", e.o.Redactor.Redact(err.Error()), "wait", wait)
		if !sleep(ctx, wait) {
			break
		}
	}
	if err != nil {
		e.tenantFailed(ctx, i, "list workspaces: "+err.Error())
		return
	}
	e.record(&evidence.Listing{Tenant: t.Name, At: e.o.Now(), Outcome: evidence.Listed, Rows: rows})
	todo := rows[:0:0]
	skipped := 0
	for _, r := range rows {
		if !e.o.Refresh && captured[evidence.Key{Tenant: t.Name, WorkspaceID: r.ID}] {
			skipped++
			continue
		}
		todo = append(todo, r)
	}
	e.mu.Lock()
	e.sum.Live += len(rows)
	e.sum.AlreadyCaptured += skipped
	e.mu.Unlock()
	e.total.Add(int64(len(todo)))
	e.o.Logger.Info("tenant listed", "tenant", t.Name, "live", len(rows), "to_capture", len(todo), "already_captured", skipped)
	e.sched.add(i, todo)
}

func (e *engine) tenantFailed(ctx context.Context, i int, reason string) {
	t := e.tenants[i]
	reason = e.o.Redactor.Redact(reason)
	if ctx.Err() != nil {
		// Interrupted, not unreachable: leave no misleading listing behind.
		reason = "not listed: run interrupted"
	} else {
		e.record(&evidence.Listing{Tenant: t.Name, At: e.o.Now(), Outcome: evidence.Unreachable, Reason: reason})
	}
	e.o.Logger.Error("tenant not listed", "tenant", t.Name, "reason", reason)
	e.mu.Lock()
	e.sum.TenantsFailed = append(e.sum.TenantsFailed, TenantFailure{Tenant: t.Name, Reason: reason})
	e.mu.Unlock()
}

// capture reads one workspace's config, retrying transient failures, and
// records the final attempt.
func (e *engine) capture(ctx context.Context, it item) {
	t := e.tenants[it.tenant.index]
	col := e.collectors[it.tenant.index]
	v := placeholder.Values{Tenant: t.Name, WorkspaceID: it.row.ID, InstanceID: it.row.Instance()}
	started := e.o.Now()
	var res collector.Result
	attempt := 1
	for ; ; attempt++ {
		// In-flight captures are not cancelled by an interrupt: they end
		// within the timeout and their evidence is kept.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.Timeout)
		res = col.Collect(actx, v)
		cancel()
		if res.Outcome != collector.Failed || !res.Transient || attempt > e.o.Retries {
			break
		}
		wait := e.backoff(attempt)
		e.o.Logger.Debug("retrying capture", "tenant", t.Name, "workspace", it.row.ID, "attempt", attempt, "reason", e.o.Redactor.Redact(res.Reason), "wait", wait)
		if !sleep(ctx, wait) {
			res.Reason += "; interrupted before retry"
			break
		}
	}
	c := &evidence.Capture{
		Tenant: t.Name, WorkspaceID: it.row.ID, Row: it.row, Method: t.Collector.Method,
		Target: e.o.Redactor.Redact(res.Target), StartedAt: started, EndedAt: e.o.Now(), Attempt: attempt,
		Outcome: string(res.Outcome), Reason: e.o.Redactor.Redact(res.Reason), Content: res.Content,
		Provenance: make(map[string]string, len(res.Provenance)),
	}
	for k, val := range res.Provenance {
		c.Provenance[k] = e.o.Redactor.Redact(val)
	}
	// The worker moves on at once; the capture counts only once committed.
	e.writer.Submit(c, func(err error) {
		if err != nil {
			e.writeFailed(err)
			e.notRecorded(c)
			return
		}
		e.counted(c)
	})
}

// notRecorded names a capture lost with its batch when the store failed, so
// that the summary still accounts for every listed workspace.
func (e *engine) notRecorded(c *evidence.Capture) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.NotRecorded++
	e.sum.Failures = append(e.sum.Failures, WorkspaceFailure{Tenant: c.Tenant, WorkspaceID: c.WorkspaceID,
		Outcome: "not recorded", Reason: "read, but the evidence store failed before it was committed"})
}

// counted updates the summary for a committed capture.
func (e *engine) counted(c *evidence.Capture) {
	e.done.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch c.Outcome {
	case evidence.Captured:
		e.sum.Captured++
		return
	case evidence.Gone:
		e.sum.Gone++
	default:
		e.sum.Failed++
	}
	if e.earlier[evidence.Key{Tenant: c.Tenant, WorkspaceID: c.WorkspaceID}] {
		e.sum.CoveredEarlier++
	}
	e.failed.Add(1)
	e.sum.Failures = append(e.sum.Failures, WorkspaceFailure{Tenant: c.Tenant, WorkspaceID: c.WorkspaceID, Outcome: c.Outcome, Reason: c.Reason})
	e.o.Logger.Warn("capture not successful", "tenant", c.Tenant, "workspace", c.WorkspaceID, "outcome", c.Outcome, "reason", c.Reason)
}

// sleep waits d, or less if ctx ends first; it reports whether it waited
// the whole time.
func sleep(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// backoff is exponential with equal jitter (half fixed, half random), so
// retries against a struggling host spread out instead of arriving
// together. It is capped at 30s.
func (e *engine) backoff(attempt int) time.Duration {
	d := min(e.o.Backoff<<min(attempt-1, 16), 30*time.Second)
	return d/2 + rand.N(d/2+1)
}

// record writes to the store; a store failure (disk full) stops the run,
// since captures that cannot be recorded are not evidence.
func (e *engine) record(r evidence.Record) bool {
	if err := e.writer.Write(r); err != nil {
		e.writeFailed(err)
		return false
	}
	return true
}

func (e *engine) writeFailed(err error) {
	if e.writeErr.CompareAndSwap(nil, &err) {
		e.o.Logger.Error("evidence store write failed; stopping", "err", err)
	}
	e.sched.stop()
}

func (e *engine) notAttempted() {
	e.sched.mu.Lock()
	defer e.sched.mu.Unlock()
	for _, ts := range e.sched.tenants {
		for _, r := range append(ts.urgent, ts.rest...) {
			e.sum.Failures = append(e.sum.Failures, WorkspaceFailure{Tenant: e.tenants[ts.index].Name, WorkspaceID: r.ID,
				Outcome: "not attempted", Reason: "run stopped before this workspace was captured"})
		}
	}
}

func (e *engine) startProgress(ctx context.Context, start time.Time) (stop func()) {
	if e.o.OnProgress == nil {
		return func() {}
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	report := func() {
		e.o.OnProgress(Progress{Total: int(e.total.Load()), Done: int(e.done.Load()), Failed: int(e.failed.Load()),
			Elapsed: e.o.Now().Sub(start), Listing: int(e.listing.Load()), Stopping: ctx.Err() != nil})
	}
	go func() {
		defer wg.Done()
		tick := time.NewTicker(e.o.ProgressEvery)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				report()
			case <-quit:
				report()
				return
			}
		}
	}()
	return func() { close(quit); wg.Wait() }
}
