package plan

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/internal/catalog"
	"backfill/internal/fixture"
	"backfill/internal/identity"
	"backfill/internal/workspace"
)

func loadCatalog(t testing.TB) *catalog.Catalog {
	t.Helper()
	cat, err := catalog.Load(fixture.CatalogDir(t))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

func live(t testing.TB, name string) string {
	t.Helper()
	return string(fixture.Live(name))
}

// Config bytes used across the table: real shapes from the platform.
const (
	hermesDefault = "name: Hermes Agent\nruntime: hermes\nruntime_config:\n  model: nous-hermes-3-70b\nskills: []\n"
	// conciergeCfg is the platform-agent template with a user's edit.
	conciergeCfg = "name: Org Concierge\ndescription: routes requests\nversion: 2.1.0\ntier: 3\nruntime: claude-code\nruntime_config:\n  model: sonnet\n  timeout: 0\nprompt_files:\n  - prompts/concierge.md\nplugins:\n  - molecule-hitl\ntemplate_schema_version: 1\n"
	unknownKey   = "name: Custom\ntemplate: research-agent\nruntime: claude-code\n"
	noIdentity   = "name: My Own Thing\nruntime: claude-code\nplugins: [x]\n"
	brokenYAML   = "name: [unclosed\n"
	stubOfAgent  = "name: backend-2\ndescription: x\nversion: 1.0.0\ntier: 2\nruntime: claude-code\nruntime_config:\n  model: sonnet\n"
)

func TestReconcileVerdictTable(t *testing.T) {
	cat := loadCatalog(t)
	seo := live(t, "custom-seo-agent.yaml")
	restarted := live(t, "runtime-default-after-restart.yaml")
	stubNamedSEO := live(t, "stub-named-like-a-template.yaml")
	explicitDefault := live(t, "explicit-template-key.yaml")

	caps := func(contents ...string) []captured {
		var out []captured
		for i, c := range contents {
			out = append(out, captured{CaptureID: int64(i + 1), SHA256: fmt.Sprint(i), CapturedAt: time.Unix(int64(i), 0),
				Identity: identity.Derive([]byte(c), cat)})
		}
		return out
	}
	row := func(runtime, template, status string) *workspace.Row {
		return &workspace.Row{ID: "w", Name: "w", Runtime: runtime, Template: template, Status: status, Kind: "workspace"}
	}
	tenantClaim := func(tpl ...string) cpClaim {
		return cpClaim{Templates: tpl, Level: "tenant", Sources: []string{"cp.csv:2"}}
	}
	wsClaim := func(tpl ...string) cpClaim {
		return cpClaim{Templates: tpl, Level: "workspace", Sources: []string{"cp.csv:5"}}
	}

	cases := []struct {
		name      string
		in        reconcileInput
		verdict   Verdict
		set       string
		drift     bool
		reason    string // a fragment the reason must contain
		noteCount int
	}{
		{name: "tenant unreachable", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Unreachable: "connect: refused"}, verdict: Unreachable, reason: "connect: refused"},
		{name: "unreachable wins over a row that is gone", in: reconcileInput{Unreachable: "timeout"}, verdict: Unreachable},
		{name: "row gone", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent")}, verdict: Removed, reason: "no longer exists"},
		{name: "row removed since snapshot", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "removed")}, verdict: Removed},
		{name: "removed wins over already-set", in: reconcileInput{Row: row("claude-code", "seo-agent", "removed")}, verdict: Removed},
		{name: "already set, matching", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "seo-agent", "online")}, verdict: AlreadySet},
		{name: "already set, matching after case and -default folding", in: reconcileInput{Captures: caps(restarted), Row: row("claude-code", "Claude-Code", "online")}, verdict: AlreadySet},
		{name: "already set since snapshot, differs from evidence: drift", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "platform-agent", "online")},
			verdict: AlreadySet, drift: true, reason: "evidence names seo-agent"},
		{name: "already set, differs from CP only: drift", in: reconcileInput{Captures: caps(stubNamedSEO), Claim: tenantClaim("platform-agent"), Row: row("claude-code", "seo-agent", "online")},
			verdict: AlreadySet, drift: true, reason: "CP claims platform-agent"},
		{name: "already set without evidence", in: reconcileInput{Row: row("claude-code", "seo-agent", "online")}, verdict: AlreadySet},
		{name: "no evidence", in: reconcileInput{Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: NoEvidence},
		{name: "stub whose name equals a template's display name", in: reconcileInput{Captures: caps(stubNamedSEO), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: StubEvidence, reason: "stub"},
		{name: "plain stub", in: reconcileInput{Captures: caps(stubOfAgent), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: StubEvidence},
		{name: "stub earliest, custom later is still stub-evidence", in: reconcileInput{Captures: caps(stubNamedSEO, seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: StubEvidence},
		{name: "explicit template key not in catalog", in: reconcileInput{Captures: caps(unknownKey), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: UnknownTemplate, reason: `"research-agent", which is not in the catalog`},
		{name: "name matches nothing", in: reconcileInput{Captures: caps(noIdentity), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: UnknownTemplate},
		{name: "invalid YAML", in: reconcileInput{Captures: caps(brokenYAML), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: UnknownTemplate},
		{name: "look-alike letter in display name", in: reconcileInput{Captures: caps(strings.Replace(seo, "SEO Agent", "SEO Agеnt", 1)), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: UnknownTemplate},
		{name: "template whose runtime differs from the row's", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("hermes", "", "online")},
			verdict: RuntimeMismatch, reason: `runs "hermes"`},
		{name: "earliest custom, later a different custom template", in: reconcileInput{Captures: caps(seo, conciergeCfg), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: UnstableEvidence, reason: "capture 2 names platform-agent"},
		{name: "earliest default, later custom", in: reconcileInput{Captures: caps(restarted, seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: UnstableEvidence},
		{name: "runtime default", in: reconcileInput{Captures: caps(restarted), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: Default},
		{name: "explicit template key naming the default", in: reconcileInput{Captures: caps(explicitDefault), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: Default},
		{name: "runtime default named like the runtime", in: reconcileInput{Captures: caps(hermesDefault), Row: row("hermes", "", "online")}, verdict: Default},
		{name: "default with a workspace claim naming the default", in: reconcileInput{Captures: caps(restarted), Claim: wsClaim("claude-code-default"), Row: row("claude-code", "", "online")}, verdict: Default},
		{name: "default evidence against a workspace-level claim: conflict", in: reconcileInput{Captures: caps(restarted), Claim: wsClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: Conflict, reason: "CP claims seo-agent"},
		{name: "cp missing", in: reconcileInput{Captures: caps(seo), Row: row("claude-code", "", "online")}, verdict: CPMissing},
		{name: "two different claims for the same key", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("platform-agent", "seo-agent"), Row: row("claude-code", "", "online")},
			verdict: CPAmbiguous, reason: "platform-agent, seo-agent"},
		{name: "claims differing only in case are one claim", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("SEO-Agent", "seo-agent"), Row: row("claude-code", "", "online")},
			verdict: Agree, set: "seo-agent"},
		{name: "conflict", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("platform-agent"), Row: row("claude-code", "", "online")}, verdict: Conflict},
		{name: "conflict with a claim not in the catalog", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("research-agent"), Row: row("claude-code", "", "online")}, verdict: Conflict},
		{name: "workspace-level claim overrides tenant-wide: agree", in: reconcileInput{Captures: caps(conciergeCfg), Claim: wsClaim("platform-agent"), Row: row("claude-code", "", "online")},
			verdict: Agree, set: "platform-agent", reason: "workspace claim"},
		{name: "agree by display name", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")}, verdict: Agree, set: "seo-agent"},
		{name: "agree by explicit key with odd case and spaces", in: reconcileInput{Captures: caps("name: x\ntemplate: '  SEO-Agent '\nruntime: claude-code\n"), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: Agree, set: "seo-agent"},
		{name: "earliest custom, later default: agree with a note", in: reconcileInput{Captures: caps(seo, restarted), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: Agree, set: "seo-agent", noteCount: 1},
		{name: "earliest custom, later stub: agree with a note", in: reconcileInput{Captures: caps(seo, stubOfAgent, seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "online")},
			verdict: Agree, set: "seo-agent", noteCount: 1},
		{name: "NULL status: agree with a note that apply cannot match it", in: reconcileInput{Captures: caps(seo), Claim: tenantClaim("seo-agent"), Row: row("claude-code", "", "")},
			verdict: Agree, set: "seo-agent", noteCount: 1},
		{name: "concierge platform row", in: reconcileInput{Captures: caps(conciergeCfg), Claim: tenantClaim("platform-agent"), Row: &workspace.Row{ID: "c", Runtime: "claude-code", Status: "online", Kind: "platform"}},
			verdict: Agree, set: "platform-agent"},
	}
	seen := map[Verdict]bool{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Catalog = cat
			d := reconcile(tc.in)
			seen[d.Verdict] = true
			if d.Verdict != tc.verdict {
				t.Fatalf("verdict %s (%s), want %s", d.Verdict, d.Reason, tc.verdict)
			}
			if d.Set != tc.set {
				t.Errorf("set %q, want %q", d.Set, tc.set)
			}
			if d.Drift != tc.drift {
				t.Errorf("drift %v, want %v (%s)", d.Drift, tc.drift, d.Reason)
			}
			if !strings.Contains(d.Reason, tc.reason) || d.Reason == "" {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reason)
			}
			if len(d.Notes) != tc.noteCount {
				t.Errorf("notes %q, want %d", d.Notes, tc.noteCount)
			}
			if again := reconcile(tc.in); fmt.Sprint(again) != fmt.Sprint(d) {
				t.Errorf("not deterministic: %v then %v", d, again)
			}
		})
	}
	for _, v := range Verdicts {
		if !seen[v] {
			t.Errorf("no case reaches verdict %s", v)
		}
	}
}

// TestOnlyAgreeWrites checks the invariant the apply phase relies on, over
// every combination of a small set of inputs.
func TestOnlyAgreeWrites(t *testing.T) {
	cat := loadCatalog(t)
	contents := []string{live(t, "custom-seo-agent.yaml"), live(t, "runtime-default-after-restart.yaml"),
		live(t, "stub-named-like-a-template.yaml"), conciergeCfg, unknownKey, brokenYAML}
	claims := []cpClaim{{}, {Templates: []string{"seo-agent"}, Level: "tenant"}, {Templates: []string{"platform-agent"}, Level: "workspace"},
		{Templates: []string{"seo-agent", "platform-agent"}, Level: "tenant"}}
	rows := []*workspace.Row{nil, {Runtime: "claude-code", Status: "online"}, {Runtime: "claude-code", Template: "seo-agent", Status: "online"},
		{Runtime: "hermes", Status: "online"}, {Runtime: "claude-code", Status: "removed"}}
	n := 0
	for _, c1 := range append(contents, "") {
		for _, c2 := range append(contents, "") {
			var caps []captured
			for i, c := range []string{c1, c2} {
				if c != "" {
					caps = append(caps, captured{CaptureID: int64(i + 1), Identity: identity.Derive([]byte(c), cat)})
				}
			}
			for _, cl := range claims {
				for _, r := range rows {
					d := reconcile(reconcileInput{Captures: caps, Claim: cl, Row: r, Catalog: cat})
					n++
					if (d.Set != "") != (d.Verdict == Agree) {
						t.Fatalf("verdict %s with set %q", d.Verdict, d.Set)
					}
					if d.Verdict == Agree {
						if r == nil || r.Template != "" || r.Status == "removed" {
							t.Fatalf("agree on row %+v", r)
						}
						if tpl, ok := cat.Lookup(d.Set); !ok || tpl.Name != d.Set || tpl.Default {
							t.Fatalf("agree writes %q, not a canonical non-default catalog name", d.Set)
						}
						if len(cl.Templates) == 0 {
							t.Fatal("agree without a CP claim")
						}
					}
				}
			}
		}
	}
	t.Logf("%d combinations", n)
}

// TestVerdictSetNeedsFormatVersion fails when the verdict set changes
// without a new plan format version: plans seal their counts over their
// version's verdicts, so a silent change would refuse every plan already
// written. Add the new version's list here when you bump FormatVersion.
func TestVerdictSetNeedsFormatVersion(t *testing.T) {
	v1 := []Verdict{"removed", "already-set", "no-evidence", "stub-evidence", "unknown-template", "runtime-mismatch",
		"unstable-evidence", "default", "cp-missing", "cp-ambiguous", "conflict", "agree"}
	released := map[int][]Verdict{
		1: v1,
		2: append([]Verdict{"unreachable"}, v1...),
	}
	if _, ok := released[FormatVersion]; !ok {
		t.Fatalf("FormatVersion %d has no released verdict list in this test: add it", FormatVersion)
	}
	if !slices.Equal(Verdicts, released[FormatVersion]) {
		t.Fatalf("Verdicts changed under format version %d: bump FormatVersion and teach verdictsFor the old list\n got %v\nwant %v",
			FormatVersion, Verdicts, released[FormatVersion])
	}
	for v := minFormatVersion; v <= FormatVersion; v++ {
		if !slices.Equal(verdictsFor(v), released[v]) {
			t.Errorf("verdictsFor(%d) = %v, released %v", v, verdictsFor(v), released[v])
		}
	}
}

// TestConciergeOnAnyRuntime: a concierge row derives platform-agent from
// its kind, and the platform runs platform-agent on any runtime, so a
// hermes concierge whose config is the hermes base template renamed agrees.
func TestConciergeOnAnyRuntime(t *testing.T) {
	cat := loadCatalog(t)
	renamed := strings.Replace(hermesDefault, "Hermes Agent", "Acme Agent", 1)
	caps := []captured{{CaptureID: 1, SHA256: "x", Identity: identity.DeriveFor([]byte(renamed), identity.PlatformKind, cat)}}
	row := &workspace.Row{ID: "c", Runtime: "hermes", Status: "online", Kind: identity.PlatformKind}
	d := reconcile(reconcileInput{Captures: caps, Claim: cpClaim{Templates: []string{"platform-agent"}, Level: "tenant"}, Row: row, Catalog: cat})
	if d.Verdict != Agree || d.Set != "platform-agent" {
		t.Fatalf("%s %q: %s", d.Verdict, d.Set, d.Reason)
	}
	// The same bytes on a workspace row are a renamed hermes default.
	caps[0].Identity = identity.DeriveFor([]byte(renamed), "workspace", cat)
	row.Kind = "workspace"
	if d := reconcile(reconcileInput{Captures: caps, Claim: cpClaim{Templates: []string{"platform-agent"}, Level: "tenant"}, Row: row, Catalog: cat}); d.Verdict == Agree {
		t.Fatalf("a workspace row agreed: %s", d.Reason)
	}
}

// Names the catalog does not hold fold as the catalog folds: ASCII letters
// only, so a Unicode look-alike stays a different name.
func TestNameKeyFoldsASCIIOnly(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"kelvin", " KELVIN ", true},
		{"kelvin", "kelvin-DEFAULT", true},
		{"kelvin", "\u212aelvin", false},       // Kelvin sign, which strings.ToLower folds to 'k'
		{"ss-agent", "\u017fs-agent", false},   // long s, which Unicode folds to 's'
		{"seo agent", "seo ag\u0435nt", false}, // Cyrillic 'е'
		{"ǅ", "ǆ", false},                      // non-ASCII case pairs are left alone
	} {
		if got := nameKey(tc.a, nil) == nameKey(tc.b, nil); got != tc.same {
			t.Errorf("nameKey(%q) == nameKey(%q) is %v, want %v (%q, %q)", tc.a, tc.b, got, tc.same, nameKey(tc.a, nil), nameKey(tc.b, nil))
		}
	}
}
