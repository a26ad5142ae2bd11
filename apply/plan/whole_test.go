package plan

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/inventory"
	"backfill/internal/workspace"
)

// wholeReader is the reader a plan uses: identities from one pass over the
// store for the given tenants' captures up to the head.
func wholeReader(t *testing.T, s *evidence.Store, tenants ...string) *evidenceReader {
	t.Helper()
	ctx := context.Background()
	headID, _, err := s.Head(ctx, "captures")
	if err != nil {
		t.Fatal(err)
	}
	var inv []inventory.Tenant
	for _, name := range tenants {
		inv = append(inv, inventory.Tenant{Name: name})
	}
	r := newEvidenceReader(s, loadCatalog(t), headID)
	r.whole = deriveStore(ctx, s, r.cat, inv, headID)
	t.Cleanup(func() { <-r.whole.done })
	return r
}

// mixedStore holds, for each of tenants, captures of configs that derive
// by every rule, one of them a concierge's, in the order given (so that
// capture ids and workspace ids do not sort alike).
func mixedStore(t *testing.T, tenants ...string) (s *evidence.Store, path string, contents map[evidence.Key][]byte) {
	t.Helper()
	ctx := context.Background()
	s, path = tempStore(t)
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	configs := []struct{ ws, kind, cfg string }{
		{"w-e", "workspace", live(t, "custom-seo-agent.yaml")},
		{"w-d", "workspace", live(t, "explicit-template-key.yaml")},
		{"w-c", "workspace", stubOfAgent},
		{"w-b", "workspace", brokenYAML},
		{"w-a", identity.PlatformKind, conciergeCfg},
		{"w-f", "workspace", noIdentity},
		{"w-g", "workspace", unknownKey},
	}
	contents = map[evidence.Key][]byte{}
	var recs []evidence.Record
	for _, tenant := range tenants {
		for _, c := range configs {
			b := []byte(c.cfg + "# " + tenant + "\n") // every tenant's bytes its own
			contents[evidence.Key{Tenant: tenant, WorkspaceID: c.ws}] = b
			recs = append(recs, &evidence.Capture{Tenant: tenant, WorkspaceID: c.ws, Row: workspace.Row{ID: c.ws, Runtime: "claude-code", Status: "online", Kind: c.kind},
				Method: "file", Target: "t", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: evidence.Captured, Content: b})
		}
	}
	if err := s.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	return s, path, contents
}

// The whole-store pass gives each capture the identity its own bytes and
// kind derive, as deriving tenant by tenant does, and derives only what the
// planned tenants cite: reading the whole content when they cite most of
// it, looking their contents up when they cite a small part.
func TestWholeStorePassMatchesDerivingByTenant(t *testing.T) {
	ctx := context.Background()
	tenants := []string{"t01", "t02", "t03", "t04", "t05", "t06", "t07", "t08", "t09", "t10"}
	s, _, contents := mixedStore(t, tenants...)
	cat := loadCatalog(t)
	_, head, _ := s.Head(ctx, "captures")
	byTenant, _, _, err := loadEvidence(ctx, s, cat, head, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, planned := range [][]string{tenants[:6], tenants[4:5]} { // 42 of 70 contents; 7 of 70
		r := wholeReader(t, s, planned...)
		rules := map[identity.Rule]bool{}
		for _, tenant := range planned {
			ws, err := r.tenant(ctx, tenant, nil)
			if err != nil || len(ws) != 7 {
				t.Fatalf("%s: %d workspaces, %v", tenant, len(ws), err)
			}
			for _, w := range ws {
				k := evidence.Key{Tenant: tenant, WorkspaceID: w.id}
				want := identity.DeriveFor(contents[k], w.row.Kind, cat)
				if len(w.upTo) != 1 || w.upTo[0].Identity != want {
					t.Fatalf("%v: %+v, want %+v", k, w.upTo, want)
				}
				if !slices.Equal(w.upTo, byTenant[k]) {
					t.Fatalf("%v: %+v, deriving by tenant gives %+v", k, w.upTo, byTenant[k])
				}
				rules[want.Rule] = true
			}
		}
		if len(rules) < 6 {
			t.Fatalf("rules covered: %v", rules)
		}
		if n := len(r.whole.ids); n != 7*len(planned) {
			t.Fatalf("the pass derived %d contents, want the %d its tenants cite", n, 7*len(planned))
		}
	}
}

// Equal identities are one value, however many contents derive them.
func TestWholeStorePassSharesEqualIdentities(t *testing.T) {
	s, _, _ := stubStore(t, []string{"t1", "t2"}, 40)
	r := wholeReader(t, s, "t1", "t2")
	if _, err := r.tenant(context.Background(), "t1", nil); err != nil {
		t.Fatal(err)
	}
	ids := map[*identity.Identity]bool{}
	for d := range maps.Values(r.whole.ids) {
		ids[d.id] = true
	}
	if len(r.whole.ids) != 80 || len(ids) != 1 {
		t.Fatalf("%d identity values for %d contents that derive equal ones, want one", len(ids), len(r.whole.ids))
	}
}

// A planned tenant citing content whose bytes were altered is refused,
// naming the earliest capture that cites altered content (not the first
// workspace in order); a tenant whose content is intact still reads.
// Deriving tenant by tenant refuses alike.
func TestWholeStorePassRefusesAlteredContent(t *testing.T) {
	ctx := context.Background()
	s, path, _ := mixedStore(t, "t1", "t2")
	// Captures 11 (w-b) and 12 (w-a) are t2's; w-a sorts first.
	alterContent(t, path, 11, 12)
	r := wholeReader(t, s, "t1", "t2")
	if _, err := r.tenant(ctx, "t1", nil); err != nil {
		t.Fatalf("t1: %v", err)
	}
	_, err := r.tenant(ctx, "t2", nil)
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "capture 11: its stored bytes no longer hash") {
		t.Fatalf("t2: %v, want capture 11 named", err)
	}
	_, head, _ := s.Head(ctx, "captures")
	_, _, _, err = loadEvidence(ctx, s, r.cat, head, nil)
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "capture 11: its stored bytes no longer hash") {
		t.Fatalf("by tenant: %v, want capture 11 named", err)
	}
}

// Captures recorded after the chain head the pass was made for are left
// out: the plan is of the store as of its head, and their content was not
// derived.
func TestWholeStorePassLeavesOutCapturesAfterTheHead(t *testing.T) {
	ctx := context.Background()
	s, _, _ := stubStore(t, []string{"t1"}, 3)
	r := wholeReader(t, s, "t1")
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	later := &evidence.Capture{Tenant: "t1", WorkspaceID: "w-001", Row: workspace.Row{ID: "w-001", Runtime: "claude-code", Status: "online"},
		Method: "file", Target: "t", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: evidence.Captured,
		Content: []byte("name: Hermes Agent\nruntime: hermes\n")}
	if err := s.Append(ctx, later); err != nil {
		t.Fatal(err)
	}
	ws, err := r.tenant(ctx, "t1", nil)
	if err != nil || len(ws) != 3 {
		t.Fatalf("%d workspaces, %v", len(ws), err)
	}
	for _, w := range ws {
		if len(w.upTo) != 1 || len(w.since) != 0 || w.upTo[0].CaptureID > 3 {
			t.Fatalf("%s: up to head %+v, since %+v", w.id, w.upTo, w.since)
		}
	}
}

// A concierge's capture gets the identity its kind gives, whatever its
// content derives to, as DeriveFor gives it.
func TestWholeStorePassGivesAConciergeItsKindsIdentity(t *testing.T) {
	ctx := context.Background()
	s, _, _ := stubStore(t, []string{"t1"}, 1)
	at := time.Date(2026, 11, 28, 9, 0, 0, 0, time.UTC)
	cfg := []byte("name: SEO Agent\nruntime: claude-code\n# t1 0\n") // the stub's own bytes: one content, two kinds
	if err := s.Append(ctx, &evidence.Capture{Tenant: "t1", WorkspaceID: "w-org", Row: workspace.Row{ID: "w-org", Runtime: "claude-code", Status: "online", Kind: identity.PlatformKind},
		Method: "file", Target: "t", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: evidence.Captured, Content: cfg}); err != nil {
		t.Fatal(err)
	}
	r := wholeReader(t, s, "t1")
	ws, err := r.tenant(ctx, "t1", nil)
	if err != nil || len(ws) != 2 {
		t.Fatalf("%d workspaces, %v", len(ws), err)
	}
	for _, w := range ws {
		want := identity.DeriveFor(cfg, w.row.Kind, r.cat)
		if got := w.upTo[0].Identity; got != want || w.upTo[0].SHA256 != ws[0].upTo[0].SHA256 {
			t.Fatalf("%s (kind %q): %+v, want %+v", w.id, w.row.Kind, got, want)
		}
	}
	if ws[1].upTo[0].Identity.Rule != identity.RulePlatformKind || ws[0].upTo[0].Identity.Rule != identity.RuleStub {
		t.Fatalf("rules %s and %s, want stub and platform-kind", ws[0].upTo[0].Identity.Rule, ws[1].upTo[0].Identity.Rule)
	}
}

func TestKeyOf(t *testing.T) {
	const sha = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	k, ok := keyOf(sha)
	if !ok || k[0] != 0x9f || k[31] != 0x08 {
		t.Fatalf("%x %v", k, ok)
	}
	for _, bad := range []string{"", sha[:62], sha + "00", strings.ToUpper(sha), "g" + sha[1:], " " + sha[1:]} {
		if _, ok := keyOf(bad); ok {
			t.Errorf("keyOf(%q) accepted", bad)
		}
	}
}
