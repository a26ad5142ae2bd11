// Package snapshot is backfill's first phase: it lists every tenant's live
// workspaces and captures each one's /configs/config.yaml into the evidence
// store before a restart wave overwrites it.
package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"backfill/internal/collector"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/source"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// Defaults of Options, which the command line's flags show as theirs.
const (
	DefaultConcurrency = 32
	// DefaultTenantConcurrency lets a few waves of connections list
	// hundreds of remote tenants; tenant databases sharing one server need
	// it below that server's max_connections.
	DefaultTenantConcurrency = 128
	DefaultTimeout           = 10 * time.Second
	// DefaultRetries is what the command line passes as Retries; a zero
	// Retries means none (see Options).
	DefaultRetries  = 2
	DefaultMaxBytes = collector.DefaultMaxBytes
	// DefaultMisconfiguredAfter is MisconfiguredAfter's default.
	DefaultMisconfiguredAfter = 5
)

// Options configure a snapshot run. A zero or negative size, count or
// duration takes its Default constant or the default its comment names,
// except Retries: zero (or negative) there means no retries, so that
// --retries 0 turns them off.
type Options struct {
	Inventory   *inventory.Inventory
	Store       *evidence.Store
	Tenants     func(name string) bool // selects tenants (sharding); nil: all
	Concurrency int                    // captures at once, default DefaultConcurrency
	// TenantConcurrency bounds the tenants listed at once, default
	// DefaultTenantConcurrency.
	TenantConcurrency int
	Timeout           time.Duration // per capture attempt, default DefaultTimeout
	Retries           int           // extra attempts for transient failures; zero or negative: none
	MaxBytes          int64         // default DefaultMaxBytes
	Refresh           bool          // capture again workspaces already captured
	// Rows, when set, selects among a tenant's listed live rows the ones
	// the run is to capture (audit: template = ''). The listing is still
	// recorded whole: it is what the tenant has live. Rows left out count
	// only in Summary.Unselected.
	Rows func(tenant string, r workspace.Row) bool
	// RecaptureBefore, when set, captures again a selected workspace whose
	// latest evidence ended before it (audit --max-evidence-age). The new
	// capture is appended; the earlier ones stay, and one that fails
	// leaves the workspace covered by them (Summary.CoveredEarlier).
	RecaptureBefore time.Time
	// OnListed, when set, receives each tenant's live rows (all of them,
	// before Rows) once its listing is recorded, from the goroutine that
	// listed it: several tenants may call it at once. db names the database
	// listed, as its listing records it.
	OnListed func(tenant string, db tenantdb.Database, rows []workspace.Row)
	Backoff  time.Duration // first retry delay, default 500ms; doubles, with jitter
	// MaxThrottle bounds how long one workspace waits, in all, for 429s
	// (default 10m): past it, the capture is recorded failed. It bounds a
	// tenant's pauses with no other answer between them too: past it, the
	// tenant is stopped, or a files API that answers nothing but 429 would
	// hold the run for MaxThrottle per workspace.
	MaxThrottle time.Duration
	// MisconfiguredAfter is how many 404 answers of one of a tenant's HTTP
	// collectors, before any answer shows it reaches the tenant's
	// workspaces, leave it out for the tenant as misconfigured (default
	// DefaultMisconfiguredAfter; fewer when the tenant has fewer
	// workspaces), which stops the tenant when its chain has nothing else.
	MisconfiguredAfter int
	HTTPClient         *http.Client // nil: the collector's default
	Logger             *slog.Logger
	Redactor           *secret.Redactor
	Now                func() time.Time
	// OnProgress, when set, receives counters every ProgressEvery.
	OnProgress    func(Progress)
	ProgressEvery time.Duration
}

// Progress is a running count for the progress line.
type Progress struct {
	Total      int // workspaces to capture this run, as far as listed so far
	Done       int
	Failed     int // not captured so far: NotLive + NotRunning + Gone + Errors
	Captured   int
	NotLive    int
	NotRunning int
	Gone       int
	Errors     int // failed, not attempted or not recorded
	Elapsed    time.Duration
	Listing    int // tenants still being listed
	Throttled  int // tenants waiting out a 429 now
	Stopping   bool
}

// TenantFailure is a tenant whose workspaces could not be listed, or whose
// captures were stopped.
type TenantFailure struct {
	Tenant string `json:"tenant"`
	Reason string `json:"reason"`
	// Stopped: the tenant was listed, then stopped because its collector
	// is misconfigured; its remaining workspaces were not attempted.
	Stopped bool `json:"stopped"`
}

// WorkspaceFailure is a workspace left without a successful capture.
type WorkspaceFailure struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Outcome     string `json:"outcome"` // not-live, not-running, gone, failed, or "not attempted"
	Reason      string `json:"reason"`
	Attempt     int    `json:"attempt,omitempty"` // of the last capture recorded
}

// Summary is the result of a run.
type Summary struct {
	Tenants         int
	TenantsFailed   []TenantFailure
	Live            int // live workspaces listed (and selected, with Options.Rows)
	Unselected      int // live workspaces listed that Options.Rows left out
	AlreadyCaptured int // skipped: captured by an earlier run
	Recapture       int // queued again: their evidence ended before Options.RecaptureBefore
	Captured        int
	NotLive         int // answered, but not from the workspace: kept, never evidence
	NotRunning      int
	Gone            int
	Failed          int
	NotAttempted    int // queued when the run was interrupted
	CoveredEarlier  int // --refresh: not captured again, but captured by an earlier run
	NotRecorded     int // read, but lost to an evidence store failure
	Interrupted     bool
	Failures        []WorkspaceFailure
	// CollectorsLeftOut are the collectors refused for a whole tenant
	// whose chain went on without them: its workspaces may all have
	// evidence, from the chain's others, and the credential still wants
	// mending.
	CollectorsLeftOut []LeftOut
	Elapsed           time.Duration
}

// LeftOut is one collector left out for a tenant's remaining workspaces.
type LeftOut struct {
	Tenant   string `json:"tenant"`
	Position int    `json:"collector"` // 1-based, in the tenant's chain
	Method   string `json:"method"`
	Reason   string `json:"reason"`
}

// Complete reports whether every live workspace of every tenant has a
// successful capture, this run or an earlier one, which is what exit status
// 0 promises.
func (s *Summary) Complete() bool {
	return len(s.TenantsFailed) == 0 && s.AlreadyCaptured+s.Captured+s.CoveredEarlier == s.Live
}

// CompleteBut reports whether every live workspace has a successful capture
// or was answered gone: what `snapshot --allow-gone` accepts, so a job is
// not retried forever over a workspace deleted for good.
func (s *Summary) CompleteBut() bool {
	return len(s.TenantsFailed) == 0 && !s.Interrupted && s.AlreadyCaptured+s.Captured+s.CoveredEarlier+s.Gone == s.Live
}

// Reason names how a run ended, for scripts: complete, gone (only gone
// workspaces lack evidence), tenants-failed, interrupted or incomplete.
func (s *Summary) Reason() string {
	switch {
	case s.Interrupted:
		return "interrupted"
	case len(s.TenantsFailed) > 0:
		return "tenants-failed"
	case s.Complete():
		return "complete"
	case s.CompleteBut():
		return "gone"
	}
	return "incomplete"
}

type engine struct {
	o       Options
	tenants []inventory.Tenant
	chains  [][]*collector.Collector // per tenant, tried in order
	runs    []*tenantRun
	writer  *evidence.Writer
	sched   *scheduler

	mu      sync.Mutex
	sum     Summary
	earlier map[evidence.Key]bool // workspaces with a successful capture before this run; read-only
	stale   map[evidence.Key]bool // those whose latest evidence ended before RecaptureBefore; read-only

	total, done, failed, listing atomic.Int64
	// Outcomes counted so far, for the progress line.
	captured, notLive, notRunning, gone atomic.Int64
	writeErr                            atomic.Pointer[error]
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
		chain, err := Chain(o.Inventory, t, o.MaxBytes, o.HTTPClient)
		if err != nil {
			return nil, err
		}
		e.tenants = append(e.tenants, t)
		e.chains = append(e.chains, chain)
		e.runs = append(e.runs, &tenantRun{cols: make([]collectorRun, len(chain))})
	}
	captured, err := o.Store.CapturedKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("read evidence store: %w", err)
	}
	e.earlier = captured
	if !o.RecaptureBefore.IsZero() {
		spans, err := o.Store.EvidenceTimes(ctx)
		if err != nil {
			return nil, fmt.Errorf("read evidence store: %w", err)
		}
		e.stale = map[evidence.Key]bool{}
		for k, sp := range spans {
			if sp.Last.Before(o.RecaptureBefore) {
				e.stale[k] = true
			}
		}
	}
	start := o.Now()
	// A run killed before it lists a tenant (SIGKILL, the OOM killer, a
	// lost node) runs no code to record that, and a store without a
	// listing of a tenant cannot say it lacks one: publish would call the
	// copy complete. So every tenant of the run is first recorded not
	// listed, durably, before any is listed; its listing supersedes that.
	// Recorded even when the run is interrupted before it starts: then
	// each stays not listed, as an interrupted run records it.
	if len(e.tenants) > 0 {
		if err := o.Store.Append(context.WithoutCancel(ctx), pendingListings(e.tenants, start)...); err != nil {
			return nil, fmt.Errorf("record the run's tenants in %s: %w", o.Store.Path(), err)
		}
	}
	e.sum.Tenants = len(e.tenants)
	e.sched = newScheduler(len(e.tenants), o.Concurrency)
	for i, chain := range e.chains {
		e.sched.limit(i, ChainRate(chain), chainCosts(chain))
	}
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
				if !e.capture(ctx, it) {
					e.sched.done(it)
				}
			}
		}()
	}

	// Listing is one round trip after connect, but remote tenants are tens
	// of milliseconds away: many at once, so late tenants' captures are not
	// held back, yet bounded, so a large fleet does not open hundreds of
	// connections at once.
	var listers sync.WaitGroup
	sem := make(chan struct{}, o.TenantConcurrency)
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
	e.notAttempted(e.sched.queued(), "run stopped before this workspace was captured")
	e.settleHeld()
	e.writer.Close()
	stopProgress()

	e.sum.Interrupted = ctx.Err() != nil
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

// pendingReason is the reason of the listing a run records for each of its
// tenants before listing any: read as a tenant's latest listing, the run
// was killed before it listed the tenant (or is still running).
func pendingReason(start time.Time) string {
	return "not listed: the run that began at " + start.UTC().Format(time.RFC3339) + " had not listed it (it was killed, or is still running)"
}

// pendingListings are the run's not-yet-listed records, one a tenant.
func pendingListings(tenants []inventory.Tenant, start time.Time) []evidence.Record {
	recs := make([]evidence.Record, len(tenants))
	for i, t := range tenants {
		recs[i] = &evidence.Listing{Tenant: t.Name, At: start, Outcome: evidence.Unreachable, Reason: pendingReason(start)}
	}
	return recs
}

func withDefaults(o Options) Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.TenantConcurrency <= 0 {
		o.TenantConcurrency = DefaultTenantConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Retries < 0 {
		o.Retries = 0
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Backoff <= 0 {
		o.Backoff = 500 * time.Millisecond
	}
	if o.MaxThrottle <= 0 {
		o.MaxThrottle = 10 * time.Minute
	}
	if o.MisconfiguredAfter <= 0 {
		o.MisconfiguredAfter = DefaultMisconfiguredAfter
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
	var db tenantdb.Database
	var err error
	for attempt := 1; ; attempt++ {
		lctx, cancel := context.WithTimeout(ctx, 3*e.o.Timeout)
		lo := tenantdb.Options{ConnectTimeout: e.o.Timeout}
		// The database is named in the listing's one round trip: a plan
		// checks it is the one it reads.
		rows, db, err = tenantdb.ListLiveIdentified(lctx, t.DSN, lo)
		cancel()
		// A blip while listing would cost the whole tenant's evidence:
		// retry it like a capture, and a session its server kept waiting
		// past the connect timeout too (a listing is read-only, and its
		// slot is not a capture's).
		if err == nil || !tenantdb.Retryable(err) || attempt > e.o.Retries || ctx.Err() != nil {
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
	e.record(&evidence.Listing{Tenant: t.Name, At: e.o.Now(), Outcome: evidence.Listed, Rows: rows, Database: db.Ident()})
	if e.o.OnListed != nil {
		e.o.OnListed(t.Name, db, rows)
	}
	todo := rows[:0:0]
	skipped, unselected, again := 0, 0, 0
	for _, r := range rows {
		if e.o.Rows != nil && !e.o.Rows(t.Name, r) {
			unselected++
			continue
		}
		k := evidence.Key{Tenant: t.Name, WorkspaceID: r.ID}
		switch {
		case e.o.Refresh || !captured[k]:
		case e.stale[k]:
			again++
		default:
			skipped++
			continue
		}
		todo = append(todo, r)
	}
	e.mu.Lock()
	e.sum.Live += len(rows) - unselected
	e.sum.Unselected += unselected
	e.sum.AlreadyCaptured += skipped
	e.sum.Recapture += again
	e.mu.Unlock()
	e.total.Add(int64(len(todo)))
	e.o.Logger.Info("tenant listed", "tenant", t.Name, "live", len(rows)-unselected, "to_capture", len(todo), "already_captured", skipped,
		"recapture", again, "unselected", unselected)
	tr := e.runs[i]
	tr.mu.Lock()
	tr.threshold = min(e.o.MisconfiguredAfter, len(todo))
	tr.shared = SharedInstances(rows)
	tr.mu.Unlock()
	e.sched.add(i, todo)
}

func (e *engine) tenantFailed(ctx context.Context, i int, reason string) {
	t := e.tenants[i]
	reason = e.o.Redactor.Redact(reason)
	if ctx.Err() != nil {
		// Interrupted, which is not the tenant's fault, but recorded all the
		// same: a store with no listing of a tenant cannot say it lacks
		// one, and a copy published from it would look complete.
		reason = "not listed: run interrupted"
	}
	e.record(&evidence.Listing{Tenant: t.Name, At: e.o.Now(), Outcome: evidence.Unreachable, Reason: reason})
	e.o.Logger.Error("tenant not listed", "tenant", t.Name, "reason", reason)
	e.mu.Lock()
	e.sum.TenantsFailed = append(e.sum.TenantsFailed, TenantFailure{Tenant: t.Name, Reason: reason})
	e.mu.Unlock()
}

// capture runs a workspace's collector chain: each collector in turn, its
// transient failures retried, until one captures evidence; the final
// attempt of each collector tried is recorded. A 429 hands the item back to
// the scheduler (capture returns true) with the tenant paused, to resume
// where it was without counting an attempt.
func (e *engine) capture(ctx context.Context, it *item) (requeued bool) {
	ti := it.tenant.index
	t := e.tenants[ti]
	chain := e.chains[ti]
	v := Values(t.Name, it.row)
	tr := e.runs[ti]
	tr.mu.Lock()
	v.InstanceShared = tr.shared[v.InstanceID]
	tr.mu.Unlock()
	// answering is the chain position whose collector this item is
	// noted as asking (collectorRun.running), until its answer is taken (answered);
	// an item that leaves before (requeued on a 429, interrupted) is
	// noted as no longer asking.
	answering := -1
	defer func() {
		if answering >= 0 {
			e.abandon(ti, answering, it)
		}
	}()
	for it.pos < len(chain) {
		if e.runs[ti].isStopped() {
			break
		}
		if why := tr.brokenReason(it.pos); why != "" {
			// Refused for the tenant already (a token, say): not tried.
			it.leftOut = append(it.leftOut, fmt.Sprintf("%s not tried, left out for the tenant: %s", chain[it.pos].Method(), why))
			it.pos++
			// What 429s it met there were that collector's.
			it.attempt, it.started, it.throttles, it.waited = 0, time.Time{}, 0, 0
			continue
		}
		col := chain[it.pos]
		if it.started.IsZero() {
			it.started = e.o.Now()
		}
		if countsAnswers(col) && answering != it.pos {
			tr.mu.Lock()
			tr.begin(it.pos, it)
			tr.mu.Unlock()
			answering = it.pos
		}
		var res collector.Result
		for {
			// tenant.rate is set before any worker starts; a tenant without
			// one has no bucket to wait for.
			if !it.reserved && it.tenant.rate > 0 && !e.sched.acquire(ctx, it.tenant, it) {
				// Interrupted while waiting for the tenant's rate limit:
				// nothing was sent; the workspace is not attempted.
				it.started = time.Time{}
				e.finish(it, "run stopped before this workspace was captured")
				return false
			}
			it.reserved = false
			it.attempt++
			// In-flight captures are not cancelled by an interrupt: they end
			// within the timeout and their evidence is kept.
			res = col.CollectWithin(context.WithoutCancel(ctx), v, e.o.Timeout)
			if !res.Throttled {
				e.sched.answered(it.tenant)
			}
			if res.Throttled {
				// A 429 is the platform's pacing, not a failure: it costs
				// no retry; the tenant waits and the worker moves on.
				it.attempt--
				it.throttles++
				it.waited += res.RetryAfter
				pausedFor := e.sched.pause(it.tenant, time.Now().Add(res.RetryAfter))
				e.o.Logger.Info("rate limited", "tenant", t.Name, "workspace", it.row.ID, "wait", res.RetryAfter)
				if ctx.Err() != nil {
					// The 429 read nothing: as if never attempted.
					it.started = time.Time{}
					e.finish(it, "run stopped before this workspace was captured")
					return false
				}
				if pausedFor > e.o.MaxThrottle {
					res.Transient = false
					res.TenantError = fmt.Sprintf("rate limited (429) for %s in all, more than %s: its remaining workspaces are not attempted",
						pausedFor.Round(time.Second), e.o.MaxThrottle)
					res.Reason += "; " + res.TenantError
					it.attempt = max(it.attempt, 1)
					break
				}
				if it.waited <= e.o.MaxThrottle {
					if e.sched.requeue(it) {
						return true
					}
					e.finish(it, whyStopped)
					return true
				}
				res.Transient = false
				res.Reason += fmt.Sprintf("; still rate limited after waiting %s in all", it.waited.Round(time.Second))
				it.attempt = max(it.attempt, 1)
				break
			}
			if res.Outcome != collector.Failed || !res.Transient || it.attempt > e.o.Retries {
				break
			}
			wait := e.backoff(it.attempt)
			e.o.Logger.Debug("retrying capture", "tenant", t.Name, "workspace", it.row.ID, "attempt", it.attempt, "reason", e.o.Redactor.Redact(res.Reason), "wait", wait)
			if !sleep(ctx, wait) {
				res.Reason += "; interrupted before retry"
				break
			}
		}
		it.rows = append(it.rows, e.captureRecord(it, col, res))
		it.pos++
		it.attempt, it.started, it.throttles, it.waited = 0, time.Time{}, 0, 0
		if res.TenantError != "" {
			if e.breakCollector(ti, it.pos-1, len(chain), res.TenantError) {
				break
			}
			continue
		}
		answering = -1
		if e.answered(ti, it.pos-1, col, res, it) || (res.Outcome == collector.Captured && source.Evidence(res.Source)) {
			break
		}
	}
	e.finish(it, "")
	return false
}

// captureRecord builds the capture record of a collector's final attempt.
func (e *engine) captureRecord(it *item, col *collector.Collector, res collector.Result) pendingRow {
	c := &evidence.Capture{
		Tenant: e.tenants[it.tenant.index].Name, WorkspaceID: it.row.ID, Row: it.row, Method: col.Method(),
		Target: e.o.Redactor.Redact(res.Target), StartedAt: it.started, EndedAt: e.o.Now(), Attempt: it.attempt,
		Outcome: string(res.Outcome), Reason: e.o.Redactor.Redact(res.Reason), Content: res.Content, Source: res.Source,
		Provenance: make(map[string]string, len(res.Provenance)+2),
	}
	for k, val := range res.Provenance {
		c.Provenance[k] = e.o.Redactor.Redact(val)
	}
	if it.throttles > 0 {
		c.Provenance["throttled"] = strconv.Itoa(it.throttles)
		c.Provenance["throttle_wait"] = it.waited.String()
	}
	return pendingRow{c: c, notFound: res.NotFound, pos: it.pos}
}

// answered notes what a result of the HTTP collector at pos of the
// tenant's chain says of it: an answer about the workspace shows it reaches
// the tenant's workspaces (that one: another collector of the chain may be
// pointed elsewhere); a 404 before any such answer counts towards leaving
// it out for the tenant as misconfigured, which stops the tenant when its
// chain has nothing else. It reports whether the tenant was stopped.
func (e *engine) answered(ti, pos int, col *collector.Collector, res collector.Result, it *item) bool {
	if !countsAnswers(col) {
		return false
	}
	tr := e.runs[ti]
	// A listing that came back shows the collector configured, whatever
	// it then said of the workspace.
	reached := res.Reached || res.Outcome == collector.Captured || res.Outcome == collector.NotLive || res.Outcome == collector.NotRunning
	tr.mu.Lock()
	tr.end(pos, it)
	var settled []settledItem
	putBack, decide := "", ""
	switch {
	case reached:
		c := &tr.cols[pos]
		c.suspect, c.pending = "", nil
		if !c.verified {
			c.verified = true
			// Left out as misconfigured after all: an answer begun after
			// the decision shows it reaches the tenant. Put back, unless
			// the tenant has stopped.
			if why := c.notGone; why != "" && tr.stopped == "" {
				putBack = why
				c.notGone = ""
				if c.broken == why {
					c.broken = ""
				}
			}
			settled = tr.release()
		}
	case res.Outcome == collector.Gone && res.NotFound:
		c := &tr.cols[pos]
		count := !c.verified && c.notGone == "" && tr.stopped == ""
		if count {
			c.notFound++
		}
		// Only the 404 that reaches the threshold counts: one counted by
		// another worker after it must not do it again.
		if n := c.notFound; count && n == tr.threshold {
			why := fmt.Sprintf("collector misconfigured: check X-Molecule-Org-Id and the URL: the tenant's first %d answers were all 404 while its database lists those workspaces live", n)
			if pos > 0 {
				// It is only asked what the collectors before it did not
				// capture, which may well be workspaces that are gone.
				before := "first collector"
				if pos > 1 {
					before = fmt.Sprintf("first %d collectors", pos)
				}
				why += " (it is asked only for what the chain's " + before + " did not capture: they may be workspaces that are gone)"
			}
			if len(c.running) == 0 {
				decide = why
			} else {
				// A config server answers 404 sooner than it sends a
				// config: an answer still in flight may show it reaches
				// the tenant. Decide once those begun before now are in.
				c.suspect, c.pending = why, maps.Clone(c.running)
				e.o.Logger.Info("collector's first answers were all 404; waiting for its answers in flight before leaving it out",
					"tenant", e.tenants[ti].Name, "collector", pos+1, "method", col.Method(), "in_flight", len(c.running))
			}
		}
	}
	if decide == "" {
		decide = tr.decide(pos)
	}
	tr.mu.Unlock()
	if putBack != "" {
		e.putBack(ti, pos)
	}
	e.submitSettled(settled)
	if decide != "" {
		return e.misconfigured(ti, pos, decide)
	}
	return false
}

// countsAnswers reports whether the engine learns from a collector's
// answers whether it reaches the tenant (its 404s are provisional).
func countsAnswers(col *collector.Collector) bool {
	m := col.Method()
	return m == collector.MethodHTTP || m == collector.MethodFilesAPI
}

// begin notes an item's attempts of the collector at pos under way.
// Called with tr.mu held.
func (tr *tenantRun) begin(pos int, it *item) {
	c := &tr.cols[pos]
	if c.running == nil {
		c.running = map[*item]bool{}
	}
	c.running[it] = true
}

// end notes an item's attempts of the collector at pos over (answered, or
// given up: requeued, interrupted). Called with tr.mu held.
func (tr *tenantRun) end(pos int, it *item) {
	delete(tr.cols[pos].running, it)
	delete(tr.cols[pos].pending, it)
}

// decide returns why to leave the collector at pos out, once the answers
// in flight when its 404s reached the threshold are all in and none showed
// it reaches the tenant; "" otherwise. Called with tr.mu held.
func (tr *tenantRun) decide(pos int) string {
	c := &tr.cols[pos]
	why := c.suspect
	if why == "" || len(c.pending) > 0 {
		return ""
	}
	c.suspect, c.pending = "", nil
	if c.verified {
		return ""
	}
	return why
}

// abandon is end for an item that leaves the collector at pos without an
// answer, and makes the decision that was waiting for it.
func (e *engine) abandon(ti, pos int, it *item) {
	tr := e.runs[ti]
	tr.mu.Lock()
	tr.end(pos, it)
	decide := tr.decide(pos)
	tr.mu.Unlock()
	if decide != "" {
		e.misconfigured(ti, pos, decide)
	}
}

// misconfigured leaves the collector at pos out for the tenant, as 404s
// that no answer of the tenant showed to mean gone reached the threshold:
// those 404s, held until now, are written as failed for reason, and so are
// later ones (finish). The chain's other collectors go on (a file
// collector over a volume holding the same configs must still be read);
// the tenant stops when none is left. It reports whether it stopped.
func (e *engine) misconfigured(ti, pos int, reason string) bool {
	reason = e.o.Redactor.Redact(reason)
	tr := e.runs[ti]
	tr.mu.Lock()
	c := &tr.cols[pos]
	if c.verified {
		// An answer of another worker showed it reaches the tenant's
		// workspaces since the threshold was counted.
		tr.mu.Unlock()
		return false
	}
	if c.notGone == "" {
		c.notGone = reason
	}
	settled := tr.release()
	tr.mu.Unlock()
	e.submitSettled(settled)
	return e.breakCollector(ti, pos, len(e.chains[ti]), reason)
}

// putBack takes back leaving the collector at pos out for the tenant: an
// answer showed it reaches the tenant's workspaces after its 404s had
// reached the threshold. Its 404s written before are failed, and the
// workspaces that skipped it meanwhile are not gone; the tenant's others
// are read through it again.
func (e *engine) putBack(ti, pos int) {
	e.sched.restore(ti, pos, chainCosts(e.chains[ti])[pos])
	t := e.tenants[ti].Name
	e.mu.Lock()
	e.sum.CollectorsLeftOut = slices.DeleteFunc(e.sum.CollectorsLeftOut, func(l LeftOut) bool { return l.Tenant == t && l.Position == pos+1 })
	e.mu.Unlock()
	e.o.Logger.Warn("collector put back for the tenant: an answer showed it reaches the tenant's workspaces after its first 404s had it left out",
		"tenant", t, "collector", pos+1, "method", e.chains[ti][pos].Method())
}

// settle says how an item's 404s are to be written once that is known: ok
// is false while one of them rests on a collector neither shown to reach
// the tenant's workspaces nor left out as misconfigured; notGone, when
// set, is why they are not gone. Called with tr.mu held.
func (tr *tenantRun) settle(it *item) (notGone string, ok bool) {
	if tr.stopped != "" {
		return tr.stopped, true
	}
	pending := false
	for _, r := range it.rows {
		if !r.notFound || tr.cols[r.pos].verified {
			continue
		}
		if why := tr.cols[r.pos].notGone; why != "" {
			return why, true
		}
		pending = true
	}
	return "", !pending
}

// settledItem is a held item whose 404s are settled, to be submitted.
type settledItem struct {
	it      *item
	notGone string
}

// release takes from held the items whose 404s are now settled. Called
// with tr.mu held.
func (tr *tenantRun) release() []settledItem {
	var out []settledItem
	kept := tr.held[:0]
	for _, h := range tr.held {
		if why, ok := tr.settle(h); ok {
			out = append(out, settledItem{h, why})
		} else {
			kept = append(kept, h)
		}
	}
	clear(tr.held[len(kept):])
	tr.held = kept
	return out
}

func (e *engine) submitSettled(items []settledItem) {
	for _, s := range items {
		e.submit(s.it, s.notGone)
	}
}

// pendingRow is a capture record not yet written; notFound marks a gone
// that rests on a 404 of the collector at chain position pos, which is
// written as gone only once that collector has shown it reaches the
// tenant's workspaces.
type pendingRow struct {
	c        *evidence.Capture
	notFound bool
	pos      int
}

// tenantRun is what a run has learnt of one tenant's collector.
type tenantRun struct {
	mu        sync.Mutex
	threshold int     // 404s that leave a collector out as misconfigured
	held      []*item // items whose 404s wait for their collectors to be verified or left out
	stopped   string  // why the tenant was stopped; "" while it runs
	// shared are the instance ids more than one of the tenant's live rows
	// name; set once, before any of its items is queued.
	shared map[string]bool
	// cols is what the run has learnt of each collector of the tenant's
	// chain, by position.
	cols []collectorRun
}

// collectorRun is what a run has learnt of one collector of a tenant's
// chain.
type collectorRun struct {
	// verified: an answer showed this HTTP collector reaches the tenant's
	// workspaces; notFound counts its 404s before that.
	verified bool
	notFound int
	// running are the items asking it; suspect, when its 404s reached the
	// threshold while others were asking it, is why to leave it out, and
	// pending those others: it is left out once they have answered,
	// unless one showed it reaches the tenant.
	running map[*item]bool
	suspect string
	pending map[*item]bool
	// notGone, when it was left out as misconfigured (its 404s reached the
	// threshold), is why: its unverified 404s are not gone.
	notGone string
	// broken, when it was refused for the whole tenant, is why.
	broken string
}

// SharedInstances are the instance ids more than one of rows names: a
// container or EC2 instance named by one would be read as each of their
// configs, so captures that read by it fail.
func SharedInstances(rows []workspace.Row) map[string]bool {
	n := map[string]int{}
	for _, r := range rows {
		if id := r.Instance(); id != "" {
			n[id]++
		}
	}
	shared := map[string]bool{}
	for id, c := range n {
		if c > 1 {
			shared[id] = true
		}
	}
	return shared
}

func (tr *tenantRun) brokenReason(pos int) string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.cols[pos].broken
}

// breakCollector takes collector pos of a tenant's chain of n out of use
// for the tenant's remaining workspaces, for reason (it was refused for the
// whole tenant: a credential, the org header, a rate limit waited out),
// and stops the tenant once none of its chain is left. The chain's other
// collectors go on: a files API refusing a token must not keep a volume
// that holds the same configs from being read. It reports whether the
// tenant was stopped.
func (e *engine) breakCollector(ti, pos, n int, reason string) bool {
	tr := e.runs[ti]
	tr.mu.Lock()
	c := &tr.cols[pos]
	first := c.broken == ""
	if first {
		c.broken = reason
	}
	left := n
	var all []string
	for p := range n {
		if why := tr.cols[p].broken; why != "" {
			left--
			all = append(all, fmt.Sprintf("collector %d of %d: %s", p+1, n, why))
		}
	}
	tr.mu.Unlock()
	if first {
		e.sched.free(ti, pos)
	}
	if left == 0 {
		if n > 1 {
			reason = "every collector of its chain was refused: " + strings.Join(all, "; ")
		}
		e.stopTenant(ti, reason)
		return true
	}
	if first {
		method := e.chains[ti][pos].Method()
		reason = e.o.Redactor.Redact(reason)
		e.o.Logger.Warn("collector left out for the tenant's other workspaces; the chain's others go on", "tenant", e.tenants[ti].Name,
			"collector", pos+1, "of", n, "method", method, "reason", reason)
		e.mu.Lock()
		e.sum.CollectorsLeftOut = append(e.sum.CollectorsLeftOut, LeftOut{Tenant: e.tenants[ti].Name, Position: pos + 1, Method: method, Reason: reason})
		e.mu.Unlock()
	}
	return false
}

func (tr *tenantRun) isStopped() bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.stopped != ""
}

// finish writes an item's records, unless one of them is a 404 the tenant
// has not yet shown to mean gone: then the item waits with the tenant
// (unless it captured evidence, which is written at once with that 404
// recorded failed). With no record, the item was not attempted: why says
// why.
func (e *engine) finish(it *item, why string) {
	if len(it.rows) == 0 {
		if why == "" {
			why = whyStopped
		}
		e.notAttempted([]*item{it}, why)
		return
	}
	tr := e.runs[it.tenant.index]
	last := it.rows[len(it.rows)-1].c
	provisional := false
	for _, r := range it.rows {
		provisional = provisional || r.notFound
	}
	tr.mu.Lock()
	notGone, settled := tr.settle(it)
	switch {
	case !provisional:
		tr.mu.Unlock()
		e.submit(it, "")
	case settled:
		tr.mu.Unlock()
		e.submit(it, notGone)
	case last.IsEvidence():
		tr.mu.Unlock()
		e.submit(it, "not taken as gone: no answer had yet shown this tenant's collector reaches its workspaces")
	default:
		tr.held = append(tr.held, it)
		tr.mu.Unlock()
	}
}

// submit hands an item's records to the writer, the 404s among them as
// gone, or when notGone is set, as failed for that reason; the workspace is
// counted once all are committed.
func (e *engine) submit(it *item, notGone string) {
	rows := it.rows
	it.rows = nil
	for _, r := range rows {
		if r.notFound && notGone != "" {
			r.c.Outcome = evidence.Failed
			r.c.Reason += "; " + e.o.Redactor.Redact(notGone)
		}
	}
	// A workspace is gone only when no collector of its chain failed, was
	// left out or was never reached (the run or the tenant stopped first):
	// one that did not answer may hold its config (a files API refusing a
	// token over a volume that never had it).
	unsure := slices.Clone(it.leftOut)
	evidenceFound := false
	for _, r := range rows {
		if r.c.Outcome == evidence.Failed {
			unsure = append(unsure, r.c.Method+" failed")
		}
		evidenceFound = evidenceFound || r.c.IsEvidence()
	}
	if chain := e.chains[it.tenant.index]; !evidenceFound {
		for p := it.pos; p < len(chain); p++ {
			unsure = append(unsure, chain[p].Method()+" not tried: the run or the tenant stopped first")
		}
	}
	if len(unsure) > 0 {
		for _, r := range rows {
			if r.c.Outcome == evidence.Gone {
				r.c.Outcome = evidence.Failed
				r.c.Reason += "; not taken as gone: " + e.o.Redactor.Redact(strings.Join(unsure, "; "))
			}
		}
	}
	final := WorkspaceFailure{Tenant: rows[0].c.Tenant, WorkspaceID: rows[0].c.WorkspaceID}
	captured := false
	var parts []string
	for _, r := range rows {
		captured = captured || r.c.IsEvidence()
		final.Outcome, final.Reason, final.Attempt = r.c.Outcome, r.c.Reason, r.c.Attempt
		parts = append(parts, r.c.Method+": "+r.c.Outcome+": "+r.c.Reason)
	}
	if len(rows) > 1 {
		final.Reason = strings.Join(parts, "; ")
	}
	if captured {
		final.Outcome = evidence.Captured
	}
	left, failed := len(rows), false
	for _, r := range rows {
		e.writer.Submit(r.c, func(err error) {
			// The writer calls back from its one goroutine, in order.
			left--
			if err != nil && !failed {
				failed = true
				e.writeFailed(err)
				e.notRecorded(final)
			}
			if left == 0 && !failed {
				e.counted(final)
			}
		})
	}
}

// whyStopped is why a stopped tenant's workspaces were not attempted; the
// summary names the tenant and the reason once.
const whyStopped = "tenant stopped before this workspace was attempted (the summary says why)"

// stopTenant stops a tenant (its collector misconfigured, or rate limited
// with no other answer for too long): nothing more of it is attempted, and
// no 404 of it is recorded as gone.
func (e *engine) stopTenant(ti int, reason string) {
	reason = e.o.Redactor.Redact(reason)
	tr := e.runs[ti]
	tr.mu.Lock()
	if tr.stopped != "" {
		tr.mu.Unlock()
		return
	}
	tr.stopped = reason
	held := tr.held
	tr.held = nil
	tr.mu.Unlock()
	t := e.tenants[ti]
	e.o.Logger.Error("tenant stopped", "tenant", t.Name, "reason", reason)
	e.mu.Lock()
	e.sum.TenantsFailed = append(e.sum.TenantsFailed, TenantFailure{Tenant: t.Name, Reason: reason, Stopped: true})
	e.mu.Unlock()
	for _, h := range held {
		e.submit(h, reason)
	}
	e.notAttempted(e.sched.drop(ti), whyStopped)
}

// settleHeld writes, at the end of the run, the items still waiting on a
// tenant no answer verified or stopped: their 404s are not taken as gone.
func (e *engine) settleHeld() {
	for _, tr := range e.runs {
		tr.mu.Lock()
		held := tr.held
		tr.held = nil
		tr.mu.Unlock()
		for _, h := range held {
			e.submit(h, "not taken as gone: no answer showed this tenant's collector reaches its workspaces")
		}
	}
}

// notRecorded names a workspace whose records were lost with their batch
// when the store failed, so that the summary still accounts for every
// listed workspace.
func (e *engine) notRecorded(f WorkspaceFailure) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sum.NotRecorded++
	e.sum.Failures = append(e.sum.Failures, WorkspaceFailure{Tenant: f.Tenant, WorkspaceID: f.WorkspaceID,
		Outcome: "not recorded", Reason: "read, but the evidence store failed before it was committed"})
}

// counted updates the summary for a workspace whose records are committed.
func (e *engine) counted(f WorkspaceFailure) {
	e.done.Add(1)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch f.Outcome {
	case evidence.Captured:
		e.sum.Captured++
		e.captured.Add(1)
		return
	case evidence.NotLive:
		e.sum.NotLive++
		e.notLive.Add(1)
	case evidence.NotRunning:
		e.sum.NotRunning++
		e.notRunning.Add(1)
	case evidence.Gone:
		e.sum.Gone++
		e.gone.Add(1)
	default:
		e.sum.Failed++
	}
	if e.earlier[evidence.Key{Tenant: f.Tenant, WorkspaceID: f.WorkspaceID}] {
		e.sum.CoveredEarlier++
	}
	e.failed.Add(1)
	e.sum.Failures = append(e.sum.Failures, f)
	e.o.Logger.Warn("capture not successful", "tenant", f.Tenant, "workspace", f.WorkspaceID, "outcome", f.Outcome, "attempt", f.Attempt, "reason", f.Reason)
}

// chainCosts is the tokens each collector's attempt takes from the
// tenant's bucket: its requests, when it is rate limited.
func chainCosts(chain []*collector.Collector) []int {
	costs := make([]int, len(chain))
	for i, c := range chain {
		if c.Rate() > 0 {
			costs[i] = c.Requests()
		}
	}
	return costs
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

// notAttempted accounts for items never attempted, writing any records
// they hold from earlier collectors of their chain (as not gone when they
// rest on an unverified 404).
func (e *engine) notAttempted(items []*item, why string) {
	for _, it := range items {
		if len(it.rows) > 0 {
			e.submit(it, "not taken as gone: "+why)
			continue
		}
		e.mu.Lock()
		e.sum.NotAttempted++
		e.sum.Failures = append(e.sum.Failures, WorkspaceFailure{Tenant: e.tenants[it.tenant.index].Name, WorkspaceID: it.row.ID,
			Outcome: "not attempted", Reason: why})
		e.mu.Unlock()
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
		failed, notLive, notRunning, gone := int(e.failed.Load()), int(e.notLive.Load()), int(e.notRunning.Load()), int(e.gone.Load())
		e.o.OnProgress(Progress{Total: int(e.total.Load()), Done: int(e.done.Load()), Failed: failed,
			Captured: int(e.captured.Load()), NotLive: notLive, NotRunning: notRunning, Gone: gone, Errors: failed - notLive - notRunning - gone,
			Elapsed: e.o.Now().Sub(start), Listing: int(e.listing.Load()), Throttled: e.sched.throttled(), Stopping: ctx.Err() != nil})
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
