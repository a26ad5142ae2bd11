// Command fleetsim stands up a simulated fleet of tenant databases and live
// workspace configs on this machine, with an answer key, so that backfill
// can be rehearsed end to end and its result checked:
//
//	fleetsim --dir DIR [--tenants 12] [--workspaces 200] [--seed 1] [--pg DSN]
//	         [--latency D] [--error-rate F] [--rate-limit N/min] [--files-api-rate R]
//	         [--restart-wave-after D --restart-rate R]
//	fleetsim check --dir DIR [--plan PLAN]
//
// The first form runs until Ctrl-C or SIGTERM, then removes what it started.
// Each tenant runs a workspace server speaking the platform's files API as
// the platform does (internal/filesapi.Platform): hosted servers with the
// org guard, host mirrors and EC2 instances; self-hosted ones with Docker
// containers, read through a fake docker (DIR/bin/docker) and their config
// volumes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"

	"backfill/apply/plan"
	"backfill/internal/filesapi"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		// After the first signal, a second one gets the default action:
		// exit at once (a private cluster dies with us regardless).
		<-ctx.Done()
		stop()
	}()
	os.Exit(run(ctx, os.Args, os.Stdout, os.Stderr))
}

// Exit statuses.
const (
	exitOK    = 0
	exitError = 1 // a failure, or check found a mismatch
	exitUsage = 2
)

// Defaults: the fleet make demo runs.
const (
	defaultTenants    = 12
	defaultWorkspaces = 200
	defaultSeed       = 1
	defaultRate       = 10
)

// run is the whole command line; args[0] is the program name.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 1 && args[1] == "check" {
		return runCheck(ctx, args[2:], stdout, stderr)
	}
	return runFleet(ctx, args[1:], stdout, stderr)
}

func runFleet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("fleetsim", flag.ContinueOnError)
	fl.SetOutput(stderr)
	fl.Usage = func() {
		fmt.Fprintf(stderr, "usage: fleetsim --dir DIR [flags]   (runs until Ctrl-C or SIGTERM)\n       fleetsim check --dir DIR [--plan PLAN]\n\nflags:\n")
		fl.PrintDefaults()
	}
	var o options
	fl.StringVar(&o.Dir, "dir", "", "new or empty `DIR` for the fleet's files (required)")
	fl.IntVar(&o.Tenants, "tenants", defaultTenants, "tenant databases")
	fl.IntVar(&o.Workspaces, "workspaces", defaultWorkspaces, "workspaces in all, spread over the tenants")
	fl.Uint64Var(&o.Seed, "seed", defaultSeed, "seed: the same seed and sizes give the same fleet and answer key")
	fl.StringVar(&o.PG, "pg", "", "postgres:// `DSN` of an existing server to create the tenant databases on (default: start a private cluster)")
	fl.DurationVar(&o.Latency, "latency", 0, "delay added to every files API request")
	fl.Float64Var(&o.ErrorRate, "error-rate", 0, "fraction of files API requests answered 503")
	fl.DurationVar(&o.WaveAfter, "restart-wave-after", 0, "start a restart wave this long after ready (0: none)")
	fl.Float64Var(&o.WaveRate, "restart-rate", defaultRate, "restart wave: live configs overwritten per second")
	rateLimit := fl.String("rate-limit", fmt.Sprintf("%d/min", filesapi.DefaultRateLimit),
		"files API requests per org in a fixed window from its first request: `N/min`, N/s, N/<duration> (40/5s), or unlimited")
	fl.IntVar(&o.FilesAPIRate, "files-api-rate", 0, "the inventory's files_api rate: requests a second per tenant (0: backfill's default)")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	var bad string
	var rerr error
	o.RateLimit, o.RateWindow, rerr = filesapi.ParseRateLimit(*rateLimit)
	switch {
	case rerr != nil:
		bad = "--rate-limit: " + rerr.Error()
	case o.FilesAPIRate < 0:
		bad = "--files-api-rate must not be negative"
	case fl.NArg() > 0:
		bad = fmt.Sprintf("unexpected argument %q", fl.Arg(0))
	case o.Dir == "":
		bad = "--dir is required"
	case o.Workspaces < 1:
		bad = "--workspaces must be positive"
	case o.ErrorRate < 0 || o.ErrorRate >= 1:
		bad = "--error-rate must be in [0, 1)"
	case o.Latency < 0 || o.WaveAfter < 0:
		bad = "durations must not be negative"
	case o.WaveAfter > 0 && o.WaveRate <= 0:
		bad = "--restart-rate must be positive"
	}
	if bad != "" {
		fmt.Fprintf(stderr, "fleetsim: %s\n", bad)
		return exitUsage
	}

	f, err := startFleet(ctx, o, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "fleetsim: %v\n", err)
		return exitError
	}
	printReady(stdout, f)
	<-ctx.Done()
	fmt.Fprintln(stderr, "fleetsim: stopping: removing the fleet's databases")
	if err := f.Close(); err != nil {
		fmt.Fprintf(stderr, "fleetsim: cleanup: %v\n", err)
		return exitError
	}
	fmt.Fprintln(stderr, "fleetsim: stopped")
	return exitOK
}

func printReady(w io.Writer, f *fleet) {
	n, byKind := 0, map[string]int{}
	for _, t := range f.spec.Tenants {
		n += len(t.Workspaces)
		byKind[t.Kind]++
	}
	p := func(name string) string { return filepath.Join(f.dir, name) }
	limit := "unlimited"
	if f.opts.RateLimit > 0 {
		limit = fmt.Sprintf("%d per %v per org", f.opts.RateLimit, f.opts.RateWindow)
	}
	fmt.Fprintf(w, "fleetsim: %d tenants, %d workspaces (seed %d) on %s\n", len(f.spec.Tenants), n, f.spec.Seed, f.db)
	fmt.Fprintf(w, "  tenants      %d hosted (files API, org header required), %d self-hosted (docker exec, then the config volume), %d self-hosted (files API)\n",
		byKind[kindHosted], byKind[kindSelfExec], byKind[kindSelfAPI])
	fmt.Fprintf(w, "  files API    one server per tenant on 127.0.0.1; rate limit %s\n", limit)
	fmt.Fprintf(w, "  inventory    %s\n", p(fileInventory))
	fmt.Fprintf(w, "  env          %s (mode 0600: tokens, org ids, DSNs, and a PATH that finds bin/docker first)\n", p(fileEnv))
	fmt.Fprintf(w, "  CP records   %s\n", p(fileCP))
	fmt.Fprintf(w, "  catalog      %s (manifest %s)\n", p(dirCatalog), p(fileManifest))
	fmt.Fprintf(w, "  docker       %s (containers %s, volumes %s)\n", p(filepath.Join(dirBin, "docker")), p(dirContainers), p(dirVolumes))
	fmt.Fprintf(w, "  answer key   %s\n", p(fileKey))
	if f.opts.WaveAfter > 0 {
		fmt.Fprintf(w, "  restart wave from %v after ready at %g/s; log %s\n", f.opts.WaveAfter, f.opts.WaveRate, p(fileWaveLog))
	}
	fmt.Fprintf(w, "ready (%s). Next: source %s, run backfill, then: fleetsim check --dir %s\n", p(fileReady), p(fileEnv), f.dir)
	fmt.Fprintln(w, "Ctrl-C stops the fleet and removes its databases.")
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fl := flag.NewFlagSet("fleetsim check", flag.ContinueOnError)
	fl.SetOutput(stderr)
	dir := fl.String("dir", "", "the fleet's `DIR` (required)")
	planPath := fl.String("plan", "", "also compare this plan's verdicts with the answer key")
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *dir == "" || fl.NArg() > 0 {
		fmt.Fprintln(stderr, "fleetsim check: usage: fleetsim check --dir DIR [--plan PLAN]")
		return exitUsage
	}
	k, err := loadKey(filepath.Join(*dir, fileKey))
	if err != nil {
		fmt.Fprintf(stderr, "fleetsim check: %v\n", err)
		return exitError
	}
	lookup, err := fleetEnv(*dir, os.LookupEnv)
	if err != nil {
		fmt.Fprintf(stderr, "fleetsim check: %v\n", err)
		return exitError
	}
	code := exitOK
	report := func(what string, c *comparison) {
		sort.Strings(c.Mismatches)
		for _, m := range c.Mismatches {
			fmt.Fprintf(stdout, "MISMATCH %s: %s\n", what, m)
		}
		if len(c.Mismatches) > 0 {
			code = exitError
			fmt.Fprintf(stdout, "fleetsim check: %s: %d mismatches over %d workspaces\n", what, len(c.Mismatches), c.Checked)
			return
		}
		fmt.Fprintf(stdout, "fleetsim check: %s: all %d workspaces match the answer key\n", what, c.Checked)
	}
	if *planPath != "" {
		p, err := plan.LoadPlan(*planPath)
		if err != nil {
			fmt.Fprintf(stderr, "fleetsim check: %v\n", err)
			return exitError
		}
		report("plan verdicts", comparePlan(k, p))
	}
	c, err := compareTemplates(ctx, k, lookup)
	if err != nil {
		fmt.Fprintf(stderr, "fleetsim check: %v\n", err)
		return exitError
	}
	report("templates", c)
	if len(k.NotSimulated) > 0 {
		var vs []string
		for v := range k.NotSimulated {
			vs = append(vs, v)
		}
		sort.Strings(vs)
		fmt.Fprintf(stdout, "fleetsim check: not simulated: %v\n", vs)
	}
	return code
}
