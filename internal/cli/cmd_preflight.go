package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/internal/inventory"
	"backfill/preflight"
)

func (r *runner) preflightCommand() *cli.Command {
	return &cli.Command{
		Name:  "preflight",
		Usage: "before a restart wave: check every tenant's database, grants, one read through its collectors, rate-limit headroom, and the evidence store's room (writes nothing)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "inventory", Required: true, EnvVars: envVar("inventory"), Usage: "inventory `FILE`"},
			// Tenants, as apply's and plan's: not snapshot's --concurrency
			// (captures), whose variable may be sized far larger.
			&cli.IntFlag{Name: "tenant-concurrency", Value: preflight.DefaultConcurrency, EnvVars: envVar("tenant-concurrency"), Usage: "tenants checked at once"},
			// snapshot's --timeout and --max-bytes, bounding preflight's
			// connections and reads as well as its collector reads.
			timeoutFlag(preflight.DefaultTimeout, "connect timeout and per-read timeout (the listing gets three times it)"),
			maxBytesFlag("size cap of the sample read, as snapshot's"),
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout instead of the table"},
			proxyFlag(),
		},
		Action: func(c *cli.Context) error {
			return r.runPreflight(c.Context, preflightOptions{inventory: c.String("inventory"), concurrency: c.Int("tenant-concurrency"),
				timeout: c.Duration("timeout"), maxBytes: size(c, "max-bytes"), json: c.Bool("json"), proxyFromEnv: c.Bool("proxy-from-env")})
		},
	}
}

// preflightOptions are preflight's flags.
type preflightOptions struct {
	inventory   string
	concurrency int // tenants checked at once
	timeout     time.Duration
	maxBytes    int64
	json        bool
	// proxyFromEnv: the collectors' requests go through the
	// environment's proxy (--proxy-from-env).
	proxyFromEnv bool
}

func (r *runner) runPreflight(ctx context.Context, o preflightOptions) error {
	if o.concurrency < 1 || o.maxBytes < 1 || o.timeout <= 0 {
		return &exitError{ExitUsage, errors.New("--tenant-concurrency, --max-bytes and --timeout must be positive")}
	}
	if err := checkUpperBounds("--tenant-concurrency", o.concurrency, o.maxBytes); err != nil {
		return err
	}
	inv, err := inventory.Load(o.inventory, r.env.LookupEnv)
	if err != nil {
		return fail("%v", err)
	}
	r.redactor.Add(inv.Secrets()...)
	rep, err := preflight.Run(ctx, preflight.Options{
		Inventory: inv, StorePath: r.gopts.evidence,
		Concurrency: o.concurrency, Timeout: o.timeout, MaxBytes: o.maxBytes, HTTPClient: httpClient(o.proxyFromEnv),
		Redactor: r.redactor, Logger: r.log, Now: r.env.Now,
	})
	if err != nil {
		return fail("%v", err)
	}
	if o.json {
		doc := preflightJSON{SchemaVersion: 1, Ready: rep.Ready(), Reason: rep.Reason(), TenantsReady: rep.TenantsReady(),
			Tenants: rep.Tenants, Store: rep.Store, ElapsedSeconds: rep.Elapsed.Seconds()}
		if err := printJSON(r.env.Stdout, doc); err != nil {
			return err
		}
	} else {
		printPreflight(r.env.Stdout, rep)
	}
	if rep.Ready() {
		return nil
	}
	return errPartial
}

// preflightJSON is `preflight --json`'s document.
type preflightJSON struct {
	SchemaVersion int  `json:"schema_version"`
	Ready         bool `json:"ready"`
	// Reason: ready, tenants-not-ready, store-not-ready, not-ready (both)
	// or interrupted.
	Reason         string                   `json:"reason"`
	TenantsReady   int                      `json:"tenants_ready"`
	Tenants        []preflight.TenantResult `json:"tenants"`
	Store          preflight.StoreResult    `json:"store"`
	ElapsedSeconds float64                  `json:"elapsed_seconds"`
}

// printPreflight prints one row per tenant, then the store and the
// verdict. Every value shown passes through oneLine: reasons quote what
// tenants' servers and databases answered.
func printPreflight(w io.Writer, rep *preflight.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TENANT\tDB\tGRANTS\tLIVE\tEMPTY-TEMPLATE\tSAMPLE SOURCE\tRATE HEADROOM\tREADY\tWHY")
	for _, t := range rep.Tenants {
		db, grants, live, empty := "-", "-", "-", "-"
		switch {
		case t.DB.ReadOnlyListing:
			db = "ok"
			live, empty = strconv.Itoa(t.Live), strconv.Itoa(t.EmptyTemplate)
		case t.DB.Reachable && t.Grants.Checked && !t.Grants.OK:
			db = "ok"
		case t.DB.Reachable:
			db = "listing failed"
		case t.DB.Error != "":
			db = "unreachable"
		}
		if t.Grants.Checked {
			grants = "ok"
			if !t.Grants.OK {
				grants = "missing"
			}
		}
		ready := "yes"
		if !t.Ready {
			ready = "no"
		}
		why := append([]string{}, t.Why...)
		for _, n := range t.Notes {
			why = append(why, "note: "+n)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", oneLine(t.Tenant), db, grants, live, empty,
			oneLine(sampleSource(t.Sample)), oneLine(headroom(t.Rate)), ready, oneLine(strings.Join(why, "; ")))
	}
	tw.Flush()

	s := rep.Store
	state := "exists"
	if !s.Exists {
		state = "new: the snapshot creates it"
	}
	fmt.Fprintf(w, "store %s (%s): ", oneLine(s.Path), state)
	if s.Writable {
		fmt.Fprintf(w, "directory %s writable, ", oneLine(s.Directory))
	}
	fmt.Fprintf(w, "%s free, about %s needed for %d live workspaces: ", preflight.Bytes(s.FreeBytes), preflight.Bytes(s.NeedBytes), s.Live)
	if s.Ready {
		fmt.Fprintln(w, "ready")
	} else {
		fmt.Fprintf(w, "not ready: %s\n", oneLine(strings.Join(s.Why, "; ")))
	}
	verdict := "ready"
	if !rep.Ready() {
		verdict = "not ready (" + rep.Reason() + ")"
	}
	storeState := "store ready"
	if !s.Ready {
		storeState = "store not ready"
	}
	fmt.Fprintf(w, "preflight: %d of %d tenants ready, %s, in %s: %s\n", rep.TenantsReady(), len(rep.Tenants), storeState,
		rep.Elapsed.Round(time.Millisecond), verdict)
}

// sampleSource is the SAMPLE SOURCE cell: the source when the read is
// evidence, else the outcome and what answered.
func sampleSource(s *preflight.Sample) string {
	switch {
	case s == nil || s.Outcome == "":
		return "-"
	case s.Evidence:
		return s.Source
	case s.Source != "" && s.Source != s.Method:
		return s.Outcome + " (" + s.Source + ")"
	}
	return s.Outcome
}

// headroom is the RATE HEADROOM cell: the configured pace against the
// platform's limit, then the window's state as the sample's answer told.
func headroom(r preflight.Rate) string {
	var parts []string
	switch {
	case r.PerSecond > 0 && r.LimitFrom == "unlimited":
		parts = append(parts, fmt.Sprintf("%g/min, platform unlimited", r.PerMinute))
	case r.PerSecond > 0:
		parts = append(parts, fmt.Sprintf("%g/%d per min", r.PerMinute, r.Limit))
	case r.Remaining != nil:
		parts = append(parts, "not paced")
	default:
		return "-"
	}
	if r.Remaining != nil {
		left := fmt.Sprintf("%d left", *r.Remaining)
		if r.PerSecond == 0 && r.LimitFrom == "header" {
			left = fmt.Sprintf("%d/%d left", *r.Remaining, r.Limit)
		}
		if r.Throttled {
			left = "429, " + left
		}
		if r.ResetSeconds != nil {
			left += fmt.Sprintf(", resets %ds", *r.ResetSeconds)
		}
		parts = append(parts, left)
	}
	return strings.Join(parts, ", ")
}
