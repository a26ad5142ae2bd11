package plan

import (
	"bytes"
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
	"backfill/internal/inventory"
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
// reconciliation would not produce. records are the CP records read again:
// their digest must be the plan's and each item's claim what they give.
// Any mismatch refuses the whole plan, naming the item.
func Rederive(ctx context.Context, p *Plan, s *evidence.Store, cat *catalog.Catalog, records *cp.Records) error {
	refuse := func(format string, args ...any) error {
		return &Refusal{fmt.Sprintf(format, args...)}
	}
	if got := cat.Digest(); got != p.Inputs.Catalog.SHA256 {
		return refuse("the catalog has digest %s, the plan was made with %s (%s): pass the plan's catalog with --catalog",
			got, p.Inputs.Catalog.SHA256, p.Inputs.Catalog.Path)
	}
	if records == nil {
		return refuse("no CP records to check the plan's claims against")
	}
	if records.Digest() != p.Inputs.CP.SHA256 {
		return refuse("the CP records have digest %s, the plan was made with %s", records.Digest(), p.Inputs.CP.SHA256)
	}
	agreed := p.Agreed()
	if len(agreed) == 0 {
		return nil
	}
	if err := checkListedDatabases(ctx, p, s, agreed); err != nil {
		return err
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
	// Sources (file:line, query row) only point a reviewer at the records:
	// a CP table's rows may come back in another order, a file may move or
	// be converted, and the digest already covers every claim.
	if tpls, level, _ := records.For(it.Tenant, it.WorkspaceID); !slices.Equal(tpls, claim.Templates) || level != claim.Level {
		return fmt.Errorf("its CP claim %v (%s) is not what the CP records give: %v (%s)", claim.Templates, claim.Level, tpls, level)
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
// notEvidence says, per workspace, why its latest capture up to head that
// is no evidence and not gone is none, for a no-evidence verdict's reason.
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
	// notEvidence is why its latest capture up to the chain head that is
	// no evidence (not-live, not-running, failed) is none.
	notEvidence string
	row         workspace.Row // as listed with its latest capture
}

// evidenceReader reads the evidence store one tenant at a time and gives
// each capture its content's identity, derived once per distinct content,
// holding no content once it is derived. Either the identities come from a
// pass over the whole store made before (whole: a plan, which reads most of
// the store's content), or those of each tenant's contents are derived as
// the tenant is read (loadEvidence, which reads only the items it checks);
// then, once maxIdentities identities are kept, the cache starts over at
// the next tenant (so it holds at most that many and one tenant's): a fleet
// of distinct configs would otherwise hold one for every workspace. Content
// shared with an earlier tenant may then be derived once more, never more
// than once per tenant.
type evidenceReader struct {
	s      *evidence.Store
	cat    *catalog.Catalog
	headID int64                  // captures with a greater id were recorded after the chain head
	whole  *storeIdentities       // nil: derive each tenant's contents
	ids    map[string]*derivation // by content sha256, when not whole
}

// derivation is one content's identity, once derived.
type derivation struct {
	id    *identity.Identity // nil until derived, and when wrong or missing
	wrong bool               // the stored bytes do not hash to the sha256
}

// maxIdentities bounds the identities an evidenceReader keeps when it
// derives them tenant by tenant.
const maxIdentities = 1 << 14

func newEvidenceReader(s *evidence.Store, cat *catalog.Catalog, headID int64) *evidenceReader {
	return &evidenceReader{s: s, cat: cat, headID: headID, ids: map[string]*derivation{}}
}

// tenant returns the evidence of every workspace of tenant that has a
// capture (those keep accepts, all when nil), by workspace id. Reading
// from a whole-store pass, it leaves out the captures recorded after the
// chain head: the pass derives only what the head's captures cite, and a
// plan is of the store as of its head.
func (r *evidenceReader) tenant(ctx context.Context, tenant string, keep func(string) bool) ([]wsEvidence, error) {
	var out []wsEvidence
	// fill is where a capture's identity goes once its content's is known.
	type fill struct {
		ws, i     int
		since     bool
		sha, kind string
	}
	var fills []fill
	var cited []string              // the contents cited, in first-cited order
	firstCite := map[string]int64{} // sha256 → the first capture citing it, for a refusal
	err := r.s.TenantCaptures(ctx, tenant, func(c *evidence.Capture) error {
		if keep != nil && !keep(c.WorkspaceID) {
			return nil
		}
		recordedSince := c.ID > r.headID
		if recordedSince && r.whole != nil {
			return nil
		}
		if len(out) == 0 || out[len(out)-1].id != c.WorkspaceID {
			out = append(out, wsEvidence{id: c.WorkspaceID})
		}
		w := &out[len(out)-1]
		w.row = c.Row
		if !c.IsEvidence() {
			// Every outcome but gone says why there is no evidence (a
			// failure the reviewer may want to look into, an EC2 read
			// refused); gone already says the workspace went.
			switch {
			case recordedSince:
			case c.Outcome == evidence.Gone:
				w.notEvidence = ""
			default:
				w.notEvidence = fmt.Sprintf("capture %d (%s, source %s): %s", c.ID, c.Outcome, c.SourceClass(), strings.TrimPrefix(c.Reason, "not live: "))
			}
			return nil
		}
		if _, ok := firstCite[c.SHA256]; !ok {
			firstCite[c.SHA256] = c.ID
			cited = append(cited, c.SHA256)
		}
		e := captured{CaptureID: c.ID, SHA256: c.SHA256, CapturedAt: c.EndedAt, Source: c.SourceClass()}
		// The kind is the row's as listed with this capture: evidence is
		// what was seen then, whatever the plan's item says.
		f := fill{ws: len(out) - 1, since: recordedSince, sha: c.SHA256, kind: c.Row.Kind}
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
		err = r.identify(ctx, cited, firstCite)
	}
	if err != nil {
		return nil, fmt.Errorf("read evidence: %w", err)
	}
	for _, f := range fills {
		dst := out[f.ws].upTo
		if f.since {
			dst = out[f.ws].since
		}
		if id, ok := identity.ByKind(f.kind, r.cat); ok {
			dst[f.i].Identity = id
		} else {
			dst[f.i].Identity = *r.derived(f.sha).id
		}
	}
	return out, nil
}

// identify makes sure r.ids holds the identity of every content in cited:
// from the whole-store pass, or derived now for those it lacks. It refuses
// when a content's stored bytes no longer hash to its sha256, naming the
// first capture that cites it.
func (r *evidenceReader) identify(ctx context.Context, cited []string, firstCite map[string]int64) error {
	if r.whole != nil {
		if err := r.whole.wait(ctx); err != nil {
			return err
		}
	} else {
		if len(r.ids) >= maxIdentities {
			clear(r.ids)
		}
		var need []string
		for _, sha := range cited {
			if _, ok := r.ids[sha]; !ok {
				r.ids[sha] = &derivation{}
				need = append(need, sha)
			}
		}
		if len(need) > 0 {
			err := deriveContents(ctx, r.cat, func(fn func(string, []byte) error) error {
				return r.s.Contents(ctx, need, fn)
			}, func(sha string) *derivation { return r.ids[sha] })
			if err != nil {
				return err
			}
		}
	}
	var bad []string
	for _, sha := range cited {
		if d := r.derived(sha); d != nil && d.wrong {
			bad = append(bad, sha)
		}
	}
	if len(bad) > 0 {
		sha := slices.MinFunc(bad, func(a, b string) int { return cmp.Compare(firstCite[a], firstCite[b]) })
		return &Refusal{fmt.Sprintf("capture %d: its stored bytes no longer hash to %s; run `backfill verify`", firstCite[sha], sha)}
	}
	for _, sha := range cited {
		if d := r.derived(sha); d == nil || d.id == nil {
			return fmt.Errorf("content %s is not in the evidence store", sha)
		}
	}
	return nil
}

// derived returns the derivation of a content, nil when there is none.
func (r *evidenceReader) derived(sha string) *derivation {
	if r.whole == nil {
		return r.ids[sha]
	}
	k, ok := keyOf(sha)
	if !ok {
		return nil
	}
	return r.whole.ids[k]
}

// storeIdentities is a pass over the evidence store, on its own goroutine,
// deriving the identity of every content that a capture of the plan's
// tenants up to the chain head cites. A plan usually reads most of a
// store's content, and reading it as it lies costs a fraction of looking
// each up tenant by tenant (100,000 captures of 2 KiB: 0.4 s against 3.2 s
// of CPU); when the plan's tenants cite only a small part of it, that part
// is looked up instead. It holds one identity per distinct content cited
// until the plan ends: about 60 bytes each, and an identity's own (a
// couple of hundred bytes) when it is not equal to another's.
type storeIdentities struct {
	done chan struct{} // closed when the pass has ended
	ids  map[contentKey]*derivation
	err  error
}

// contentKey is a content's sha256 as bytes: half the memory of its hex in a
// map of every content a plan cites.
type contentKey [sha256.Size]byte

// keyOf decodes a sha256 written as the store writes it (64 lowercase hex
// digits); false for anything else, which no content's bytes hash to.
func keyOf(sha string) (k contentKey, ok bool) {
	if len(sha) != 2*len(k) {
		return k, false
	}
	for i := range k {
		hi, ok1 := nibble(sha[2*i])
		lo, ok2 := nibble(sha[2*i+1])
		if !ok1 || !ok2 {
			return k, false
		}
		k[i] = hi<<4 | lo
	}
	return k, true
}

func nibble(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// deriveStore starts the pass for tenants' captures up to headID.
func deriveStore(ctx context.Context, s *evidence.Store, cat *catalog.Catalog, tenants []inventory.Tenant, headID int64) *storeIdentities {
	planned := map[string]bool{}
	for _, t := range tenants {
		planned[t.Name] = true
	}
	si := &storeIdentities{done: make(chan struct{})}
	go func() {
		defer close(si.done)
		ids := map[contentKey]*derivation{}
		citations := 0
		err := s.Citations(ctx, headID, func(tenant, sha string) error {
			citations++
			if k, ok := keyOf(sha); ok && planned[tenant] && ids[k] == nil {
				ids[k] = &derivation{}
			}
			return nil
		})
		si.ids = ids
		if err != nil || len(ids) == 0 {
			si.err = err
			return
		}
		read := func(fn func(string, []byte) error) error { return s.AllContents(ctx, fn) }
		if len(ids)*sparseCited < citations {
			shas := make([]string, 0, len(ids))
			for k := range ids {
				shas = append(shas, hex.EncodeToString(k[:]))
			}
			read = func(fn func(string, []byte) error) error { return s.Contents(ctx, shas, fn) }
		}
		si.err = deriveContents(ctx, cat, read, func(sha string) *derivation {
			if k, ok := keyOf(sha); ok {
				return ids[k]
			}
			return nil
		})
	}()
	return si
}

// sparseCited: when the plan's tenants cite fewer than one content in this
// many citations, the pass looks its contents up rather than read them
// all (a lookup costs about eight times a row read in passing).
const sparseCited = 8

// wait returns once the pass has ended, with its error.
func (si *storeIdentities) wait(ctx context.Context) error {
	select {
	case <-si.done:
		return si.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// deriveContents derives, on every CPU, the identity of each content read
// hands it that has a derivation (slot gives nil for the others), after
// hashing its bytes again: derivation parses YAML and is most of a plan's
// work. read runs on the calling goroutine while the contents it has handed
// over are parsed, at most a few per CPU held at once; it must hand over
// each content once, and its bytes are copied. Equal identities share one
// value. It returns once every derivation read reached is filled in.
func deriveContents(ctx context.Context, cat *catalog.Catalog, read func(func(sha string, b []byte) error) error, slot func(sha string) *derivation) error {
	type job struct {
		sha string
		b   []byte
		d   *derivation
	}
	type result struct {
		id identity.Identity
		ok bool // the bytes hash to the sha256
		d  *derivation
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
				res := result{d: j.d}
				if sum := sha256.Sum256(j.b); hex.EncodeToString(sum[:]) == j.sha {
					res.id, res.ok = identity.Derive(j.b, cat), true
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
	// writes derivations until it ends.
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		same := map[identity.Identity]*identity.Identity{}
		for res := range results {
			if !res.ok {
				res.d.wrong = true
				continue
			}
			id, ok := same[res.id]
			if !ok {
				id = &res.id
				same[res.id] = id
			}
			res.d.id = id
		}
	}()
	err := read(func(sha string, b []byte) error {
		d := slot(sha)
		if d == nil {
			return nil
		}
		select {
		case jobs <- job{sha: sha, b: bytes.Clone(b), d: d}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(jobs)
	<-collected
	return err
}

// checkListedDatabases refuses a plan that would write to a tenant in
// another database than the one its evidence was listed from, unless the
// plan says so (MovedFrom, which plan --allow-moved records): a plan whose
// databases were edited to name a copy, together with a DSN pointed at it,
// would otherwise write the evidence's values there and leave the tenant's
// own database as it was. Listings made before schema 11 name no database
// and check nothing.
func checkListedDatabases(ctx context.Context, p *Plan, s *evidence.Store, agreed []Item) error {
	listed, err := s.ListedDatabases(ctx)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, it := range agreed {
		if seen[it.Tenant] || len(listed[it.Tenant]) == 0 {
			continue
		}
		seen[it.Tenant] = true
		// The entry apply reads too (one a tenant: ParsePlan refuses more).
		d := p.DatabaseEntry(it.Tenant)
		if d == nil || d.Unreachable != "" {
			return &Refusal{fmt.Sprintf("tenant %q: the plan writes there but records no database it read", it.Tenant)}
		}
		for _, l := range listed[it.Tenant] {
			if l != d.Ident() && !slices.Contains(d.MovedFrom, l) {
				return &Refusal{fmt.Sprintf("tenant %q: the plan records %s, but its evidence was listed from %s, and the plan does not say it moved (plan --allow-moved): "+
					"the plan is refused whole", it.Tenant, d.Ident(), l)}
			}
		}
	}
	return nil
}
