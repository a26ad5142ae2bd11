package cli

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply"
	"backfill/internal/evidence"
	"backfill/internal/inventory"
	"backfill/internal/progress"
	"backfill/internal/termsafe"
	"backfill/snapshot"
)

func (r *runner) snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:  "snapshot",
		Usage: "capture every live workspace's config.yaml into the evidence store (phase one)",
		Flags: append(captureFlags(),
			&cli.BoolFlag{Name: "refresh", EnvVars: envVar("refresh"), Usage: "capture again workspaces that already have a capture"},
			&cli.BoolFlag{Name: "allow-gone", EnvVars: envVar("allow-gone"), Usage: "exit 0 when every live workspace is captured or answered gone (for jobs that retry on failure)"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout instead of the summary"},
			&cli.StringSliceFlag{Name: "tenant", EnvVars: envVar("tenant"), Usage: "only tenants matching this glob `PATTERN` (repeatable)"},
			&cli.StringFlag{Name: "shard", EnvVars: envVar("shard"), Usage: "capture only the tenants of shard `K/N` (0 <= K < N); merge the shards' stores with `backfill merge`"},
		),
		Action: r.snapshot,
	}
}

// captureFlags are the flags of every command that captures through the
// snapshot engine (snapshot, audit): one definition, so they cannot drift.
func captureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", Required: true, EnvVars: envVar("inventory"), Usage: "inventory `FILE`"},
		// Captures, not tenants: its own name and variable (--concurrency
		// is still accepted on the command line).
		&cli.IntFlag{Name: "capture-concurrency", Aliases: []string{"concurrency"}, Value: 32, EnvVars: envVar("capture-concurrency"), Usage: "captures in flight across all tenants"},
		&cli.IntFlag{Name: "tenant-concurrency", Value: 64, EnvVars: envVar("tenant-concurrency"), Usage: "tenant databases listed at once"},
		&cli.DurationFlag{Name: "progress-every", Value: 10 * time.Second, EnvVars: envVar("progress-every"), Usage: "without a terminal, log a status line this often"},
		&cli.DurationFlag{Name: "timeout", Value: 10 * time.Second, EnvVars: envVar("timeout"), Usage: "per-capture timeout"},
		&cli.IntFlag{Name: "retries", Value: 2, EnvVars: envVar("retries"), Usage: "retries of a transient failure"},
		sizeFlag("max-bytes", 1<<20, "size cap per config; larger is failed: too large"),
	}
}

// captureSetup loads the inventory, registering its secrets, and opens
// and locks the store (creating it) for a command that captures.
func (r *runner) captureSetup(c *cli.Context) (*inventory.Inventory, *evidence.Store, error) {
	inv, err := inventory.Load(c.String("inventory"), r.env.LookupEnv)
	if err != nil {
		return nil, nil, fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	store, err := r.openStore(c, true)
	if err != nil {
		return nil, nil, err
	}
	if err := store.Lock(); err != nil {
		store.Close()
		if errors.Is(err, evidence.ErrLocked) {
			return nil, nil, fail("%v: another snapshot, audit or apply is running on this store; wait for it or use another --evidence", err)
		}
		return nil, nil, fail("%v", err)
	}
	return inv, store, nil
}

// Upper bounds of snapshot's sizing flags.
const (
	maxConcurrency  = 4096
	maxCaptureBytes = 1 << 30
)

// checkCaptureFlags bounds captureFlags.
func checkCaptureFlags(c *cli.Context) error {
	if c.Int("capture-concurrency") < 1 || size(c, "max-bytes") < 1 || c.Duration("timeout") <= 0 || c.Int("retries") < 0 {
		return &exitError{ExitUsage, errors.New("--concurrency, --max-bytes and --timeout must be positive, --retries not negative")}
	}
	// Each worker is a goroutine and each capture is held in memory whole:
	// a typo of a few extra digits must be a usage error, not an OOM.
	if c.Int("capture-concurrency") > maxConcurrency || size(c, "max-bytes") > maxCaptureBytes {
		return &exitError{ExitUsage, fmt.Errorf("--concurrency is at most %d and --max-bytes at most %d (1 GiB)", maxConcurrency, maxCaptureBytes)}
	}
	return nil
}

func (r *runner) snapshot(c *cli.Context) error {
	if err := checkCaptureFlags(c); err != nil {
		return err
	}
	var only func(string) bool
	if s := c.String("shard"); s != "" {
		shard, err := snapshot.ParseShard(s)
		if err != nil {
			return &exitError{ExitUsage, err}
		}
		only = shard.Has
	}
	inv, store, err := r.captureSetup(c)
	if err != nil {
		return err
	}
	defer store.Close()
	patterns, err := tenantPatterns(inv, c.StringSlice("tenant"), "--tenant")
	if err != nil {
		return err
	}
	if len(patterns) > 0 {
		shardHas := only
		only = func(t string) bool {
			return apply.MatchTenant(t, patterns) && (shardHas == nil || shardHas(t))
		}
	}

	opts := snapshot.Options{
		Inventory: inv, Store: store, Tenants: only,
		Concurrency: c.Int("capture-concurrency"), TenantConcurrency: c.Int("tenant-concurrency"), Timeout: c.Duration("timeout"), Retries: c.Int("retries"),
		MaxBytes: size(c, "max-bytes"), Refresh: c.Bool("refresh"),
		Logger: r.log, Redactor: r.redactor, Now: r.env.Now,
	}
	sum, runErr := r.runCapture(c, opts)
	if sum != nil && c.Bool("json") {
		doc := snapshotJSON{SchemaVersion: 1, Evidence: store.Path(), Reason: sum.Reason(), Complete: sum.Complete(),
			Tenants: sum.Tenants, Live: sum.Live, Captured: sum.Captured, CapturedEarlier: sum.AlreadyCaptured, CoveredEarlier: sum.CoveredEarlier,
			NotLive: sum.NotLive, NotRunning: sum.NotRunning, Gone: sum.Gone, Failed: sum.Failed, NotAttempted: sum.NotAttempted,
			NotRecorded: sum.NotRecorded, ElapsedSeconds: sum.Elapsed.Seconds(),
			TenantsFailed: sum.TenantsFailed, Failures: sum.Failures}
		if doc.TenantsFailed == nil {
			doc.TenantsFailed = []snapshot.TenantFailure{}
		}
		if doc.Failures == nil {
			doc.Failures = []snapshot.WorkspaceFailure{}
		}
		if err := printJSON(r.env.Stdout, doc); err != nil {
			return err
		}
	} else if sum != nil {
		printSnapshotSummary(r.env.Stdout, sum, store.Path())
	}
	if runErr != nil {
		return fail("%v", runErr)
	}
	if sum.Complete() || c.Bool("allow-gone") && sum.CompleteBut() {
		return nil
	}
	return errPartial
}

// runCapture runs the snapshot engine with the progress line on stderr
// when it is a terminal.
func (r *runner) runCapture(c *cli.Context, opts snapshot.Options) (*snapshot.Summary, error) {
	line := r.progressLine(c)
	window := progress.NewWindow(30 * time.Second)
	status := func(p snapshot.Progress) string {
		rate := window.Add(r.env.Now(), p.Done)
		s := fmt.Sprintf("done %d/%d  captured %d  gone %d  not-live %d  not-running %d  failed %d  %.0f/s",
			p.Done, p.Total, p.Captured, p.Gone, p.NotLive, p.NotRunning, p.Errors, rate)
		// The total still grows while tenants are listed: no ETA yet.
		if p.Listing > 0 {
			s += fmt.Sprintf("  listing %d tenants", p.Listing)
		} else {
			s += "  ETA " + progress.ETA(p.Done, p.Total, rate)
		}
		if p.Throttled > 0 {
			s += fmt.Sprintf("  throttled %d tenants", p.Throttled)
		}
		if p.Stopping {
			s += "  stopping: finishing captures in flight"
		}
		return s
	}
	switch {
	case line != nil:
		r.logTo(line.Writer())
		opts.Logger = r.log
		opts.OnProgress = func(p snapshot.Progress) { line.Draw(status(p)) }
	case !r.quiet(c):
		// No terminal: a status line in the log every --progress-every.
		opts.ProgressEvery = c.Duration("progress-every")
		opts.OnProgress = func(p snapshot.Progress) { r.log.Info("progress", "status", status(p)) }
	}
	sum, err := snapshot.Run(c.Context, opts)
	if line != nil {
		line.Finish() // the summary starts on a line of its own
	}
	return sum, err
}

// maxListed bounds the failures printed; the full list is in `status` and `export`.
const maxListed = 50

func printSnapshotSummary(w io.Writer, s *snapshot.Summary, path string) {
	state := s.Reason()
	if state == "gone" || state == "tenants-failed" {
		state = "incomplete"
	}
	stopped := 0
	for _, t := range s.TenantsFailed {
		if t.Stopped {
			stopped++
		}
	}
	fmt.Fprintf(w, "snapshot %s in %s: %d tenants (%d not listed", state, s.Elapsed.Round(1e6), s.Tenants, len(s.TenantsFailed)-stopped)
	if stopped > 0 {
		fmt.Fprintf(w, ", %d stopped", stopped)
	}
	fmt.Fprintf(w, "), %d live workspaces\n", s.Live)
	fmt.Fprintf(w, "  captured now %d, captured earlier %d, not live %d, not running %d, gone %d, failed %d, not attempted %d",
		s.Captured, s.AlreadyCaptured, s.NotLive, s.NotRunning, s.Gone, s.Failed, s.NotAttempted)
	if s.CoveredEarlier > 0 {
		fmt.Fprintf(w, ", %d of those captured by an earlier run", s.CoveredEarlier)
	}
	if s.NotRecorded > 0 {
		fmt.Fprintf(w, ", not recorded %d (evidence store failure)", s.NotRecorded)
	}
	fmt.Fprintln(w)
	for _, t := range s.TenantsFailed {
		what := "not listed"
		if t.Stopped {
			what = "stopped"
		}
		fmt.Fprintf(w, "  tenant %s %s: %s\n", termsafe.String(t.Tenant), what, oneLine(t.Reason))
	}
	for i, f := range s.Failures {
		if i == maxListed {
			fmt.Fprintf(w, "  ... and %d more (see `backfill status` and `backfill export`)\n", len(s.Failures)-maxListed)
			break
		}
		fmt.Fprintf(w, "  %s %s/%s: %s\n", f.Outcome, termsafe.String(f.Tenant), termsafe.String(f.WorkspaceID), oneLine(f.Reason))
	}
	fmt.Fprintf(w, "evidence: %s\n", path)
}

// snapshotJSON is `snapshot --json`'s document.
type snapshotJSON struct {
	SchemaVersion int    `json:"schema_version"`
	Evidence      string `json:"evidence"`
	// Reason says how the run ended: complete, gone (only workspaces
	// answered gone lack evidence), tenants-failed, interrupted, incomplete.
	Reason          string                      `json:"reason"`
	Complete        bool                        `json:"complete"`
	Tenants         int                         `json:"tenants"`
	Live            int                         `json:"live"`
	Captured        int                         `json:"captured"`
	CapturedEarlier int                         `json:"captured_earlier"`
	CoveredEarlier  int                         `json:"covered_earlier"`
	NotLive         int                         `json:"not_live"`
	NotRunning      int                         `json:"not_running"`
	Gone            int                         `json:"gone"`
	Failed          int                         `json:"failed"`
	NotAttempted    int                         `json:"not_attempted"`
	NotRecorded     int                         `json:"not_recorded"`
	ElapsedSeconds  float64                     `json:"elapsed_seconds"`
	TenantsFailed   []snapshot.TenantFailure    `json:"tenants_failed"`
	Failures        []snapshot.WorkspaceFailure `json:"failures"`
}
