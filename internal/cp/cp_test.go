package cp

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	wsA = "0b9f7c2e-1d3a-4c55-8e6f-1234567890ab"
	wsB = "5d2e8f10-aaaa-4bbb-8ccc-0123456789de"
)

// writeFile puts content in a real file named name in a fresh temp dir.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, name, content string) *Records {
	t.Helper()
	r, err := Load(t.Context(), writeFile(t, name, content), "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return r
}

func TestFor(t *testing.T) {
	recs := mustLoad(t, "cp.csv", strings.Join([]string{
		"tenant,workspace_id,template",
		"acme,,tenant-tpl",                     // 2
		"acme," + wsA + ",ws-tpl",              // 3
		"dup,,one",                             // 4
		"dup,,two",                             // 5
		"same,,x",                              // 6
		"same,,x",                              // 7
		"same," + wsB + ",y",                   // 8
		"same," + wsB + ",y",                   // 9
		"same," + wsB + ",z",                   // 10
		"case,,SEO-Agent",                      // 11
		"case,,seo-agent",                      // 12
		"onlyws," + wsA + ",w",                 // 13
		"upper," + strings.ToUpper(wsB) + ",u", // 14
	}, "\n")+"\n")
	src := func(lines ...string) []string {
		var out []string
		for _, l := range lines {
			out = append(out, "cp.csv:"+l)
		}
		return out
	}
	tests := []struct {
		name, tenant, ws string
		templates        []string
		level            string
		sources          []string
	}{
		{"workspace record overrides tenant-wide", "acme", wsA, []string{"ws-tpl"}, LevelWorkspace, src("3")},
		{"workspace id matched in any case", "acme", strings.ToUpper(wsA), []string{"ws-tpl"}, LevelWorkspace, src("3")},
		{"other workspace falls back to tenant-wide", "acme", wsB, []string{"tenant-tpl"}, LevelTenant, src("2")},
		{"no workspace id gives tenant-wide", "acme", "", []string{"tenant-tpl"}, LevelTenant, src("2")},
		{"two different tenant-wide claims both returned", "dup", wsA, []string{"one", "two"}, LevelTenant, src("4", "5")},
		{"identical tenant-wide duplicates collapse", "same", wsA, []string{"x"}, LevelTenant, src("6", "7")},
		{"workspace duplicates collapse, a different one stays", "same", wsB, []string{"y", "z"}, LevelWorkspace, src("8", "9", "10")},
		{"templates kept exact for the planner", "case", wsA, []string{"SEO-Agent", "seo-agent"}, LevelTenant, src("11", "12")},
		{"workspace-only tenant, other workspace", "onlyws", wsB, nil, "", nil},
		{"workspace-only tenant, its workspace", "onlyws", wsA, []string{"w"}, LevelWorkspace, src("13")},
		{"upper-case UUID in the file normalised", "upper", wsB, []string{"u"}, LevelWorkspace, src("14")},
		{"unknown tenant", "nobody", wsA, nil, "", nil},
		{"tenant match is exact", "ACME", wsA, nil, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			templates, level, sources := recs.For(tt.tenant, tt.ws)
			for i := range sources {
				sources[i] = filepath.Base(sources[i])
			}
			if !slices.Equal(templates, tt.templates) || level != tt.level || !slices.Equal(sources, tt.sources) {
				t.Errorf("For(%q, %q) = %q, %q, %q; want %q, %q, %q",
					tt.tenant, tt.ws, templates, level, sources, tt.templates, tt.level, tt.sources)
			}
		})
	}
}

func TestClaimsSortedWithSourceOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString("tenant,workspace_id,template\n")
	// Twelve identical claims: their sources must come out in line order
	// (cp.csv:2 … cp.csv:13), not string order (cp.csv:10 before cp.csv:2).
	for range 12 {
		b.WriteString("t,,x\n")
	}
	b.WriteString("a," + wsA + ",z\na,,z\na,,y\n")
	recs, err := Parse("cp.csv", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	got := recs.Claims()
	want := []Claim{
		{"a", "", "y", "cp.csv:16"},
		{"a", "", "z", "cp.csv:15"},
		{"a", wsA, "z", "cp.csv:14"},
	}
	for i := range 12 {
		want = append(want, Claim{"t", "", "x", "cp.csv:" + strconv.Itoa(i+2)})
	}
	if !slices.Equal(got, want) {
		t.Errorf("Claims() =\n%v\nwant\n%v", got, want)
	}
	if recs.Len() != 15 {
		t.Errorf("Len() = %d, want 15", recs.Len())
	}
	// Claims hands out a copy: changing it must not change the records.
	got[0].Template = "changed"
	if recs.Claims()[0].Template != "y" {
		t.Error("Claims() shares its backing array with the records")
	}
}

func TestTenants(t *testing.T) {
	recs := mustLoad(t, "cp.yaml", `
- {tenant: zeta, template: a}
- {tenant: alpha, template: b}
- {tenant: zeta, workspace_id: `+wsA+`, template: c}
- {tenant: mid, template: a}
`)
	if got, want := recs.Tenants(), []string{"alpha", "mid", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("Tenants() = %q, want %q", got, want)
	}
}

func TestNilRecordsIsEmpty(t *testing.T) {
	var r *Records
	empty, err := Parse("cp.csv", []byte("tenant,workspace_id,template\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Claims() != nil || r.Tenants() != nil || r.Len() != 0 {
		t.Error("nil Records not empty")
	}
	if tpl, level, src := r.For("a", wsA); tpl != nil || level != "" || src != nil {
		t.Errorf("nil For = %q, %q, %q", tpl, level, src)
	}
	if r.Digest() != empty.Digest() {
		t.Error("nil and empty Records digest differently")
	}
}

func TestDigest(t *testing.T) {
	base := "tenant,workspace_id,template\njrs-seo,,seo-agent\nmolecules-seo,,seo-agent\nconcierge,,platform-agent\n"
	d := mustLoad(t, "cp.csv", base).Digest()
	// Pinned so a change to the encoding is a deliberate one: plans record it.
	const pinned = "0286e9672219a0775af2fdd48e7ac8e2d82fbc54f3427b5c7d93ca810637e8d8"
	if d != pinned {
		t.Errorf("Digest() = %s, want pinned %s", d, pinned)
	}
	same := map[string]string{
		"reordered":            "template,tenant,workspace_id\nplatform-agent,concierge,\nseo-agent,molecules-seo,\nseo-agent,jrs-seo,\n",
		"duplicated":           base + "jrs-seo,,seo-agent\n",
		"padded":               "tenant,workspace_id,template\n  jrs-seo , , seo-agent \nmolecules-seo,,seo-agent\nconcierge,,platform-agent\n",
		"CRLF with BOM":        "\ufeff" + strings.ReplaceAll(base, "\n", "\r\n"),
		"renamed (other file)": base,
	}
	for name, content := range same {
		if got := mustLoad(t, "other.csv", content).Digest(); got != d {
			t.Errorf("%s: digest %s, want %s", name, got, d)
		}
	}
	for _, name := range []string{"cp.json", "cp.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, name, string(data)).Digest(); got != d {
			t.Errorf("testdata/%s: digest %s, want the CSV's %s", name, got, d)
		}
	}
	differ := map[string]string{
		"template changed": strings.Replace(base, "platform-agent", "platform-agent2", 1),
		"claim added":      base + "concierge,,other\n",
		"claim dropped":    strings.Replace(base, "concierge,,platform-agent\n", "", 1),
		"workspace added":  base + "concierge," + wsA + ",platform-agent\n",
		// Field boundaries must count: "ab"+"c" is not "a"+"bc".
		"shifted boundary": "tenant,workspace_id,template\njrs-seose,,o-agent\nmolecules-seo,,seo-agent\nconcierge,,platform-agent\n",
	}
	for name, content := range differ {
		if got := mustLoad(t, "cp.csv", content).Digest(); got == d {
			t.Errorf("%s: digest unchanged", name)
		}
	}
}
