package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/internal/collector"
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
		Action: func(c *cli.Context) error {
			return r.runSnapshot(c.Context, snapshotOptions{
				capture: readCaptureOptions(c), refresh: c.Bool("refresh"), allowGone: c.Bool("allow-gone"), json: c.Bool("json"),
				tenants: c.StringSlice("tenant"), shard: c.String("shard"),
			})
		},
	}
}

// snapshotOptions are snapshot's flags.
type snapshotOptions struct {
	capture            captureOptions
	refresh, allowGone bool
	json               bool
	tenants            []string
	shard              string
}

// progressLogEvery is --progress-every's default: how often a run without
// a terminal logs its status line.
const progressLogEvery = 10 * time.Second

// captureFlags are the flags of every command that captures through the
// snapshot engine (snapshot, audit): one definition, so they cannot drift.
func captureFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "inventory", Required: true, EnvVars: envVar("inventory"), Usage: "inventory `FILE`"},
		// Captures, not tenants: its own name and variable (--concurrency
		// is still accepted on the command line).
		&cli.IntFlag{Name: "capture-concurrency", Aliases: []string{"concurrency"}, Value: snapshot.DefaultConcurrency, EnvVars: envVar("capture-concurrency"), Usage: "captures in flight across all tenants"},
		&cli.IntFlag{Name: "tenant-concurrency", Value: snapshot.DefaultTenantConcurrency, EnvVars: envVar("tenant-concurrency"), Usage: "tenant databases listed at once"},
		&cli.DurationFlag{Name: "progress-every", Value: progressLogEvery, EnvVars: envVar("progress-every"), Usage: "without a terminal, log a status line this often"},
		timeoutFlag(snapshot.DefaultTimeout, "per-capture timeout"),
		&cli.IntFlag{Name: "retries", Value: snapshot.DefaultRetries, EnvVars: envVar("retries"), Usage: "retries of a transient failure"},
		maxBytesFlag("size cap per config; larger is failed: too large"),
		proxyFlag(),
	}
}

// proxyFlag is --proxy-from-env, shared by the commands that read through
// collectors. Command line only: without it no HTTP_PROXY or HTTPS_PROXY
// in the environment can route the collectors' requests, tokens and all,
// through a proxy whose answers would be stored as evidence.
func proxyFlag() cli.Flag {
	return &cli.BoolFlag{Name: "proxy-from-env", Usage: "send the http and files_api collectors' requests through the proxy HTTPS_PROXY or HTTP_PROXY names (NO_PROXY honoured); without it they go straight to their hosts (command line only)"}
}

// httpClient is the collectors' HTTP client --proxy-from-env chooses (nil:
// the collectors' default, straight to the hosts).
func httpClient(proxyFromEnv bool) *http.Client {
	if proxyFromEnv {
		return collector.ProxyClient()
	}
	return nil
}

// timeoutFlag is --timeout, shared by the commands that read through
// collectors (snapshot, audit, preflight), each saying what it bounds.
func timeoutFlag(def time.Duration, usage string) cli.Flag {
	return &cli.DurationFlag{Name: "timeout", Value: def, EnvVars: envVar("timeout"), Usage: usage}
}

// maxBytesFlag is --max-bytes, the size cap of a read through a
// collector: snapshot's, audit's and preflight's.
func maxBytesFlag(usage string) cli.Flag {
	return sizeFlag("max-bytes", snapshot.DefaultMaxBytes, usage)
}

// captureOptions are captureFlags' values.
type captureOptions struct {
	inventory                      string
	concurrency, tenantConcurrency int
	progressEvery, timeout         time.Duration
	retries                        int
	maxBytes                       int64
	proxyFromEnv                   bool
}

func readCaptureOptions(c *cli.Context) captureOptions {
	return captureOptions{
		inventory: c.String("inventory"), concurrency: c.Int("capture-concurrency"), tenantConcurrency: c.Int("tenant-concurrency"),
		progressEvery: c.Duration("progress-every"), timeout: c.Duration("timeout"), retries: c.Int("retries"), maxBytes: size(c, "max-bytes"),
		proxyFromEnv: c.Bool("proxy-from-env"),
	}
}

// engine is the snapshot engine's options these flags set; the caller
// adds the rest.
func (o captureOptions) engine() snapshot.Options {
	return snapshot.Options{Concurrency: o.concurrency, TenantConcurrency: o.tenantConcurrency, Timeout: o.timeout, Retries: o.retries, MaxBytes: o.maxBytes,
		HTTPClient: httpClient(o.proxyFromEnv)}
}

// captureSetup loads the inventory, registering its secrets, checks the
// --tenant patterns against it, and opens and locks the store (creating it)
// for a command that captures: bad input creates no store.
func (r *runner) captureSetup(ctx context.Context, o captureOptions, tenants []string) (*inventory.Inventory, *evidence.Store, error) {
	inv, err := inventory.Load(o.inventory, r.env.LookupEnv)
	if err != nil {
		return nil, nil, fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	if _, err := tenantPatterns(inv, tenants, "--tenant"); err != nil {
		return nil, nil, err
	}
	store, err := r.openStore(ctx, true)
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

// check bounds captureFlags.
func (o captureOptions) check() error {
	if o.concurrency < 1 || o.maxBytes < 1 || o.timeout <= 0 || o.retries < 0 {
		return &exitError{ExitUsage, errors.New("--concurrency, --max-bytes and --timeout must be positive, --retries not negative")}
	}
	return checkUpperBounds("--concurrency", o.concurrency, o.maxBytes)
}

// checkUpperBounds refuses sizes no run needs. Each worker is a goroutine
// and each read is held in memory whole: a typo of a few extra digits must
// be a usage error, not an OOM.
func checkUpperBounds(concurrencyFlag string, concurrency int, maxBytes int64) error {
	if concurrency > maxConcurrency || maxBytes > maxCaptureBytes {
		return &exitError{ExitUsage, fmt.Errorf("%s is at most %d and --max-bytes at most %d (1 GiB)", concurrencyFlag, maxConcurrency, maxCaptureBytes)}
	}
	return nil
}

func (r *runner) runSnapshot(ctx context.Context, o snapshotOptions) error {
	if err := o.capture.check(); err != nil {
		return err
	}
	var only func(string) bool
	if o.shard != "" {
		shard, err := snapshot.ParseShard(o.shard)
		if err != nil {
			return &exitError{ExitUsage, err}
		}
		only = shard.Has
	}
	inv, store, err := r.captureSetup(ctx, o.capture, o.tenants)
	if err != nil {
		return err
	}
	defer store.Close()
	if patterns := o.tenants; len(patterns) > 0 {
		shardHas := only
		only = func(t string) bool {
			return inventory.MatchTenant(t, patterns) && (shardHas == nil || shardHas(t))
		}
	}
	scope := r.snapshotScope(o, inv, only)
	if scope != nil {
		// A selection left in the environment must not pass for the fleet.
		r.log.Warn("capturing part of the inventory", "scope", scope.String())
	}

	opts := o.capture.engine()
	opts.Inventory, opts.Store, opts.Tenants, opts.Refresh = inv, store, only, o.refresh
	opts.Logger, opts.Redactor, opts.Now = r.log, r.redactor, r.env.Now
	sum, runErr := r.runCapture(ctx, opts, o.capture.progressEvery)
	if sum != nil && o.json {
		doc := snapshotJSON{SchemaVersion: 1, Evidence: store.Path(), Reason: sum.Reason(), Complete: sum.Complete(),
			Tenants: sum.Tenants, Live: sum.Live, Captured: sum.Captured, CapturedEarlier: sum.AlreadyCaptured, CoveredEarlier: sum.CoveredEarlier,
			NotLive: sum.NotLive, NotRunning: sum.NotRunning, Gone: sum.Gone, Failed: sum.Failed, NotAttempted: sum.NotAttempted,
			NotRecorded: sum.NotRecorded, ElapsedSeconds: sum.Elapsed.Seconds(),
			TenantsFailed: sum.TenantsFailed, Failures: sum.Failures, CollectorsLeftOut: sum.CollectorsLeftOut, Scope: scope}
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
		printSnapshotSummary(r.env.Stdout, sum, store.Path(), scope)
	}
	if runErr != nil {
		return fail("%v", runErr)
	}
	if sum.Complete() || o.allowGone && sum.CompleteBut() {
		return nil
	}
	return errPartial
}

// runCapture runs the snapshot engine with the progress line on stderr
// when it is a terminal, else a status line in the log every logEvery.
func (r *runner) runCapture(ctx context.Context, opts snapshot.Options, logEvery time.Duration) (*snapshot.Summary, error) {
	line := r.progressLine()
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
	case !r.gopts.quiet:
		// No terminal: a status line in the log every --progress-every.
		opts.ProgressEvery = logEvery
		opts.OnProgress = func(p snapshot.Progress) { r.log.Info("progress", "status", status(p)) }
	}
	sum, err := snapshot.Run(ctx, opts)
	if line != nil {
		line.Finish() // the summary starts on a line of its own
	}
	return sum, err
}

// maxListed bounds the failures printed; the full list is in `status` and `export`.
const maxListed = 50

// snapshotScope is the part of the inventory a run captures, or nil for
// all of it. Each selection names where it came from, the command line or
// a variable.
type snapshotScope struct {
	Shard            string   `json:"shard,omitempty"`
	ShardFrom        string   `json:"shard_from,omitempty"`
	Tenants          []string `json:"tenant_patterns,omitempty"`
	TenantsFrom      string   `json:"tenant_patterns_from,omitempty"`
	Selected         int      `json:"selected_tenants"`
	InventoryTenants int      `json:"inventory_tenants"`
}

func (r *runner) snapshotScope(o snapshotOptions, inv *inventory.Inventory, only func(string) bool) *snapshotScope {
	if only == nil {
		return nil
	}
	// The variable is named only when it holds the value in effect: with
	// both set, the flag wins and the variable is not what selected. same
	// compares the variable's value with the one in effect, each as it is
	// read (a shard parsed, a tenant list split on commas and trimmed).
	from := func(flag string, same func(env string) bool) string {
		name := envVar(flag)[0]
		if v, ok := r.env.LookupEnv(name); ok && v != "" && same(v) {
			return name
		}
		return "--" + flag
	}
	sc := &snapshotScope{InventoryTenants: len(inv.Tenants)}
	if o.shard != "" {
		// Printed as parsed: a value from a ConfigMap may end in a newline.
		shard, _ := snapshot.ParseShard(o.shard) // the run has parsed it already
		sc.Shard = fmt.Sprintf("%d/%d", shard.K, shard.N)
		sc.ShardFrom = from("shard", func(v string) bool {
			e, err := snapshot.ParseShard(v)
			return err == nil && e == shard
		})
	}
	if len(o.tenants) > 0 {
		sc.Tenants = o.tenants
		sc.TenantsFrom = from("tenant", func(v string) bool {
			parts := strings.Split(v, ",")
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			return slices.Equal(parts, o.tenants)
		})
	}
	for _, t := range inv.Tenants {
		if only(t.Name) {
			sc.Selected++
		}
	}
	return sc
}

func (sc *snapshotScope) String() string {
	var parts []string
	if sc.Shard != "" {
		parts = append(parts, fmt.Sprintf("shard %s (%s)", sc.Shard, sc.ShardFrom))
	}
	if len(sc.Tenants) > 0 {
		parts = append(parts, fmt.Sprintf("tenants %s (%s)", strings.Join(sc.Tenants, ", "), sc.TenantsFrom))
	}
	return fmt.Sprintf("%s: %d of the inventory's %d tenants", strings.Join(parts, " and "), sc.Selected, sc.InventoryTenants)
}

func printSnapshotSummary(w io.Writer, s *snapshot.Summary, path string, scope *snapshotScope) {
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
	if scope != nil {
		fmt.Fprintf(w, "  only %s\n", termsafe.String(scope.String()))
	}
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
	for _, l := range s.CollectorsLeftOut {
		fmt.Fprintf(w, "  tenant %s: collector %d (%s) left out, the chain's others went on: %s\n", termsafe.String(l.Tenant), l.Position, l.Method, oneLine(l.Reason))
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
	// CollectorsLeftOut are collectors refused for a whole tenant whose
	// chain went on without them; absent when none was.
	CollectorsLeftOut []snapshot.LeftOut `json:"collectors_left_out,omitempty"`
	// Scope is the part of the inventory captured; absent for all of it.
	Scope *snapshotScope `json:"scope,omitempty"`
}
