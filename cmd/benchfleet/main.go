// Command benchfleet benchmarks backfill as an operator runs it: the built
// binary as its own process, against tenant databases on a throwaway
// PostgreSQL cluster (some behind a loopback TCP proxy that adds latency
// each way) and a files API served by another process with a delay per
// request. In the same run it times the baselines over the same URLs: a
// bare Go fetcher (backfill's HTTP client settings, no store) and
// `xargs -P C curl`, and over the same tenant databases a bare lister
// (connect, one query, close). Every figure is the median of --runs runs; peak RSS is
// each backfill process's own (its VmHWM, read while it runs).
//
//	benchfleet --bin bin/backfill --out bench/RESULTS.md [--scale 1] [--runs 3]
//	           [--api-latency 20ms] [--db-latency 25ms] [--curl-urls 200]
//	           [--rows A,B,C,D] [--hold]
//
// The catalog and live config come from internal/fixture, embedded. serve,
// proxy, fetch and connect are its helper processes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "serve":
			err = runServe(os.Args[2:])
		case "proxy":
			err = runProxy(os.Args[2:])
		case "fetch":
			err = runFetch(os.Args[2:])
		case "connect":
			err = runConnect(os.Args[2:])
		default:
			err = runBench(os.Args[1:])
		}
	} else {
		err = runBench(nil)
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(os.Stderr, "benchfleet: %v\n", err)
		os.Exit(1)
	}
}

// options are the harness's flags.
type options struct {
	bin        string
	out        string
	work       string
	scale      float64
	runs       int
	curlN      int
	apiLatency time.Duration
	dbLatency  time.Duration
	rows       map[string]bool // nil: every row
	hold       bool
}

func envFloat(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

func runBench(args []string) error {
	fl := flag.NewFlagSet("benchfleet", flag.ContinueOnError)
	var o options
	fl.StringVar(&o.bin, "bin", "bin/backfill", "the built backfill binary")
	fl.StringVar(&o.out, "out", "bench/RESULTS.md", "Markdown results file to write")
	fl.StringVar(&o.work, "work", "", "work directory (default: a new temp dir, removed after)")
	fl.Float64Var(&o.scale, "scale", envFloat("BENCH_SCALE", 1), "multiply every size by this ($BENCH_SCALE)")
	fl.IntVar(&o.runs, "runs", int(envFloat("BENCH_RUNS", 3)), "runs per row; the median is reported ($BENCH_RUNS)")
	fl.IntVar(&o.curlN, "curl-urls", int(envFloat("BENCH_CURL_URLS", 200)), "URLs the curl baseline is timed over, then scaled ($BENCH_CURL_URLS)")
	fl.DurationVar(&o.apiLatency, "api-latency", 20*time.Millisecond, "files API delay per request")
	fl.DurationVar(&o.dbLatency, "db-latency", 25*time.Millisecond, "proxy delay each way for tenant databases behind it")
	fl.BoolVar(&o.hold, "hold", false, "build the fleets, write their inventories and URL lists into --work, and wait for a signal instead of timing")
	rows := fl.String("rows", "", "comma-separated rows to run (A, B, C, D; B includes apply, D plan and verify); default all")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *rows != "" {
		o.rows = map[string]bool{}
		for _, r := range strings.Split(*rows, ",") {
			r = strings.ToUpper(strings.TrimSpace(r))
			if r != "A" && r != "B" && r != "C" && r != "D" {
				return fmt.Errorf("--rows: unknown row %q (A, B, C or D)", r)
			}
			o.rows[r] = true
		}
	}
	if o.runs < 1 || o.scale <= 0 || o.curlN < 1 {
		return errors.New("--runs and --scale must be positive")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.work == "" {
		dir, err := os.MkdirTemp("", "benchfleet")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		o.work = dir
	}
	return bench(ctx, o)
}
