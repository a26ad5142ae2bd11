// Package preflight checks, in seconds and minutes before a restart wave,
// that a snapshot will work: for every tenant of the inventory, that its
// database answers a READ ONLY listing with the grants the listing needs,
// that one workspace's config reads through the tenant's collector chain
// from a source that is evidence, and how much of the platform's rate limit
// is left; and that the evidence store can be written with room for the
// captures. A snapshot is the one chance to keep the evidence, so what it
// would trip over is better found before the wave than during it.
//
// Preflight writes nothing: tenant sessions are read-only, the sample read
// is never recorded, and the evidence store is not opened (its directory
// is tested with a temporary file of its own, removed at once).
package preflight

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/collector"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/source"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
	"backfill/snapshot"
)

// PlatformLimit is the platform's rate limit per org, in requests a
// minute, when an answer does not say (its RATE_LIMIT default).
const PlatformLimit = 600

// Defaults of Options, which the command line's flags show as theirs.
const (
	DefaultConcurrency = 16
	DefaultTimeout     = 10 * time.Second
)

// Options configure a preflight run; zero values take the defaults named.
type Options struct {
	Inventory *inventory.Inventory
	// StorePath is the evidence store the snapshot will write (--evidence).
	StorePath   string
	Concurrency int           // tenants checked at once, default DefaultConcurrency
	Timeout     time.Duration // connecting, and each collector attempt; default DefaultTimeout (the listing gets three times it)
	MaxBytes    int64         // the sample's size cap, as snapshot's --max-bytes; default snapshot.DefaultMaxBytes
	HTTPClient  *http.Client  // nil: the collector's default
	Redactor    *secret.Redactor
	Logger      *slog.Logger
	Now         func() time.Time
	// FreeSpace reports the bytes this user may still write on the file
	// system holding dir; nil: statfs.
	FreeSpace func(dir string) (uint64, error)
}

// Report is the result of a run.
type Report struct {
	Tenants     []TenantResult `json:"tenants"`
	Store       StoreResult    `json:"store"`
	Interrupted bool           `json:"interrupted"`
	Elapsed     time.Duration  `json:"-"`
}

// TenantsReady counts the tenants ready for the snapshot.
func (r *Report) TenantsReady() int {
	n := 0
	for _, t := range r.Tenants {
		if t.Ready {
			n++
		}
	}
	return n
}

// Ready reports whether every tenant and the store are ready: what exit
// status 0 promises.
func (r *Report) Ready() bool {
	return !r.Interrupted && r.Store.Ready && r.TenantsReady() == len(r.Tenants)
}

// Reason names the outcome for scripts: ready, tenants-not-ready,
// store-not-ready, not-ready (both) or interrupted.
func (r *Report) Reason() string {
	tenants, store := r.TenantsReady() == len(r.Tenants), r.Store.Ready
	switch {
	case r.Interrupted:
		return "interrupted"
	case tenants && store:
		return "ready"
	case store:
		return "tenants-not-ready"
	case tenants:
		return "store-not-ready"
	}
	return "not-ready"
}

// TenantResult is one tenant's readiness. Strings are redacted; values
// read from the tenant are not escaped here (the caller escapes for a
// terminal).
type TenantResult struct {
	Tenant string `json:"tenant"`
	Ready  bool   `json:"ready"`
	DB     DB     `json:"db"`
	Grants Grants `json:"grants"`
	// Live and EmptyTemplate count the live rows the READ ONLY listing
	// returned and those of them with template = ''.
	Live          int `json:"live"`
	EmptyTemplate int `json:"empty_template"`
	// Sample is the workspace read that decides: the one captured from an
	// evidence source, else the last one tried. PassedOver are those
	// tried before it (at most MaxSamples in all).
	Sample     *Sample  `json:"sample"`
	PassedOver []Sample `json:"passed_over"`
	Rate       Rate     `json:"rate"`
	// Misconfigured is a collector's tenant-level error (a bare 404,
	// TENANT_ORG_HEADER_REQUIRED, 401, 403): the snapshot would leave that
	// collector out for the tenant, and stop it when the chain has nothing
	// else.
	Misconfigured string `json:"misconfigured"`
	// Why says what keeps the tenant from being ready; Notes what is
	// worth knowing without stopping it.
	Why   []string `json:"why"`
	Notes []string `json:"notes"`
}

// DB is what the tenant's database answered.
type DB struct {
	Reachable bool   `json:"reachable"`
	Database  string `json:"database"` // current_database()
	Role      string `json:"role"`     // current_user
	// ReadOnlyListing: the listing ran, in a READ ONLY transaction.
	ReadOnlyListing bool   `json:"read_only_listing"`
	Error           string `json:"error"`
}

// Grants are the role's privileges for the listing.
type Grants struct {
	Checked bool     `json:"checked"`
	OK      bool     `json:"ok"`
	Missing []string `json:"missing"`
	Fix     string   `json:"fix"` // the GRANT statement that gives what is missing
}

// Sample is one workspace read through the tenant's collector chain.
type Sample struct {
	WorkspaceID string `json:"workspace_id"`
	Status      string `json:"status"`
	Template    string `json:"template"`
	// Outcome and Source are the chain's: the collector that captured
	// evidence, else the last one tried.
	Outcome string `json:"outcome"`
	Source  string `json:"source"`
	Method  string `json:"method"`
	// Evidence: the read is what the snapshot would keep as evidence.
	Evidence bool      `json:"evidence"`
	Size     int       `json:"size"` // bytes read (captured and not-live only)
	Attempts []Attempt `json:"attempts"`
}

// Attempt is one collector of the chain, as tried.
type Attempt struct {
	Method  string `json:"method"`
	Outcome string `json:"outcome"`
	Source  string `json:"source"`
	Reason  string `json:"reason"`
	Target  string `json:"target"`
	// notFound: a 404 the snapshot would hold until the collector is
	// shown to reach the tenant.
	notFound bool
}

// Rate is the tenant's rate-limit headroom: the rate the inventory holds
// it to against the platform's limit, and the window's state as the
// sample's answer reported it.
type Rate struct {
	// PerSecond is the chain's files_api rate (the snapshot's pace for the
	// tenant); 0 when no collector of the chain is rate limited.
	PerSecond float64 `json:"per_second"`
	PerMinute float64 `json:"per_minute"`
	// Limit is the platform's requests a minute: X-RateLimit-Limit when an
	// answer sent it, else PlatformLimit for a rate-limited chain; 0 when
	// the answer said "unlimited" or nothing applies. LimitFrom says which:
	// header, platform, unlimited, or "".
	Limit     int    `json:"limit"`
	LimitFrom string `json:"limit_from"`
	// Remaining and ResetSeconds are X-RateLimit-Remaining and -Reset of
	// the last answer that sent them; nil when none did.
	Remaining    *int `json:"remaining"`
	ResetSeconds *int `json:"reset_seconds"`
	// Throttled: the sample was answered 429.
	Throttled bool `json:"throttled"`
}

// Run checks every tenant and the store. It returns an error only when it
// could not start; what is not ready is in the Report.
func Run(ctx context.Context, o Options) (*Report, error) {
	o = withDefaults(o)
	start := o.Now()
	rep := &Report{Tenants: make([]TenantResult, len(o.Inventory.Tenants))}
	var wg sync.WaitGroup
	sem := make(chan struct{}, o.Concurrency)
	for i, t := range o.Inventory.Tenants {
		rep.Tenants[i] = TenantResult{Tenant: t.Name}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				rep.Tenants[i].PassedOver, rep.Tenants[i].Notes = []Sample{}, []string{}
				rep.Tenants[i].Why = []string{"not checked: interrupted"}
				return
			}
			rep.Tenants[i] = checkTenant(ctx, o, t)
		}()
	}
	wg.Wait()
	rep.Store = checkStore(o.StorePath, rep.Tenants, o.FreeSpace)
	rep.Interrupted = ctx.Err() != nil
	rep.Elapsed = o.Now().Sub(start)
	return rep, nil
}

func withDefaults(o Options) Options {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = snapshot.DefaultMaxBytes
	}
	if o.Redactor == nil {
		o.Redactor = secret.NewRedactor()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.FreeSpace == nil {
		o.FreeSpace = freeSpace
	}
	return o
}

// checkTenant runs one tenant's checks in order: each needs the one before
// (no sample without a listing to pick it from).
func checkTenant(ctx context.Context, o Options, t inventory.Tenant) TenantResult {
	res := TenantResult{Tenant: t.Name, PassedOver: []Sample{}, Why: []string{}, Notes: []string{}}
	why := func(format string, args ...any) {
		res.Why = append(res.Why, o.Redactor.Redact(fmt.Sprintf(format, args...)))
	}
	chain, chainErr := snapshot.Chain(o.Inventory, t, o.MaxBytes, o.HTTPClient)
	if chainErr == nil {
		res.Rate = configuredRate(chain)
	}
	if followsLinks(t) {
		res.Notes = append(res.Notes, "an exec collector reads with cat, which follows a config.yaml made a symbolic link, as root in the container, to a secret or a process's environment: "+
			"read with dd if=/configs/config.yaml iflag=nofollow status=none (README, The collectors)")
	}

	rows := checkDB(ctx, o, t, &res)
	switch {
	case !res.DB.Reachable:
		why("database: %s", res.DB.Error)
	case !res.Grants.OK:
		w := fmt.Sprintf("role %s lacks %s", res.DB.Role, strings.Join(res.Grants.Missing, " and "))
		if res.Grants.Fix != "" {
			w += " (" + res.Grants.Fix + ")"
		}
		why("%s", w)
	case !res.DB.ReadOnlyListing:
		why("READ ONLY listing failed: %s", res.DB.Error)
	}
	if chainErr != nil {
		why("collector: %v", chainErr)
	}
	if len(res.Why) == 0 && len(rows) == 0 {
		res.Notes = append(res.Notes, "no live workspaces: nothing to snapshot")
	}
	if len(res.Why) == 0 && len(rows) > 0 {
		sample(ctx, o, t, chain, rows, &res)
	}
	checkRate(&res)
	if ctx.Err() != nil && len(res.Why) == 0 {
		res.Why = append(res.Why, "interrupted")
	}
	res.Ready = len(res.Why) == 0
	lvl := slog.LevelInfo
	if !res.Ready {
		lvl = slog.LevelWarn
	}
	o.Logger.Log(ctx, lvl, "tenant checked", "tenant", t.Name, "ready", res.Ready, "why", strings.Join(res.Why, "; "))
	return res
}

// followsLinks reports whether one of the tenant's exec collectors runs
// cat (as the README once recommended: docker exec … cat …), which follows
// a symbolic link where dd iflag=nofollow refuses it.
func followsLinks(t inventory.Tenant) bool {
	_, raw := t.Collectors()
	for _, c := range raw {
		for _, a := range c.Argv {
			if path.Base(a) == "cat" {
				return true
			}
		}
	}
	return false
}

// checkDB connects as the inventory's role, reads its grants and lists the
// live workspaces in one READ ONLY transaction of a read-only session,
// exactly the listing a snapshot makes; the listing runs only when the
// grants allow it, so a missing grant is reported as such.
func checkDB(ctx context.Context, o Options, t inventory.Tenant, res *TenantResult) []workspace.Row {
	dctx, cancel := context.WithTimeout(ctx, 3*o.Timeout)
	defer cancel()
	conn, err := tenantdb.Connect(dctx, t.DSN, tenantdb.Options{ConnectTimeout: o.Timeout, ReadOnly: true})
	if err != nil {
		res.DB.Error = o.Redactor.Redact(err.Error())
		return nil
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res.DB.Reachable = true
	var rows []workspace.Row
	err = tenantdb.ReadOnly(dctx, conn, func(tx pgx.Tx) error {
		if err := tx.QueryRow(dctx, "SELECT current_database()").Scan(&res.DB.Database); err != nil {
			return err
		}
		a, err := tenantdb.CheckAccess(dctx, tx)
		if err != nil {
			return err
		}
		res.DB.Role = a.Role
		res.Grants = Grants{Checked: true, OK: a.OK(), Missing: a.Missing(), Fix: a.Fix()}
		if res.Grants.Missing == nil {
			res.Grants.Missing = []string{}
		}
		if !a.OK() {
			return nil
		}
		if !a.ReadOnly {
			// Cannot happen through tenantdb.ReadOnly; checked because the
			// promise is that preflight writes nothing.
			return fmt.Errorf("the transaction is not read-only")
		}
		if rows, err = tenantdb.LiveRows(dctx, tx); err != nil {
			return err
		}
		res.DB.ReadOnlyListing = true
		return nil
	})
	if err != nil {
		res.DB.Error = o.Redactor.Redact(err.Error())
	}
	res.Live = len(rows)
	for _, r := range rows {
		if r.Template == "" {
			res.EmptyTemplate++
		}
	}
	return rows
}

// MaxSamples bounds the workspaces read for one tenant. One workspace can
// lack evidence on its own (a running container without a config.yaml, a
// paused workspace with nothing left to read) while the tenant is fine;
// a few samples tell that apart from a collector that reaches nothing,
// for three requests each.
const MaxSamples = 3

// candidates orders the rows for sampling: an empty template first (the
// rows the snapshot exists for, and captures first), then online, whose
// answer says the most about the collector; otherwise by id, as listed, so
// the choice is the same from run to run.
func candidates(rows []workspace.Row) []workspace.Row {
	score := func(r workspace.Row) int {
		s := 0
		if r.Template == "" {
			s += 2
		}
		if r.Status == "online" {
			s++
		}
		return s
	}
	out := slices.Clone(rows)
	slices.SortStableFunc(out, func(a, b workspace.Row) int { return score(b) - score(a) })
	return out[:min(len(out), MaxSamples)]
}

// sample reads candidates in turn until one is captured from an evidence
// source, or the tenant's collector shows it is misconfigured or rate
// limited. Samples passed over are kept, and named in a note when another
// was captured: the snapshot will record them so too.
func sample(ctx context.Context, o Options, t inventory.Tenant, chain []*collector.Collector, rows []workspace.Row, res *TenantResult) {
	shared := snapshot.SharedInstances(rows)
	if len(shared) > 0 {
		ids := slices.Sorted(maps.Keys(shared))
		n := 0
		for _, r := range rows {
			if shared[r.Instance()] {
				n++
			}
		}
		res.Notes = append(res.Notes, fmt.Sprintf("%d live workspaces share an instance_id with another (%s): the snapshot fails their captures that read by it", n, strings.Join(ids, ", ")))
	}
	for _, row := range candidates(rows) {
		s, stop := sampleChain(ctx, o, t, chain, row, shared, res)
		if res.Sample != nil {
			res.PassedOver = append(res.PassedOver, *res.Sample)
		}
		res.Sample = s
		if stop || s.Evidence || ctx.Err() != nil {
			break
		}
	}
	s := res.Sample
	switch {
	case res.Rate.Throttled || (res.Misconfigured != "" && !s.Evidence):
		// Said already.
	case ctx.Err() != nil:
		res.Why = append(res.Why, "interrupted before a sample was read")
	case !s.Evidence:
		var all []string
		gone := true
		for _, p := range append(slices.Clone(res.PassedOver), *s) {
			all = append(all, p.describe())
			gone = gone && p.Outcome == string(collector.Gone)
		}
		w := fmt.Sprintf("no sample captured from an evidence source: %s", strings.Join(all, "; "))
		if gone {
			// The snapshot reads a 404 for a live row as gone only once an
			// answer has shown the collector reaches the tenant's
			// workspaces; none did here.
			w += "; the database lists them live: the collector may reach another tenant's server (check base_url)"
		}
		res.Why = append(res.Why, w)
	default:
		if res.Misconfigured != "" {
			res.Notes = append(res.Notes, fmt.Sprintf("sample captured by %s after a collector of the chain was refused for the tenant: a snapshot leaves that one out and captures through the chain's others, but the credential still wants mending", s.Method))
		}
		for _, a := range s.Attempts[:len(s.Attempts)-1] {
			if a.notFound && a.Outcome == string(collector.Gone) {
				res.Notes = append(res.Notes, fmt.Sprintf("%s answered 404 for a workspace the database lists live and %s then captured: it may reach another tenant's server (check base_url); when a snapshot's first %d answers from it are such 404s (fewer for a tenant with fewer workspaces), it leaves it out for the tenant",
					a.Method, s.Method, snapshot.DefaultMisconfiguredAfter))
			}
		}
		for _, p := range res.PassedOver {
			res.Notes = append(res.Notes, "passed over "+p.describe())
		}
		if len(s.Attempts) > 1 && res.Misconfigured == "" {
			parts := make([]string, 0, len(s.Attempts)-1)
			for _, a := range s.Attempts[:len(s.Attempts)-1] {
				parts = append(parts, a.Method+": "+a.Outcome)
			}
			res.Notes = append(res.Notes, fmt.Sprintf("sample captured by %s after %s", s.Method, strings.Join(parts, ", ")))
		}
		if s.Source == source.HostMirror {
			res.Notes = append(res.Notes, "sample answered from the host mirror: the config the workspace was last provisioned with, not its running container")
		}
	}
}

// describe is a sample not captured, for a reason or a note: each
// collector tried with its outcome and reason.
func (s Sample) describe() string {
	parts := make([]string, len(s.Attempts))
	for i, a := range s.Attempts {
		parts[i] = a.Method + ": " + a.Outcome
		if a.Reason != "" {
			parts[i] += ": " + a.Reason
		}
	}
	return fmt.Sprintf("sample %s (status %s): %s", s.WorkspaceID, s.Status, strings.Join(parts, "; "))
}

// sampleChain reads one workspace through the chain as a snapshot would
// (each collector in turn until one captures evidence; a tenant-level
// error stops it), but records nothing and never waits out a 429: the
// answer is the check. A transient failure is tried once more at once.
// stop reports an answer about the whole tenant (misconfigured, rate
// limited), after which no other workspace is read; a misconfigured
// collector is reported and the chain's others still read the sample.
func sampleChain(ctx context.Context, o Options, t inventory.Tenant, chain []*collector.Collector, row workspace.Row, shared map[string]bool, res *TenantResult) (_ *Sample, stop bool) {
	s := &Sample{WorkspaceID: row.ID, Status: row.Status, Template: row.Template, Attempts: []Attempt{}}
	v := snapshot.Values(t.Name, row)
	v.InstanceShared = shared[v.InstanceID]
	redact := o.Redactor.Redact
	for _, col := range chain {
		var r collector.Result
		for try := 0; try < 2 && ctx.Err() == nil; try++ {
			r = col.CollectWithin(ctx, v, o.Timeout)
			if r.Outcome != collector.Failed || !r.Transient || r.Throttled {
				break
			}
		}
		if r.Outcome == "" {
			break // interrupted before the first attempt
		}
		s.Attempts = append(s.Attempts, Attempt{Method: col.Method(), Outcome: string(r.Outcome), Source: r.Source,
			Reason: redact(r.Reason), Target: redact(r.Target), notFound: r.NotFound})
		s.Method, s.Outcome, s.Source = col.Method(), string(r.Outcome), r.Source
		s.Evidence = r.Outcome == collector.Captured && source.Evidence(r.Source)
		s.Size = len(r.Content)
		readRateHeaders(r.Provenance, &res.Rate)
		if r.Throttled {
			res.Rate.Throttled = true
			res.Why = append(res.Why, redact(fmt.Sprintf("rate limited now: %s: the org's window is used up (a snapshot would wait it out); run preflight again",
				r.Reason)))
			return s, true
		}
		if r.TenantError != "" {
			// The snapshot leaves such a collector out for the tenant and
			// goes on with the chain's others: so does the sample, to
			// tell whether they would capture.
			why := redact(r.TenantError)
			if len(chain) > 1 {
				why = col.Method() + ": " + why
			}
			if res.Misconfigured == "" {
				res.Misconfigured = why
			} else {
				res.Misconfigured += "; " + why
			}
			res.Why = append(res.Why, why)
			stop = true
			continue
		}
		if s.Evidence {
			break
		}
	}
	return s, stop
}

// configuredRate is the chain's pace, as the snapshot will hold the tenant
// to it.
func configuredRate(chain []*collector.Collector) Rate {
	r := Rate{PerSecond: snapshot.ChainRate(chain)}
	if r.PerSecond > 0 {
		r.PerMinute = r.PerSecond * 60
		r.Limit, r.LimitFrom = PlatformLimit, "platform"
	}
	return r
}

// readRateHeaders keeps the rate-limit headers an answer sent (collector
// provenance keeps them, from files_api's read or any error answer).
func readRateHeaders(p map[string]string, r *Rate) {
	if v, ok := p["header.X-RateLimit-Limit"]; ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			r.Limit, r.LimitFrom = n, "header"
		} else if strings.EqualFold(strings.TrimSpace(v), "unlimited") {
			// The platform in its dev mode does not limit.
			r.Limit, r.LimitFrom = 0, "unlimited"
		}
	}
	if n, ok := headerInt(p, "header.X-RateLimit-Remaining"); ok {
		r.Remaining = &n
	}
	if n, ok := headerInt(p, "header.X-RateLimit-Reset"); ok {
		r.ResetSeconds = &n
	}
}

func headerInt(p map[string]string, k string) (int, bool) {
	v, ok := p[k]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	return n, err == nil && n >= 0
}

// checkRate holds the configured rate against the platform's limit. The
// limit is per org and shared with the org's own users: a rate above it
// alone means the snapshot spends the wave waiting out 429s. A window
// nearly used up by others is noted, not refused: the snapshot waits it
// out, and it resets within the minute.
func checkRate(res *TenantResult) {
	r := &res.Rate
	if r.PerSecond == 0 || r.LimitFrom == "unlimited" {
		return
	}
	if r.PerMinute > float64(r.Limit) {
		res.Why = append(res.Why, fmt.Sprintf("rate %g/s is %g requests a minute, above the platform's %d a minute per org (shared with the org's own users): lower the files_api rate (the default, %g/s, is 80%% of 600)",
			r.PerSecond, r.PerMinute, r.Limit, collector.DefaultRate))
		return
	}
	if r.Remaining != nil && r.ResetSeconds != nil && !r.Throttled {
		need := r.PerSecond * float64(*r.ResetSeconds)
		if float64(*r.Remaining) < need {
			res.Notes = append(res.Notes, fmt.Sprintf("the org's window has %d requests left for the next %ds; the snapshot at %g/s would send %.0f: expect 429s, which it waits out",
				*r.Remaining, *r.ResetSeconds, r.PerSecond, need))
		}
	}
}
