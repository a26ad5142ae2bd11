package plan

import (
	"context"
	"fmt"
	"log/slog"
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
const DefaultConcurrency = 16

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
}

// Build reconciles every workspace known from the evidence store or the
// tenant databases and returns the sealed plan and warnings for the
// reviewer. It reads tenant databases in READ ONLY transactions only.
func Build(ctx context.Context, o BuildOptions) (*Plan, []string, error) {
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
	rep, err := o.Store.Verify(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("verify evidence store: %w", err)
	}
	if !rep.OK() {
		return nil, nil, fmt.Errorf("evidence store %s does not verify (%s); run `backfill verify`", o.Store.Path(), rep.Problems[0])
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

	ev, _, notEvidence, err := loadEvidence(ctx, o.Store, o.Catalog, rep.ChainHead, nil)
	if err != nil {
		return nil, nil, err
	}
	known, err := o.Store.Workspaces(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows, dbs, unreachable := currentRows(ctx, o.Inventory, o.Concurrency)
	for _, t := range o.Inventory.Tenants {
		if why, ok := unreachable[t.Name]; ok {
			why = strings.Join(strings.Fields(o.Redact(why)), " ") // one line: it is shown in tables and logs
			unreachable[t.Name] = why
			dbs = append(dbs, TenantDatabase{Tenant: t.Name, Unreachable: why})
			warnings = append(warnings, fmt.Sprintf("%s:%d: tenant %q: database unreachable, its workspaces are not planned: %s", o.Inventory.Path, t.Line, t.Name, why))
		}
	}

	keys := map[evidence.Key]*workspace.Row{} // the last row known from evidence, as a fallback name
	skipped := map[string]int{}
	for _, w := range known {
		if !inInventory[w.Tenant] {
			skipped[w.Tenant]++
			continue
		}
		r := w.Row
		keys[w.Key] = &r
	}
	for t, n := range skipped {
		warnings = append(warnings, fmt.Sprintf("the evidence store holds %d workspaces of tenant %q, which is not in the inventory; they are not planned", n, t))
	}
	for k, r := range rows {
		if _, ok := keys[k]; !ok && r.Status != "removed" {
			rr := r
			keys[k] = &rr
		}
	}

	p := &Plan{
		FormatVersion: FormatVersion,
		Author:        o.Author,
		CreatedAt:     o.Now().UTC().Format(time.RFC3339),
		Backfill:      version.Get().Short(),
		Inputs: Inputs{
			Evidence:  EvidenceInput{Path: o.Store.Path(), ChainHead: rep.ChainHead, Captures: rep.Captures},
			Inventory: FileInput{Path: o.Inventory.Path, SHA256: o.Inventory.Digest()},
			CP:        CPInput{Source: o.CPSource, SHA256: o.CP.Digest(), Claims: o.CP.Len()},
			Catalog:   CatalogInput{Path: o.CatalogDir, Manifest: o.Manifest, SHA256: o.Catalog.Digest()},
		},
		Items: make([]Item, 0, len(keys)),
	}
	sort.Slice(dbs, func(i, j int) bool { return dbs[i].Tenant < dbs[j].Tenant })
	p.Databases = dbs
	for k, seen := range keys {
		var now *workspace.Row
		if r, ok := rows[k]; ok {
			now = &r
		}
		tpls, level, sources := o.CP.For(k.Tenant, k.WorkspaceID)
		claim := Claim{Templates: tpls, Level: level, Sources: sources}
		caps := ev[k]
		d := Reconcile(Input{Captures: caps, Claim: claim, Row: now, Catalog: o.Catalog, Unreachable: unreachable[k.Tenant],
			NotEvidence: notEvidence[k]})
		p.Items = append(p.Items, makeItem(k, seen, now, caps, claim, d))
	}
	sortItems(p.Items)
	p.Seal()
	sort.Strings(warnings)
	return p, warnings, nil
}

func makeItem(k evidence.Key, seen, now *workspace.Row, caps []Evidence, claim Claim, d Decision) Item {
	it := Item{Tenant: k.Tenant, WorkspaceID: k.WorkspaceID, Verdict: d.Verdict, Reason: d.Reason, Notes: d.Notes, Drift: d.Drift}
	row := seen
	if now != nil {
		row = now
		it.DBTemplate, it.DBStatus = now.Template, now.Status
	}
	it.WorkspaceName, it.Kind, it.Runtime = row.Name, row.Kind, row.Runtime
	it.Provisioning = ProvisioningOf(row)
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

// currentRows reads every tenant's rows as they are now, and the database
// each DSN reached. A tenant that cannot be read is returned in unreachable
// with the reason (redacted by the caller's logger, never holding the DSN):
// its workspaces are planned unreachable and the others go on.
func currentRows(ctx context.Context, inv *inventory.Inventory, conc int) (map[evidence.Key]workspace.Row, []TenantDatabase, map[string]string) {
	out := map[evidence.Key]workspace.Row{}
	unreachable := map[string]string{}
	var dbs []TenantDatabase
	var mu sync.Mutex
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, t := range inv.Tenants {
		wg.Add(1)
		go func(t inventory.Tenant) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// Timeouts, so a tenant stuck behind a migration's lock is
			// reported with its name instead of hanging the plan.
			rows, db, err := tenantdb.ListAllIdentified(ctx, t.DSN, tenantdb.Options{LockTimeout: 10 * time.Second, StatementTimeout: time.Minute})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				unreachable[t.Name] = "read workspaces: " + err.Error()
				return
			}
			dbs = append(dbs, TenantDatabase{Tenant: t.Name, Database: db})
			for _, r := range rows {
				out[evidence.Key{Tenant: t.Name, WorkspaceID: r.ID}] = r
			}
		}(t)
	}
	wg.Wait()
	return out, dbs, unreachable
}

// Provisioning classes of a workspace.
const (
	Hosted     = "hosted"      // instance_id set: the control plane provisions it
	SelfHosted = "self-hosted" // instance_id NULL: the tenant's own server runs ws-<id>
)

// ProvisioningOf classifies a row by its instance_id.
func ProvisioningOf(r *workspace.Row) string {
	if r.InstanceID != nil && *r.InstanceID != "" {
		return Hosted
	}
	return SelfHosted
}
