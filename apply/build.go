package apply

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/inventory"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

// BuildOptions are the inputs of a plan.
type BuildOptions struct {
	Inventory      *inventory.Inventory
	InventoryBytes []byte // the inventory file as read, for its digest
	Store          *evidence.Store
	CP             *cp.Records
	CPSource       string // shown in the plan; must hold no password
	Catalog        *catalog.Catalog
	CatalogDir     string
	Author         string
	Now            func() time.Time
	Concurrency    int // tenants read at once, default 8
	Logger         *slog.Logger
}

// Build reconciles every workspace known from the evidence store or the
// tenant databases and returns the sealed plan and warnings for the
// reviewer. It reads tenant databases in READ ONLY transactions only.
func Build(ctx context.Context, o BuildOptions) (*Plan, []string, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 8
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
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

	ev, err := loadEvidence(ctx, o.Store, o.Catalog)
	if err != nil {
		return nil, nil, err
	}
	known, err := o.Store.Workspaces(ctx)
	if err != nil {
		return nil, nil, err
	}
	rows, err := currentRows(ctx, o.Inventory, o.Concurrency)
	if err != nil {
		return nil, nil, err
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
		Inputs: Inputs{
			Evidence:  EvidenceInput{Path: o.Store.Path(), ChainHead: rep.ChainHead, Captures: rep.Captures},
			Inventory: FileInput{Path: o.Inventory.Path, SHA256: sha256Hex(o.InventoryBytes)},
			CP:        CPInput{Source: o.CPSource, SHA256: o.CP.Digest(), Claims: o.CP.Len()},
			Catalog:   FileInput{Path: o.CatalogDir, SHA256: o.Catalog.Digest()},
		},
		Items: make([]Item, 0, len(keys)),
	}
	for k, seen := range keys {
		var now *workspace.Row
		if r, ok := rows[k]; ok {
			now = &r
		}
		tpls, level, sources := o.CP.For(k.Tenant, k.WorkspaceID)
		claim := Claim{Templates: tpls, Level: level, Sources: sources}
		caps := ev[k]
		d := Reconcile(Input{Captures: caps, Claim: claim, Row: now, Catalog: o.Catalog})
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
	if len(caps) > 0 {
		e := caps[0]
		it.Evidence = &ItemEvidence{CaptureID: e.CaptureID, SHA256: e.SHA256, CapturedAt: e.CapturedAt.UTC().Format(time.RFC3339Nano),
			Template: e.Identity.Template, Rule: string(e.Identity.Rule), Captures: len(caps)}
	}
	if len(claim.Templates) > 0 {
		it.CP = &ItemCP{Templates: claim.Templates, Level: claim.Level, Sources: claim.Sources}
	}
	if d.Verdict == Agree {
		it.Action = &Action{SetTemplate: d.Set, ExpectCurrent: ""}
	}
	return it
}

// loadEvidence returns each workspace's successful captures, earliest
// first, with identities derived once per distinct content.
func loadEvidence(ctx context.Context, s *evidence.Store, cat *catalog.Catalog) (map[evidence.Key][]Evidence, error) {
	out := map[evidence.Key][]Evidence{}
	ids := map[string]identity.Identity{}
	err := s.Captures(ctx, func(c *evidence.Capture) error {
		if c.Outcome != evidence.Captured {
			return nil
		}
		id, ok := ids[c.SHA256]
		if !ok {
			b, err := s.Content(ctx, c.SHA256)
			if err != nil {
				return err
			}
			id = identity.Derive(b, cat)
			ids[c.SHA256] = id
		}
		k := evidence.Key{Tenant: c.Tenant, WorkspaceID: c.WorkspaceID}
		out[k] = append(out[k], Evidence{CaptureID: c.ID, SHA256: c.SHA256, CapturedAt: c.EndedAt, Identity: id})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read evidence: %w", err)
	}
	return out, nil
}

// currentRows reads every tenant's rows as they are now. A plan over part
// of the fleet would silently leave the rest out, so any tenant failing
// fails the plan, naming it.
func currentRows(ctx context.Context, inv *inventory.Inventory, conc int) (map[evidence.Key]workspace.Row, error) {
	out := map[evidence.Key]workspace.Row{}
	var mu sync.Mutex
	var firstErr error
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	for _, t := range inv.Tenants {
		wg.Add(1)
		go func(t inventory.Tenant) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			// Timeouts, so a tenant stuck behind a migration's lock fails the
			// plan with its name instead of hanging it.
			rows, err := tenantdb.ListAll(ctx, t.DSN, tenantdb.Options{LockTimeout: 10 * time.Second, StatementTimeout: time.Minute})
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("%s:%d: tenant %q: read workspaces: %v", inv.Path, t.Line, t.Name, err)
				}
				return
			}
			for _, r := range rows {
				out[evidence.Key{Tenant: t.Name, WorkspaceID: r.ID}] = r
			}
		}(t)
	}
	wg.Wait()
	return out, firstErr
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
