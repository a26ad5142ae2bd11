package plan

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
	"backfill/internal/version"
	"backfill/internal/workspace"
)

// DefaultConcurrency is BuildOptions.Concurrency's default, which the
// command line's flag shows as its own.
const DefaultConcurrency = 64

// BuildOptions are the inputs of a plan.
type BuildOptions struct {
	Inventory   *inventory.Inventory // its Digest is recorded
	Store       *evidence.Store
	CP          *cp.Records
	CPSource    string // shown in the plan; must hold no password
	Catalog     *catalog.Catalog
	CatalogDir  string
	Manifest    string // the manifest file given apart from CatalogDir, if any
	Author      string
	Now         func() time.Time
	Concurrency int // tenants read at once, default DefaultConcurrency
	Logger      *slog.Logger
	// Redact scrubs secrets from a tenant's error before it is written into
	// the plan; nil keeps errors as they are.
	Redact func(string) string
	// AllowMoved names tenants planned even though their DSN now reaches
	// another database than the one their evidence was listed from; the
	// plan records where from (TenantDatabase.MovedFrom).
	AllowMoved map[string]bool
}

// Build reconciles every workspace known from the evidence store or the
// tenant databases and returns the sealed plan and warnings for the
// reviewer. It reads tenant databases in READ ONLY transactions only.
func Build(ctx context.Context, o BuildOptions) (*Plan, []string, error) {
	items := []Item{}
	p, warnings, err := Stream(ctx, o, func(it *Item) error {
		items = append(items, *it)
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	p.Items = items
	p.Seal()
	return p, warnings, nil
}

// Stream is Build handing each item to emit, in plan order, as soon as it
// is made, instead of holding them: the plan it returns has no items, and
// no counts or fingerprint (see Writer). An error from emit stops it.
func Stream(ctx context.Context, o BuildOptions, emit func(*Item) error) (*Plan, []string, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Redact == nil {
		o.Redact = func(s string) string { return s }
	}
	var warnings []string
	inInventory := map[string]bool{}
	for _, t := range o.Inventory.Tenants {
		inInventory[t.Name] = true
	}
	for _, t := range o.CP.Tenants() {
		if !inInventory[t] {
			warnings = append(warnings, fmt.Sprintf("CP records name tenant %q, which is not in the inventory; its claims are unused", t))
		}
	}
	stored, err := o.Store.Tenants(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("read evidence: %w", err)
	}
	for _, t := range stored {
		if inInventory[t] {
			continue
		}
		n, err := knownWorkspaces(ctx, o.Store, t)
		if err != nil {
			return nil, nil, err
		}
		if n > 0 {
			warnings = append(warnings, fmt.Sprintf("the evidence store holds %d workspaces of tenant %q, which is not in the inventory; they are not planned", n, t))
		}
	}

	// The store is verified while the plan is made, on another CPU; no
	// item is worth anything until it has verified (see the end).
	headID, headHash, err := o.Store.Head(ctx, "captures")
	if err != nil {
		return nil, nil, fmt.Errorf("read evidence: %w", err)
	}
	type verified struct {
		rep *evidence.VerifyReport
		err error
	}
	verifying := make(chan verified, 1)
	go func(ctx context.Context) {
		rep, err := o.Store.Verify(ctx)
		verifying <- verified{rep, err}
	}(ctx)
	// Every way out of Stream below waits for the verify: an early error
	// too, so that the store's own state is what a failure reports first,
	// and no read of the store outlives Stream.
	checkVerified := sync.OnceValue(func() error {
		v := <-verifying
		switch {
		case v.err != nil:
			return fmt.Errorf("verify evidence store: %w", v.err)
		case !v.rep.OK():
			return fmt.Errorf("evidence store %s does not verify (%s); run `backfill verify`", o.Store.Path(), v.rep.Problems[0])
		case v.rep.ChainHead != headHash || int64(v.rep.Captures) != headID:
			return fmt.Errorf("evidence store %s: captures were appended while planning; plan again", o.Store.Path())
		}
		return nil
	})
	fail := func(err error) (*Plan, []string, error) {
		if verr := checkVerified(); verr != nil && ctx.Err() == nil {
			return nil, nil, verr // the store's state explains the rest
		}
		return nil, nil, err
	}
	p := &Plan{
		FormatVersion: FormatVersion,
		Author:        o.Author,
		CreatedAt:     o.Now().UTC().Format(time.RFC3339),
		Backfill:      version.Get().Short(),
		Inputs: Inputs{
			Evidence:  EvidenceInput{Path: o.Store.Path(), ChainHead: headHash, Captures: int(headID)},
			Inventory: FileInput{Path: o.Inventory.Path, SHA256: o.Inventory.Digest()},
			CP:        CPInput{Source: o.CPSource, SHA256: o.CP.Digest(), Claims: o.CP.Len()},
			Catalog:   CatalogInput{Path: o.CatalogDir, Manifest: o.Manifest, SHA256: o.Catalog.Digest()},
		},
	}
	// What the store holds of each tenant estimates its rows before it is
	// read, to bound what is read ahead.
	est, err := o.Store.CaptureCounts(ctx)
	if err != nil {
		return fail(fmt.Errorf("read evidence: %w", err))
	}
	ctx, cancel := context.WithCancel(ctx)
	// Once the store verifies, its captures are numbered 1 to headID and
	// headHash is the last of them's.
	tenants := slices.Clone(o.Inventory.Tenants)
	ev := newEvidenceReader(o.Store, o.Catalog, headID)
	ev.whole = deriveStore(ctx, o.Store, o.Catalog, tenants, headID)
	evDone := make(chan struct{})
	readsEnded := func() {}
	defer func() {
		cancel() // stops reading tenants and evidence when the plan fails
		<-ev.whole.done
		<-evDone
		readsEnded()
	}()
	slices.SortFunc(tenants, func(a, b inventory.Tenant) int { return strings.Compare(a.Name, b.Name) })
	// Tenants are read a few at a time ahead of the one being planned, in
	// plan order, so that only those few tenants' rows are held at once.
	var reads []chan tenantRead
	// The database each tenant's evidence was listed from, where its
	// listing names it: a DSN pointed elsewhere since (a restored copy, a
	// clone) must not have the evidence's values written there unseen.
	listed, err := o.Store.ListedDatabases(ctx)
	if err != nil {
		return fail(fmt.Errorf("read evidence: %w", err))
	}
	reads, readsEnded = readTenants(ctx, tenants, o.Concurrency, est)
	evs := readEvidence(ctx, o.Store, ev, tenants, evDone)
	for i, t := range tenants {
		var tr tenantRead
		select {
		case tr = <-reads[i]:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		unreachable := ""
		var from []string // the databases its evidence was listed from, other than this one
		if tr.err == nil {
			from = slices.DeleteFunc(slices.Clone(listed[t.Name]), func(d string) bool { return d == tr.db.Ident() })
		}
		switch {
		case tr.err != nil:
			unreachable = strings.Join(strings.Fields(o.Redact("read workspaces: "+tr.err.Error())), " ") // one line: it is shown in tables and logs
			p.Databases = append(p.Databases, TenantDatabase{Tenant: t.Name, Unreachable: unreachable})
			warnings = append(warnings, fmt.Sprintf("%s:%d: tenant %q: database unreachable, its workspaces are not planned: %s", o.Inventory.Path, t.Line, t.Name, unreachable))
		case len(from) > 0 && !o.AllowMoved[t.Name]:
			unreachable = fmt.Sprintf("moved: its DSN reaches %s, but its evidence was listed from %s (a restored copy, a clone, or a DSN pointed elsewhere); "+
				"plan --allow-moved %s plans it there", tr.db.Ident(), strings.Join(from, "; and "), t.Name)
			p.Databases = append(p.Databases, TenantDatabase{Tenant: t.Name, Unreachable: unreachable})
			warnings = append(warnings, fmt.Sprintf("%s:%d: tenant %q: its workspaces are not planned: %s", o.Inventory.Path, t.Line, t.Name, unreachable))
		case len(from) > 0:
			// The report says so for every reader of the plan (its
			// databases), so this is a log line, not a warning.
			p.Databases = append(p.Databases, TenantDatabase{Tenant: t.Name, Database: tr.db, Target: tenantdb.Target(t.DSN), MovedFrom: from})
			o.Logger.Warn("tenant planned in another database than its evidence was listed from (--allow-moved)", "tenant", t.Name,
				"database", tr.db.Ident(), "listed_from", strings.Join(from, "; and "))
		default:
			p.Databases = append(p.Databases, TenantDatabase{Tenant: t.Name, Database: tr.db, Target: tenantdb.Target(t.DSN)})
		}
		var te tenantEvidence
		select {
		case te = <-evs:
		case <-ctx.Done():
			return fail(ctx.Err())
		}
		if te.err != nil {
			tr.done()
			return fail(te.err)
		}
		if err := planTenant(o, t.Name, te, tr.rows, unreachable, emit); err != nil {
			tr.done()
			return fail(err)
		}
		tr.done()
	}
	if err := checkVerified(); err != nil {
		return nil, nil, err
	}
	sort.Strings(warnings)
	return p, warnings, nil
}

// planTenant appends the items of one tenant, in workspace id order: every
// workspace the evidence store knows of it (from a capture or its latest
// successful listing) and every row of its database not removed, merged by
// workspace id from the three sources, each read in that order.
func planTenant(o BuildOptions, tenant string, te tenantEvidence, rows []workspace.Row, unreachable string, emit func(*Item) error) error {
	caps := te.caps
	var listed []workspace.Row
	if te.listing != nil {
		listed = byID(te.listing.Rows)
	}
	rows = byID(rows)
	for len(caps) > 0 || len(listed) > 0 || len(rows) > 0 {
		// The least id at the head of the three.
		id, found := "", false
		least := func(ok bool, head func() string) {
			if ok && (!found || head() < id) {
				id, found = head(), true
			}
		}
		least(len(caps) > 0, func() string { return caps[0].id })
		least(len(listed) > 0, func() string { return listed[0].ID })
		least(len(rows) > 0, func() string { return rows[0].ID })
		var w wsEvidence
		var seen, now *workspace.Row
		if len(caps) > 0 && caps[0].id == id {
			w, caps = caps[0], caps[1:]
			seen = &w.row
		}
		if len(listed) > 0 && listed[0].ID == id {
			seen, listed = &listed[0], listed[1:]
		}
		if len(rows) > 0 && rows[0].ID == id {
			now, rows = &rows[0], rows[1:]
		}
		if seen == nil {
			if now.Status == "removed" {
				continue
			}
			seen = now
		}
		k := evidence.Key{Tenant: tenant, WorkspaceID: id}
		tpls, level, sources := o.CP.For(k.Tenant, k.WorkspaceID)
		claim := cpClaim{Templates: tpls, Level: level, Sources: sources}
		d := reconcile(reconcileInput{Captures: w.upTo, Claim: claim, Row: now, Catalog: o.Catalog, Unreachable: unreachable,
			NotEvidence: w.notEvidence})
		it := makeItem(k, seen, now, w.upTo, claim, d)
		if err := emit(&it); err != nil {
			return err
		}
	}
	return nil
}

// byID sorts rows by id in Go's order (the plan's, whatever collation the
// database sorted with) and keeps the last of rows with the same id.
func byID(rows []workspace.Row) []workspace.Row {
	slices.SortStableFunc(rows, func(a, b workspace.Row) int { return strings.Compare(a.ID, b.ID) })
	out := rows[:0]
	for _, r := range rows {
		if len(out) > 0 && out[len(out)-1].ID == r.ID {
			out[len(out)-1] = r
			continue
		}
		out = append(out, r)
	}
	return out
}

// knownWorkspaces counts the workspaces the evidence store knows of one
// tenant: those with a capture or in its latest successful listing.
func knownWorkspaces(ctx context.Context, s *evidence.Store, tenant string) (int, error) {
	ids := map[string]bool{}
	err := s.TenantCaptures(ctx, tenant, func(c *evidence.Capture) error {
		ids[c.WorkspaceID] = true
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("read evidence: %w", err)
	}
	l, err := s.LatestListing(ctx, tenant)
	if err != nil {
		return 0, err
	}
	if l != nil {
		for _, r := range l.Rows {
			ids[r.ID] = true
		}
	}
	return len(ids), nil
}

func makeItem(k evidence.Key, seen, now *workspace.Row, caps []captured, claim cpClaim, d decision) Item {
	it := Item{Tenant: k.Tenant, WorkspaceID: k.WorkspaceID, Verdict: d.Verdict, Reason: d.Reason, Notes: d.Notes, Drift: d.Drift}
	row := seen
	if now != nil {
		row = now
		it.DBTemplate, it.DBStatus = now.Template, now.Status
	}
	it.WorkspaceName, it.Kind, it.Runtime = row.Name, row.Kind, row.Runtime
	it.Provisioning = provisioningOf(row)
	if len(caps) > 0 {
		e := caps[0]
		it.Evidence = &ItemEvidence{CaptureID: e.CaptureID, SHA256: e.SHA256, CapturedAt: e.CapturedAt.UTC().Format(time.RFC3339Nano),
			Template: e.Identity.Template, Rule: string(e.Identity.Rule), Captures: len(caps), Source: e.Source}
		if r := e.Identity.Resemblance; r != (identity.Resemblance{}) {
			it.Evidence.Resemblance = &r
		}
	}
	if len(claim.Templates) > 0 {
		it.CP = &ItemCP{Templates: claim.Templates, Level: claim.Level, Sources: claim.Sources}
	}
	if d.Verdict == Agree {
		it.Action = &Action{SetTemplate: d.Set, ExpectCurrent: ""}
	}
	return it
}

// tenantEvidence is what the evidence store holds of one tenant: its
// workspaces' captures and its latest successful listing.
type tenantEvidence struct {
	caps    []wsEvidence
	listing *evidence.Listing
	err     error
}

// readEvidence reads each tenant's evidence in turn, in plan order, on its
// own goroutine: the next tenant's captures are read while the one before
// is reconciled and written. At most one tenant's evidence waits to be
// taken. done is closed when it stops.
func readEvidence(ctx context.Context, s *evidence.Store, ev *evidenceReader, tenants []inventory.Tenant, done chan<- struct{}) <-chan tenantEvidence {
	out := make(chan tenantEvidence, 1)
	go func() {
		defer close(done)
		for _, t := range tenants {
			var te tenantEvidence
			te.caps, te.err = ev.tenant(ctx, t.Name, nil)
			if te.err == nil {
				te.listing, te.err = s.LatestListing(ctx, t.Name)
			}
			select {
			case out <- te:
			case <-ctx.Done():
				return
			}
			if te.err != nil {
				return
			}
		}
	}()
	return out
}

// tenantRead is one tenant's rows as they are now and the database its
// DSN reached, or why they could not be read (not redacted yet, never
// holding the DSN).
type tenantRead struct {
	rows []workspace.Row
	db   tenantdb.Database
	err  error
	done func() // the tenant is planned: another may be read
}

// readTenants reads tenants' rows in order: the i-th channel gives the
// i-th tenant's. A tenant is read only while fewer than conc are read and
// not yet planned and, past the first of those, their rows (estimated
// from est until read) stay within readAheadRows, so that a slow plan, or
// a fleet of large tenants, does not hold every tenant's rows at once. A
// tenant that cannot be read is planned unreachable and the others go on.
// wait returns once every read has ended; cancel ctx first to end them
// early (a plan that failed or was interrupted leaves no session open).
func readTenants(ctx context.Context, tenants []inventory.Tenant, conc int, est map[string]int) (reads []chan tenantRead, wait func()) {
	out := make([]chan tenantRead, len(tenants))
	for i := range out {
		out[i] = make(chan tenantRead, 1)
	}
	h := newHolding(conc, readAheadRows)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, t := range tenants {
			guess := est[t.Name]
			if !h.acquire(ctx, guess) {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Timeouts, so a tenant stuck behind a migration's lock is
				// reported with its name instead of hanging the plan; a
				// session cut or refused before it started is tried again,
				// as apply does, rather than leaving the tenant unplanned.
				rows, db, err := tenantdb.ListAllIdentified(ctx, t.DSN, tenantdb.Options{LockTimeout: 10 * time.Second, StatementTimeout: time.Minute,
					ConnectAttempts: connectAttempts})
				h.settle(guess, len(rows))
				out[i] <- tenantRead{rows: rows, db: db, err: err, done: sync.OnceFunc(func() { h.release(len(rows)) })}
			}()
		}
	}()
	return out, wg.Wait
}

// connectAttempts is how many times a tenant's session is tried when it
// fails before it started (nothing was sent: safe to try again).
const connectAttempts = 3

// readAheadRows bounds the rows readTenants holds ahead of the tenant
// being planned (a few MB), whatever --tenant-concurrency allows: a fleet of
// many small tenants is still read conc at a time.
const readAheadRows = 20000

// holding counts the tenants read or being read and not yet planned, and
// their rows.
type holding struct {
	mu            sync.Mutex
	changed       chan struct{} // closed and replaced whenever the counts fall
	n, rows       int
	conc, maxRows int
}

func newHolding(conc, maxRows int) *holding {
	return &holding{changed: make(chan struct{}), conc: conc, maxRows: maxRows}
}

// acquire waits until a tenant of about rows rows may be read: fewer than
// conc held, and the rows within maxRows unless nothing is held. False
// when ctx ends first.
func (h *holding) acquire(ctx context.Context, rows int) bool {
	for {
		h.mu.Lock()
		if h.n < h.conc && (h.n == 0 || h.rows+rows <= h.maxRows) {
			h.n++
			h.rows += rows
			h.mu.Unlock()
			return true
		}
		wait := h.changed
		h.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return false
		}
	}
}

// settle replaces a tenant's estimate with the rows it has.
func (h *holding) settle(estimate, rows int) { h.update(0, rows-estimate) }

// release gives back a planned tenant of rows rows.
func (h *holding) release(rows int) { h.update(-1, -rows) }

func (h *holding) update(dn, drows int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n += dn
	h.rows += drows
	close(h.changed)
	h.changed = make(chan struct{})
}

// Provisioning classes of a workspace.
const (
	hosted     = "hosted"      // instance_id set: the control plane provisions it
	selfHosted = "self-hosted" // instance_id NULL: the tenant's own server runs ws-<id>
)

// provisioningOf classifies a row by its instance_id.
func provisioningOf(r *workspace.Row) string {
	if r.InstanceID != nil && *r.InstanceID != "" {
		return hosted
	}
	return selfHosted
}
