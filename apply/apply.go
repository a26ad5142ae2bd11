package apply

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"backfill/apply/plan"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/secret"
	"backfill/internal/sshsig"
)

// Outcomes of apply and rollback, as journaled and printed.
const (
	Applied           = evidence.Applied
	AlreadyApplied    = evidence.AlreadyApplied
	SkippedChanged    = "skipped-changed"
	SkippedRemoved    = "skipped-removed"
	Failed            = "failed"
	Committing        = evidence.Committing // journaled just before COMMIT by apply and rollback; a crash leaves it as the trace of the write
	WouldWrite        = "would-write"
	RolledBack        = evidence.RolledBack
	AlreadyRolledBack = evidence.AlreadyRolledBack
	WouldRollBack     = "would-roll-back"
)

// Defaults of Options, which the command line's flags show as theirs.
const (
	// DefaultConcurrency is sized for hundreds of remote tenants, each a
	// handful of round trips; tenant databases sharing one server need it
	// below that server's max_connections.
	DefaultConcurrency      = 128
	DefaultLockTimeout      = 2 * time.Second
	DefaultStatementTimeout = 30 * time.Second
)

// Options configure apply and rollback.
type Options struct {
	Plan      *plan.Plan
	Inventory *inventory.Inventory
	Store     *evidence.Store
	// Catalog is the plan's catalog (the same digest), against which every
	// agree item is derived again before any tenant is touched.
	Catalog *catalog.Catalog
	// CP, when set, are the plan's CP records given again: their digest and
	// every agree item's claim are checked too.
	CP *cp.Records
	// AllowMoved names tenants whose DSN may reach another database than
	// the one the plan read.
	AllowMoved map[string]bool
	// AllowedSigners, when set, makes --execute require an approval signed
	// by a listed principal other than the plan's author.
	AllowedSigners *sshsig.AllowedSigners
	Execute        bool
	Canary         int // apply to the first N tenants in plan order only, then read back
	// CanaryTenants names tenants to apply to (and read back) as the
	// canary, instead of the first Canary ones.
	CanaryTenants []string
	// Tenants, when set, limits the run to tenants matching one of these
	// glob patterns (path.Match); the journal records only the rows
	// touched, so a later run without them finishes the rest.
	Tenants          []string
	Concurrency      int           // tenants at once, default DefaultConcurrency
	LockTimeout      time.Duration // default DefaultLockTimeout
	StatementTimeout time.Duration // default DefaultStatementTimeout
	Operator         string
	Now              func() time.Time
	Logger           *slog.Logger
	Redactor         *secret.Redactor
}

// Result is what happened to one workspace.
type Result struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Name        string `json:"name"`
	Before      string `json:"before"`
	After       string `json:"after"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason,omitempty"`
}

// TenantReport is one tenant's results.
type TenantReport struct {
	Tenant   string
	Results  []Result
	Err      string   // why the tenant failed as a whole, if it did
	Readback []Result // canary: every written row read back
}

// Report is the outcome of a run.
type Report struct {
	Execute bool
	Tenants []TenantReport
	Counts  map[string]int
	// EarlierRollbacks counts, for rollback, the plan's writes an earlier
	// rollback already undid; they are not touched again.
	EarlierRollbacks int
	// Superseded counts, for rollback, the plan's writes that were undone
	// and then written by another plan; they are that plan's to undo.
	Superseded int
}

// Complete reports whether every action ended applied or already applied
// (rolled back or already rolled back, for rollback), every outcome was
// journaled, and every canary row read back as planned.
func (r *Report) Complete() bool {
	for _, t := range r.Tenants {
		if t.Err != "" {
			return false
		}
		for _, rb := range t.Readback {
			if rb.Outcome != "ok" {
				return false
			}
		}
	}
	for k, n := range r.Counts {
		switch k {
		case Applied, AlreadyApplied, RolledBack, AlreadyRolledBack, WouldWrite, WouldRollBack:
		default:
			if n > 0 {
				return false
			}
		}
	}
	return true
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// Apply writes the plan's agreed values (or, without Execute, reports what
// it would write). With Execute it runs the whole gate first, whatever the
// caller did.
func Apply(ctx context.Context, o Options) (*Report, error) { return applying.run(ctx, o) }

// Rollback undoes the plan's writes with the inverse compare-and-swap: a row
// is emptied only while it still holds the value apply wrote.
func Rollback(ctx context.Context, o Options) (*Report, error) { return rollingBack.run(ctx, o) }

// ErrNothingApplied is returned by Rollback when the journal leaves it
// nothing to undo: the plan wrote nothing, or all it wrote was rolled back
// already or written over by another plan since.
var ErrNothingApplied = errors.New("nothing left to roll back")

// ErrAllUndone is returned with ErrNothingApplied when every write of the
// plan was undone by an earlier rollback or written over by another plan
// since: a rollback run again, which has nothing more to do.
var ErrAllUndone = errors.New("every write of the plan is undone or written over already")
