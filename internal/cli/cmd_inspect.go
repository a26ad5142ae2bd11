package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/apply/plan"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
	"backfill/internal/termsafe"
	"backfill/internal/workspace"
)

func (r *runner) inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "everything known about one workspace: its rows, captures, identity, CP claims, verdicts and journal",
		ArgsUsage: "WORKSPACE_ID",
		Flags: []cli.Flag{
			&cli.Int64Flag{Name: "raw", Usage: "print capture `ID`'s exact bytes and nothing else"},
			&cli.StringFlag{Name: "inventory", EnvVars: envVar("inventory"), Usage: "also read the row as it is now from its tenant's database (READ ONLY)"},
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error {
			return r.runInspect(c.Context, inspectOptions{workspaceID: c.Args().First(), raw: c.Int64("raw"),
				inventory: c.String("inventory"), json: c.Bool("json")})
		},
	}
}

// inspectOptions are inspect's flags and WORKSPACE_ID argument.
type inspectOptions struct {
	workspaceID string
	raw         int64  // a capture ID whose bytes to print; 0: none
	inventory   string // "": the row as it is now is not read
	json        bool
}

// inspectJSON is `inspect --json`'s document.
type inspectJSON struct {
	SchemaVersion int               `json:"schema_version"`
	WorkspaceID   string            `json:"workspace_id"`
	Listed        []listedJSON      `json:"listed"`
	Now           *workspace.Row    `json:"now,omitempty"`
	NowError      string            `json:"now_error,omitempty"`
	Captures      []captureJSON     `json:"captures"`
	Plans         []inspectPlanJSON `json:"plans"`
	Journal       []entryJSON       `json:"journal"`
}

type captureJSON struct {
	ID         int64             `json:"id"`
	Tenant     string            `json:"tenant"`
	Method     string            `json:"method"`
	Target     string            `json:"target"`
	StartedAt  time.Time         `json:"started_at"`
	EndedAt    time.Time         `json:"ended_at"`
	Attempt    int               `json:"attempt"`
	Outcome    string            `json:"outcome"`
	Reason     string            `json:"reason,omitempty"`
	SHA256     string            `json:"sha256,omitempty"`
	Size       int64             `json:"size"`
	Provenance map[string]string `json:"provenance"`
	Row        workspace.Row     `json:"row"`
}

type entryJSON struct {
	ID          int64     `json:"id"`
	Fingerprint string    `json:"fingerprint"`
	Operation   string    `json:"operation"`
	Operator    string    `json:"operator"`
	Tenant      string    `json:"tenant"`
	Before      string    `json:"before"`
	After       string    `json:"after"`
	Outcome     string    `json:"outcome"`
	Reason      string    `json:"reason,omitempty"`
	At          time.Time `json:"at"`
}

type listedJSON struct {
	Tenant    string        `json:"tenant"`
	ListingID int64         `json:"listing_id"`
	At        time.Time     `json:"at"`
	Row       workspace.Row `json:"row"`
}

type inspectPlanJSON struct {
	Fingerprint string    `json:"fingerprint"`
	Author      string    `json:"author"`
	CreatedAt   time.Time `json:"created_at"`
	Item        plan.Item `json:"item"`
}

func (r *runner) runInspect(ctx context.Context, o inspectOptions) error {
	id := o.workspaceID
	store, err := r.openStoreReadOnly(ctx)
	if err != nil {
		return err
	}
	defer store.Close()
	caps, err := store.CapturesOf(ctx, id)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	if raw := o.raw; raw != 0 {
		for _, cp := range caps {
			if cp.ID != raw {
				continue
			}
			if cp.SHA256 == "" {
				return fail("capture %d of %s holds no bytes (outcome %s)", raw, id, cp.Outcome)
			}
			b, err := store.Content(ctx, cp.SHA256)
			if err != nil {
				return fail("%v", err)
			}
			_, err = r.env.Stdout.Write(b)
			return err
		}
		return fail("capture %d is not a capture of workspace %s in %s", raw, id, store.Path())
	}
	listed, err := store.ListedIn(ctx, id)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	doc := inspectJSON{SchemaVersion: 1, WorkspaceID: id, Listed: []listedJSON{}, Captures: []captureJSON{}, Plans: []inspectPlanJSON{}, Journal: []entryJSON{}}
	for _, c := range caps {
		doc.Captures = append(doc.Captures, captureJSON{ID: c.ID, Tenant: c.Tenant, Method: c.Method, Target: c.Target, StartedAt: c.StartedAt,
			EndedAt: c.EndedAt, Attempt: c.Attempt, Outcome: c.Outcome, Reason: c.Reason, SHA256: c.SHA256, Size: c.Size,
			Provenance: c.Provenance, Row: c.Row})
	}
	tenant := ""
	for _, l := range listed {
		doc.Listed = append(doc.Listed, listedJSON{Tenant: l.Tenant, ListingID: l.ID, At: l.At, Row: l.Rows[0]})
		tenant = l.Tenant
	}
	if tenant == "" && len(caps) > 0 {
		tenant = caps[len(caps)-1].Tenant
	}
	if tenant == "" {
		return fail("workspace %s is in no listing and no capture of %s", id, store.Path())
	}
	if invPath := o.inventory; invPath != "" {
		inv, err := inventory.LoadDatabases(invPath, r.env.LookupEnv)
		if err != nil {
			return fail("%v", err)
		}
		r.redactor.Add(inv.Secrets()...)
		if t, ok := inv.Tenant(tenant); !ok {
			doc.NowError = fmt.Sprintf("tenant %s is not in %s", tenant, invPath)
		} else if row, ok, err := tenantdb.GetRow(ctx, t.DSN, tenantdb.Options{ConnectTimeout: 10 * time.Second}, id); err != nil {
			doc.NowError = r.redactor.Redact(err.Error())
		} else if !ok {
			doc.NowError = "the row no longer exists"
		} else {
			doc.Now = &row
		}
	}
	kept, err := store.Plans(ctx)
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	for _, k := range kept {
		p, err := plan.LoadKept(ctx, store, k.Fingerprint)
		if err != nil {
			return fail("%v", err)
		}
		for _, it := range p.Items {
			if it.WorkspaceID == id {
				doc.Plans = append(doc.Plans, inspectPlanJSON{Fingerprint: k.Fingerprint, Author: k.Author, CreatedAt: k.CreatedAt, Item: it})
			}
		}
	}
	entries, err := store.Journal(ctx, "")
	if err != nil {
		return fail("read %s: %v", store.Path(), err)
	}
	for _, e := range entries {
		if e.WorkspaceID == id {
			doc.Journal = append(doc.Journal, entryJSON{ID: e.ID, Fingerprint: e.Fingerprint, Operation: e.Operation, Operator: e.Operator,
				Tenant: e.Tenant, Before: e.Before, After: e.After, Outcome: e.Outcome, Reason: e.Reason, At: e.At})
		}
	}
	if o.json {
		return printJSON(r.env.Stdout, doc)
	}
	printInspect(r.env.Stdout, doc)
	return nil
}

func printInspect(w io.Writer, d inspectJSON) {
	s := termsafe.String
	fmt.Fprintf(w, "workspace %s\n", s(d.WorkspaceID))
	fmt.Fprintf(w, "\nlisted (%d):\n", len(d.Listed))
	for _, l := range d.Listed {
		fmt.Fprintf(w, "  %s listing %d at %s: %s\n", s(l.Tenant), l.ListingID, l.At.UTC().Format(time.RFC3339), rowLine(l.Row))
	}
	switch {
	case d.Now != nil:
		fmt.Fprintf(w, "now: %s\n", rowLine(*d.Now))
	case d.NowError != "":
		fmt.Fprintf(w, "now: unknown: %s\n", oneLine(d.NowError))
	}
	fmt.Fprintf(w, "\ncaptures (%d):\n", len(d.Captures))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tENDED\tOUTCOME\tMETHOD\tATTEMPT\tSHA256\tSIZE\tTARGET\tREASON")
	for _, c := range d.Captures {
		sha := "-"
		if c.SHA256 != "" {
			sha = c.SHA256[:12]
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", c.ID, c.EndedAt.UTC().Format(time.RFC3339), s(c.Outcome), s(c.Method),
			c.Attempt, sha, c.Size, s(c.Target), oneLine(c.Reason))
	}
	tw.Flush()
	for _, c := range d.Captures {
		if len(c.Provenance) == 0 {
			continue
		}
		keys := make([]string, 0, len(c.Provenance))
		for k := range c.Provenance {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = s(k) + "=" + strconv.Quote(c.Provenance[k])
		}
		fmt.Fprintf(w, "  capture %d provenance: %s (took %s)\n", c.ID, strings.Join(parts, " "), c.EndedAt.Sub(c.StartedAt).Round(time.Millisecond))
	}
	fmt.Fprintf(w, "\nplans (%d):\n", len(d.Plans))
	for _, p := range d.Plans {
		it := p.Item
		fmt.Fprintf(w, "  %s by %s: %s: %s\n", p.Fingerprint, s(p.Author), it.Verdict, oneLine(it.Reason))
		if it.Evidence != nil {
			fmt.Fprintf(w, "    identity: capture %d → %s by rule %s\n", it.Evidence.CaptureID, s(orNone(it.Evidence.Template)), s(it.Evidence.Rule))
		}
		if it.CP != nil {
			fmt.Fprintf(w, "    CP claims: %s (%s: %s)\n", s(strings.Join(it.CP.Templates, ", ")), it.CP.Level, s(strings.Join(it.CP.Sources, ", ")))
		}
		if it.Action != nil {
			fmt.Fprintf(w, "    write: template = %q where it is ''\n", it.Action.SetTemplate)
		}
	}
	fmt.Fprintf(w, "\njournal (%d):\n", len(d.Journal))
	for _, e := range d.Journal {
		fmt.Fprintf(w, "  %d %s %s %s by %s: %s %q -> %q %s\n", e.ID, e.At.UTC().Format(time.RFC3339), e.Operation, e.Fingerprint, s(e.Operator),
			e.Outcome, e.Before, e.After, oneLine(e.Reason))
	}
}

func rowLine(r workspace.Row) string {
	inst := "NULL"
	if r.InstanceID != nil {
		inst = strconv.Quote(*r.InstanceID)
	}
	return fmt.Sprintf("name %q runtime %q template %q status %q kind %q instance_id %s", r.Name, r.Runtime, r.Template, r.Status, r.Kind, inst)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
