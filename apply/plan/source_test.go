package plan

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/internal/evidence"
	"backfill/internal/identity"
	"backfill/internal/source"
	"backfill/internal/workspace"
)

// Only captured rows from an evidence source are evidence: a not-live
// answer (a template folder's file, however much it looks like the
// template) never is, and names itself in the no-evidence reason; a host
// mirror's capture is evidence, labelled.
func TestLoadEvidenceBySource(t *testing.T) {
	ctx := context.Background()
	cat := loadCatalog(t)
	s, _ := tempStore(t)
	seo := live(t, "custom-seo-agent.yaml")
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	c := func(ws, outcome, src, method, content, reason string) *evidence.Capture {
		cp := &evidence.Capture{Tenant: "acme", WorkspaceID: ws, Row: workspace.Row{ID: ws, Name: "SEO Agent", Runtime: "claude-code", Status: "online", Kind: "workspace"},
			Method: method, Target: "t", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: outcome, Reason: reason, Source: src}
		if content != "" {
			cp.Content = []byte(content)
		}
		return cp
	}
	if err := s.Append(ctx,
		c("w-template", evidence.NotLive, source.TemplateDir, "files_api", seo, "not live: the files API answered from the template folder named like the workspace (source template-dir)"),
		c("w-mirror", evidence.Captured, source.HostMirror, "files_api", seo, ""),
		c("w-stopped", evidence.NotRunning, source.Exec, "exec", "", "container ws-x is not running"),
		c("w-http", evidence.Captured, source.Unverified, "http", seo, ""),
		c("w-legacy", evidence.Captured, "", "file", seo, ""),
	); err != nil {
		t.Fatal(err)
	}
	_, head, _ := s.Head(ctx, "captures")
	ev, _, why, err := loadEvidence(ctx, s, cat, head, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := func(ws string) evidence.Key { return evidence.Key{Tenant: "acme", WorkspaceID: ws} }
	if len(ev[k("w-template")]) != 0 || len(ev[k("w-stopped")]) != 0 {
		t.Fatalf("not-live or not-running taken as evidence: %+v", ev)
	}
	for ws, src := range map[string]string{"w-mirror": source.HostMirror, "w-http": source.Unverified, "w-legacy": source.File} {
		if e := ev[k(ws)]; len(e) != 1 || e[0].Source != src {
			t.Errorf("%s: %+v, want one capture from %s", ws, e, src)
		}
	}
	d := reconcile(reconcileInput{Captures: ev[k("w-template")], Claim: cpClaim{Templates: []string{"seo-agent"}, Level: "tenant"},
		Row: &workspace.Row{Runtime: "claude-code", Status: "online", Kind: "workspace"}, Catalog: cat, NotEvidence: why[k("w-template")]})
	if d.Verdict != NoEvidence || !strings.Contains(d.Reason, "no live evidence: capture 1 (not-live, source template-dir): the files API answered from the template folder") {
		t.Fatalf("template-folder answer: %s %q", d.Verdict, d.Reason)
	}
	if !strings.Contains(why[k("w-stopped")], "capture 3 (not-running, source exec): container ws-x is not running") {
		t.Fatalf("not-running reason: %q", why[k("w-stopped")])
	}
}

// The report counts the writes per evidence source and says how many rest
// on unverified ones.
func TestReportCountsWritesBySource(t *testing.T) {
	item := func(ws, src string) Item {
		return Item{Tenant: "acme", WorkspaceID: ws, Verdict: Agree, Action: &Action{SetTemplate: "seo-agent"},
			Evidence: &ItemEvidence{CaptureID: 1, Template: "seo-agent", Rule: "display-name", Source: src}, CP: &ItemCP{Templates: []string{"seo-agent"}}}
	}
	p := &Plan{FormatVersion: FormatVersion, Counts: map[string]int{string(Agree): 5},
		Items: []Item{item("a", source.Container), item("b", source.Unverified), item("c", source.Unverified), item("d", source.HostMirror), item("e", "")}}
	var b strings.Builder
	if err := WriteReport(&b, p, "plan.json", nil); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| container | 1 | the workspace's running container |",
		"| host-mirror | 1 | the host's copy of /configs from the workspace's last provision",
		"| unverified | 2 | a generic HTTP answer",
		"| not recorded | 1 |",
		"**2 writes rest on unverified sources**",
		"1 writes rest on host-mirror captures",
		"capture 1 (unverified): display-name → seo-agent",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}

// stubStore is a store holding, for each tenant, per captured stub configs
// (each with distinct bytes), numbered from 1 in tenant order.
func stubStore(t *testing.T, tenants []string, per int) (s *evidence.Store, path, head string) {
	t.Helper()
	ctx := context.Background()
	s, path = tempStore(t)
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var recs []evidence.Record
	for _, tenant := range tenants {
		for i := range per {
			ws := fmt.Sprintf("w-%03d", i)
			recs = append(recs, &evidence.Capture{Tenant: tenant, WorkspaceID: ws, Row: workspace.Row{ID: ws, Runtime: "claude-code", Status: "online"},
				Method: "file", Target: "t", StartedAt: at, EndedAt: at, Attempt: 1, Outcome: evidence.Captured,
				Content: fmt.Appendf(nil, "name: SEO Agent\nruntime: claude-code\n# %s %d\n", tenant, i)})
		}
	}
	if err := s.Append(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	_, head, err := s.Head(ctx, "captures")
	if err != nil {
		t.Fatal(err)
	}
	return s, path, head
}

// alterContent changes the stored bytes cited by the given captures, with
// the append-only trigger dropped, as someone editing the file would.
func alterContent(t *testing.T, path string, ids ...int64) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("DROP TRIGGER content_no_update"); err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if _, err := db.Exec("UPDATE content SET bytes = CAST(CAST(bytes AS TEXT) || '# altered' AS BLOB) WHERE sha256 = (SELECT sha256 FROM captures WHERE id = ?)", id); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLoadEvidenceRefusesAlteredContent: content whose stored bytes no
// longer hash to their sha256 (altered after verify ran) refuses the read,
// naming the earliest capture that cites it, whichever of the many contents
// read at once it is; the others derive.
func TestLoadEvidenceRefusesAlteredContent(t *testing.T) {
	ctx := context.Background()
	cat := loadCatalog(t)
	s, path, head := stubStore(t, []string{"acme"}, 300)
	if ev, _, _, err := loadEvidence(ctx, s, cat, head, nil); err != nil || len(ev) != 300 {
		t.Fatalf("%d workspaces with evidence, %v", len(ev), err)
	}
	alterContent(t, path, 250, 120)
	_, _, _, err := loadEvidence(ctx, s, cat, head, nil)
	var ref *Refusal
	if !errors.As(err, &ref) || !strings.Contains(err.Error(), "capture 120: its stored bytes no longer hash") {
		t.Fatalf("altered content: %v", err)
	}
}

// Tenants are read two at a time; when several cannot be read, the first in
// order is the one reported, whichever reader failed first, and tenants that
// read well give the same evidence as when read one at a time.
func TestLoadEvidenceAcrossTenantsReportsTheFirstFailure(t *testing.T) {
	ctx := context.Background()
	cat := loadCatalog(t)
	s, path, head := stubStore(t, []string{"t1", "t2", "t3", "t4", "t5"}, 40)
	ev, _, _, err := loadEvidence(ctx, s, cat, head, nil)
	if err != nil || len(ev) != 200 {
		t.Fatalf("%d workspaces with evidence, %v", len(ev), err)
	}
	for k, caps := range ev {
		if len(caps) != 1 || caps[0].Identity.Rule != identity.RuleStub {
			t.Fatalf("%v: %+v", k, caps)
		}
	}
	// Capture 190 is t5's, 70 is t2's: t2 comes first.
	alterContent(t, path, 190, 70)
	for range 5 {
		_, _, _, err = loadEvidence(ctx, s, cat, head, nil)
		var ref *Refusal
		if !errors.As(err, &ref) || !strings.Contains(err.Error(), "capture 70: its stored bytes no longer hash") {
			t.Fatalf("altered content in two tenants: %v, want t2's capture 70 named", err)
		}
	}
}

// tempStore is a new evidence store in a test's temporary directory, closed
// when the test ends, and its path.
func tempStore(t *testing.T) (*evidence.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "evidence.db")
	s, err := evidence.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}
