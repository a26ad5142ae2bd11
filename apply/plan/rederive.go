package plan

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"backfill/internal/catalog"
	"backfill/internal/cp"
	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/workspace"
)

// Rederive checks, without any tenant connection, that every agree item of
// p is exactly what reconciliation produces from the evidence store and the
// catalog: the catalog has the digest the plan recorded, the cited capture
// is the workspace's earliest successful one as of the plan's chain head
// and its stored bytes still hash to the cited sha256, the identity rules
// applied to those bytes give the item's template and rule, and reconcile
// on that evidence, the item's CP claim and the row as the plan saw it
// decides agree with the same catalog name to write.
//
// The fingerprint is only a checksum, which anyone who edits a plan can
// recompute; this is what makes a plan unable to ask for a write that
// reconciliation would not produce. With records (optional: a CP file given
// again), the CP digest and each item's claim are checked too. Any mismatch
// refuses the whole plan, naming the item.
func Rederive(ctx context.Context, p *Plan, s *evidence.Store, cat *catalog.Catalog, records *cp.Records) error {
	refuse := func(format string, args ...any) error {
		return &Refusal{fmt.Sprintf(format, args...)}
	}
	if got := cat.Digest(); got != p.Inputs.Catalog.SHA256 {
		return refuse("the catalog has digest %s, the plan was made with %s (%s): pass the plan's catalog with --catalog",
			got, p.Inputs.Catalog.SHA256, p.Inputs.Catalog.Path)
	}
	if records != nil && records.Digest() != p.Inputs.CP.SHA256 {
		return refuse("the CP records have digest %s, the plan was made with %s", records.Digest(), p.Inputs.CP.SHA256)
	}
	agreed := p.Agreed()
	if len(agreed) == 0 {
		return nil
	}
	want := map[evidence.Key]bool{}
	for _, it := range agreed {
		want[evidence.Key{Tenant: it.Tenant, WorkspaceID: it.WorkspaceID}] = true
	}
	ev, since, _, err := loadEvidence(ctx, s, cat, p.Inputs.Evidence.ChainHead, want)
	if err != nil {
		return err
	}
	for _, it := range agreed {
		k := evidence.Key{Tenant: it.Tenant, WorkspaceID: it.WorkspaceID}
		if err := rederiveItem(p, &it, ev[k], since[k], cat, records); err != nil {
			return refuse("plan item %s (%s): %s; reconciliation would not write it, so the plan is refused whole",
				it.Key(), it.WorkspaceName, err)
		}
	}
	return nil
}

// rederiveItem checks one agree item against caps, its successful captures
// up to the plan's chain head, and later, those recorded since.
func rederiveItem(p *Plan, it *Item, caps, later []captured, cat *catalog.Catalog, records *cp.Records) error {
	e := it.Evidence
	switch {
	case e == nil || it.Action == nil:
		return errors.New("an agree item without evidence or action")
	case len(caps) == 0:
		return fmt.Errorf("the evidence store has no successful capture of it up to the plan's chain head")
	case caps[0].CaptureID != e.CaptureID:
		return fmt.Errorf("it cites capture %d, but its earliest successful capture is %d", e.CaptureID, caps[0].CaptureID)
	case caps[0].SHA256 != e.SHA256:
		return fmt.Errorf("capture %d holds sha256 %s, the plan says %s", e.CaptureID, caps[0].SHA256, e.SHA256)
	case len(caps) != e.Captures:
		return fmt.Errorf("it counts %d successful captures, the store has %d", e.Captures, len(caps))
	case e.Source != "" && e.Source != caps[0].Source:
		return fmt.Errorf("capture %d's source is %s, the plan says %s", e.CaptureID, caps[0].Source, e.Source)
	}
	id := caps[0].Identity
	if id.Template != e.Template || string(id.Rule) != e.Rule {
		return fmt.Errorf("capture %d derives template %q by rule %s, the plan says %q by %s", e.CaptureID, id.Template, id.Rule, e.Template, e.Rule)
	}
	if want := e.Resemblance; (want == nil) != (id.Resemblance == identity.Resemblance{}) || want != nil && *want != id.Resemblance {
		return fmt.Errorf("capture %d's resemblance is %+v, the plan says %+v", e.CaptureID, id.Resemblance, want)
	}
	if p.FormatVersion >= 2 {
		if _, ok := p.Database(it.Tenant); !ok {
			return errors.New("the plan records no database read for its tenant")
		}
	}
	claim := cpClaim{}
	if it.CP != nil {
		claim = cpClaim{Templates: it.CP.Templates, Level: it.CP.Level, Sources: it.CP.Sources}
	}
	if records != nil {
		tpls, level, sources := records.For(it.Tenant, it.WorkspaceID)
		if !slices.Equal(tpls, claim.Templates) || level != claim.Level || !slices.Equal(sources, claim.Sources) {
			return fmt.Errorf("its CP claim %v (%s) is not what the CP records give: %v (%s)", claim.Templates, claim.Level, tpls, level)
		}
	}
	row := &workspace.Row{ID: it.WorkspaceID, Name: it.WorkspaceName, Kind: it.Kind, Runtime: it.Runtime,
		Template: it.DBTemplate, Status: it.DBStatus}
	d := reconcile(reconcileInput{Captures: caps, Claim: claim, Row: row, Catalog: cat})
	if d.Verdict != Agree {
		return fmt.Errorf("reconciliation gives %s (%s)", d.Verdict, d.Reason)
	}
	if d.Set != it.Action.SetTemplate {
		return fmt.Errorf("it would write %q, reconciliation writes %q", it.Action.SetTemplate, d.Set)
	}
	if t, ok := cat.Lookup(d.Set); !ok || t.Name != d.Set {
		return fmt.Errorf("%q is not a catalog template's canonical name", d.Set)
	}
	// Evidence is append-only, so captures recorded since the plan cannot
	// change the earliest one, but a later capture naming another custom
	// template makes the evidence unstable: the write is no longer what
	// reconciliation of the store as it is would produce.
	if len(later) > 0 {
		now := reconcile(reconcileInput{Captures: append(append([]captured(nil), caps...), later...), Claim: claim, Row: row, Catalog: cat})
		if now.Verdict != Agree || now.Set != d.Set {
			return fmt.Errorf("evidence recorded since the plan makes it %s (%s): plan again", now.Verdict, now.Reason)
		}
	}
	return nil
}

// loadEvidence returns, for the workspaces in want (all when nil), their
// successful captures (evidence.Capture.IsEvidence: captured, from a source
// that is evidence) recorded up to and including the one whose chain hash
// is head, and apart from them those recorded since, earliest first, with
// identities derived once per distinct content and kind, and every
// content's bytes hashed again. head "" means an empty store at plan time.
// notEvidence says, per workspace, why its latest not-live or not-running
// capture up to head is no evidence, for a no-evidence verdict's reason.
// It reads only the tenants of want.
func loadEvidence(ctx context.Context, s *evidence.Store, cat *catalog.Catalog, head string, want map[evidence.Key]bool) (upTo, since map[evidence.Key][]captured, notEvidence map[evidence.Key]string, err error) {
	headID := int64(0)
	if head != "" {
		id, ok, err := s.CaptureID(ctx, head)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("read evidence: %w", err)
		}
		if !ok {
			return nil, nil, nil, &Refusal{fmt.Sprintf("the plan's evidence chain head %s is not in %s: it was made from other evidence", head, s.Path())}
		}
		headID = id
	}
	var tenants []string
	if want == nil {
		if tenants, err = s.Tenants(ctx); err != nil {
			return nil, nil, nil, fmt.Errorf("read evidence: %w", err)
		}
	} else {
		seen := map[string]bool{}
		for k := range want {
			if !seen[k.Tenant] {
				seen[k.Tenant] = true
				tenants = append(tenants, k.Tenant)
			}
		}
	}
	// Tenants are read evidenceReaders at a time, each by a reader of its
	// own (reading one is mostly a single goroutine's work in the store,
	// while its identities are derived on every CPU): a plan over hundreds
	// of small tenants paid for each one's reads in turn. The first failing
	// tenant in order is the one reported, whatever finished first.
	type read struct {
		ws  []wsEvidence
		err error
	}
	reads := make([]read, len(tenants))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(evidenceReaders, len(tenants)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newEvidenceReader(s, cat, headID)
			for i := range next {
				t := tenants[i]
				var keep func(string) bool
				if want != nil {
					keep = func(id string) bool { return want[evidence.Key{Tenant: t, WorkspaceID: id}] }
				}
				reads[i].ws, reads[i].err = r.tenant(ctx, t, keep)
			}
		}()
	}
	for i := range tenants {
		next <- i
	}
	close(next)
	wg.Wait()
	upTo, since, notEvidence = map[evidence.Key][]captured{}, map[evidence.Key][]captured{}, map[evidence.Key]string{}
	for i, t := range tenants {
		if err := reads[i].err; err != nil {
			return nil, nil, nil, err
		}
		for _, w := range reads[i].ws {
			k := evidence.Key{Tenant: t, WorkspaceID: w.id}
			if len(w.upTo) > 0 {
				upTo[k] = w.upTo
			}
			if len(w.since) > 0 {
				since[k] = w.since
			}
			if w.notEvidence != "" {
				notEvidence[k] = w.notEvidence
			}
		}
	}
	return upTo, since, notEvidence, nil
}

// evidenceReaders is how many tenants loadEvidence reads at once.
const evidenceReaders = 2

// wsEvidence is what the evidence store holds of one workspace.
type wsEvidence struct {
	id string
	// upTo are its successful captures up to the plan's chain head, since
	// those recorded after it, earliest first.
	upTo, since []captured
	// notEvidence is why its latest not-live or not-running capture up to
	// the chain head is no evidence.
	notEvidence string
	row         workspace.Row // as listed with its latest capture
}

// evidenceReader reads the evidence store one tenant at a time, deriving
// each identity once per distinct content and kind, and holding no content
// once its identities are derived. Once maxIdentities identities are kept
// the cache starts over at the next tenant (so it holds at most that many
// and one tenant's): a fleet of distinct configs would otherwise hold one
// for every workspace, tens of MB at 100,000. Content shared with an
// earlier tenant may then be derived once more, never more than once per
// tenant.
type evidenceReader struct {
	s      *evidence.Store
	cat    *catalog.Catalog
	headID int64 // captures with a greater id were recorded after the chain head
	ids    map[idKey]identity.Identity
}

type idKey struct{ sha, kind string }

// maxIdentities bounds the identities an evidenceReader keeps.
const maxIdentities = 1 << 14

func newEvidenceReader(s *evidence.Store, cat *catalog.Catalog, headID int64) *evidenceReader {
	return &evidenceReader{s: s, cat: cat, headID: headID, ids: map[idKey]identity.Identity{}}
}

// tenant returns the evidence of every workspace of tenant that has a
// capture (those keep accepts, all when nil), by workspace id.
func (r *evidenceReader) tenant(ctx context.Context, tenant string, keep func(string) bool) ([]wsEvidence, error) {
	if len(r.ids) >= maxIdentities {
		clear(r.ids)
	}
	var out []wsEvidence
	// fill is where a derived identity goes once its content is read.
	type fill struct {
		ws, i int
		since bool
		key   idKey
	}
	var fills []fill
	pending := map[string][]string{} // sha256 → the kinds it is still to be derived for
	var shas []string                // pending's keys in first-cited order
	firstCite := map[string]int64{}  // sha256 → the first capture citing it, for a refusal
	err := r.s.TenantCaptures(ctx, tenant, func(c *evidence.Capture) error {
		if keep != nil && !keep(c.WorkspaceID) {
			return nil
		}
		if len(out) == 0 || out[len(out)-1].id != c.WorkspaceID {
			out = append(out, wsEvidence{id: c.WorkspaceID})
		}
		w := &out[len(out)-1]
		w.row = c.Row
		recordedSince := c.ID > r.headID
		if !c.IsEvidence() {
			if !recordedSince && (c.Outcome == evidence.NotLive || c.Outcome == evidence.NotRunning || c.Outcome == evidence.Captured) {
				w.notEvidence = fmt.Sprintf("capture %d (%s, source %s): %s", c.ID, c.Outcome, c.SourceClass(), strings.TrimPrefix(c.Reason, "not live: "))
			}
			return nil
		}
		// The kind is the row's as listed with this capture: evidence is
		// what was seen then, whatever the plan's item says.
		ik := idKey{c.SHA256, c.Row.Kind}
		if _, ok := r.ids[ik]; !ok {
			kinds, seen := pending[c.SHA256]
			if !seen {
				shas = append(shas, c.SHA256)
				firstCite[c.SHA256] = c.ID
			}
			if !slices.Contains(kinds, ik.kind) {
				pending[c.SHA256] = append(kinds, ik.kind)
			}
		}
		e := captured{CaptureID: c.ID, SHA256: c.SHA256, CapturedAt: c.EndedAt, Source: c.SourceClass()}
		f := fill{ws: len(out) - 1, since: recordedSince, key: ik}
		if recordedSince {
			f.i = len(w.since)
			w.since = append(w.since, e)
		} else {
			f.i = len(w.upTo)
			w.upTo = append(w.upTo, e)
		}
		fills = append(fills, f)
		return nil
	})
	if err == nil {
		err = r.derive(ctx, shas, pending, firstCite)
	}
	if err != nil {
		return nil, fmt.Errorf("read evidence: %w", err)
	}
	for _, f := range fills {
		dst := out[f.ws].upTo
		if f.since {
			dst = out[f.ws].since
		}
		dst[f.i].Identity = r.ids[f.key]
	}
	return out, nil
}

// derive reads the contents of shas in bulk, hashes each again, and derives
// its identity for every kind pending names, on every CPU: derivation
// parses YAML and is most of a plan's work. The store is read while the
// contents already read are parsed, at most a few per CPU held at once.
func (r *evidenceReader) derive(ctx context.Context, shas []string, pending map[string][]string, firstCite map[string]int64) error {
	type job struct {
		sha   string
		b     []byte
		kinds []string
	}
	type result struct {
		sha string
		ids []identity.Identity // nil: the bytes do not hash to sha
	}
	workers := runtime.GOMAXPROCS(0)
	jobs := make(chan job, 4*workers)
	results := make(chan result, 4*workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				res := result{sha: j.sha}
				if sum := sha256.Sum256(j.b); hex.EncodeToString(sum[:]) == j.sha {
					res.ids = make([]identity.Identity, 0, len(j.kinds))
					for _, kind := range j.kinds {
						res.ids = append(res.ids, identity.DeriveFor(j.b, kind, r.cat))
					}
				}
				results <- res
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	// Results are taken as they come by one goroutine, the only one that
	// writes r.ids while this runs; pending is only read until it ends.
	var wrong, done []string
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for res := range results {
			if res.ids == nil {
				wrong = append(wrong, res.sha)
				continue
			}
			for i, kind := range pending[res.sha] {
				r.ids[idKey{res.sha, kind}] = res.ids[i]
			}
			done = append(done, res.sha)
		}
	}()
	queued := map[string]bool{}
	err := r.s.Contents(ctx, shas, func(sha string, b []byte) error {
		kinds, ok := pending[sha]
		if !ok || queued[sha] {
			return nil
		}
		queued[sha] = true
		select {
		case jobs <- job{sha: sha, b: b, kinds: kinds}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(jobs)
	<-collected
	if err != nil {
		return err
	}
	for _, sha := range done {
		delete(pending, sha)
	}
	if len(wrong) > 0 {
		slices.SortFunc(wrong, func(a, b string) int { return cmp.Compare(firstCite[a], firstCite[b]) })
		return &Refusal{fmt.Sprintf("capture %d: its stored bytes no longer hash to %s; run `backfill verify`", firstCite[wrong[0]], wrong[0])}
	}
	for _, sha := range shas {
		if _, ok := pending[sha]; ok {
			return fmt.Errorf("content %s is not in the evidence store", sha)
		}
	}
	return nil
}
