package catalog

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"backfill/internal/fixture"
)

func loadFixture(t *testing.T) *Catalog {
	t.Helper()
	dir := fixture.CatalogDir(t)
	c, err := Load(dir)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return c
}

// writeTree lays out files (slash paths relative to a temp dir) and returns
// the dir.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadFixture(t *testing.T) {
	c := loadFixture(t)
	want := []Template{
		{Name: "claude-code-default", Runtime: "claude-code", DisplayName: "Claude Code Agent", Default: true},
		{Name: "codex", Runtime: "codex", DisplayName: "OpenAI Codex CLI", Default: true},
		{Name: "hermes", Runtime: "hermes", DisplayName: "Hermes Agent", Default: true},
		{Name: "openclaw", Runtime: "openclaw", DisplayName: "OpenClaw Agent", Default: true},
		{Name: "platform-agent", Runtime: "claude-code", DisplayName: "Org Concierge"},
		{Name: "seo-agent", Runtime: "claude-code", DisplayName: "SEO Agent"},
	}
	if got := c.Templates(); !reflect.DeepEqual(got, want) {
		t.Errorf("Templates() =\n%+v\nwant\n%+v", got, want)
	}
	// The returned slice is a copy: callers cannot change the catalog.
	c.Templates()[0].Name = "changed"
	if c.Templates()[0].Name != "claude-code-default" {
		t.Error("Templates() exposes the catalog's own slice")
	}
}

func TestLookup(t *testing.T) {
	c := loadFixture(t)
	tests := []struct {
		in   string
		want string // "" = not found
	}{
		{"seo-agent", "seo-agent"},
		{"  SEO-Agent ", "seo-agent"},
		{"claude-code-default", "claude-code-default"},
		{"claude-code", "claude-code-default"},
		{"CLAUDE-CODE-DEFAULT", "claude-code-default"},
		{"hermes-default", "hermes"},
		{"Hermes", "hermes"},
		{"seo-agent-default", "seo-agent"},
		{"seo-agent-default-default", ""}, // one suffix only
		{"seo agent", ""},
		{"SEO Agent", ""}, // a display name is not a template name
		{"", ""},
		{"   ", ""},
		{"-default", ""},
		{"claude-\u212Aode", ""},           // Kelvin sign is not a 'k'
		{"h\u0435rmes", ""},                // Cyrillic 'е'
		{"seo-agent\u200b", ""},            // zero-width space is not trimmed
		{"\u00a0seo-agent\n", "seo-agent"}, // but Unicode spaces are
	}
	for _, tt := range tests {
		got, ok := c.Lookup(tt.in)
		if ok != (tt.want != "") || got.Name != tt.want {
			t.Errorf("Lookup(%q) = %q, %v; want %q", tt.in, got.Name, ok, tt.want)
		}
	}
}

func TestByDisplayName(t *testing.T) {
	c := loadFixture(t)
	tests := []struct {
		in   string
		want string
	}{
		{"SEO Agent", "seo-agent"},
		{"  seo agent\t", "seo-agent"},
		{"Claude Code Agent", "claude-code-default"},
		{"org concierge", "platform-agent"},
		{"SEO Agеnt", ""},      // Cyrillic 'е'
		{"\u017fEO Agent", ""}, // long s folds to 'S' under strings.EqualFold
		{"SEO  Agent", ""},     // inner spaces are exact
		{"SEO-Agent", ""},      // no fuzzy matching
		{"seo-agent", ""},      // a template name is not a display name
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := c.ByDisplayName(tt.in)
		if ok != (tt.want != "") || got.Name != tt.want {
			t.Errorf("ByDisplayName(%q) = %q, %v; want %q", tt.in, got.Name, ok, tt.want)
		}
	}
}

func TestDefaultFor(t *testing.T) {
	c := loadFixture(t)
	tests := []struct {
		runtime string
		want    string
	}{
		{"claude-code", "claude-code-default"},
		{"Claude-Code", "claude-code-default"},
		{"hermes", "hermes"},
		{"codex", "codex"},
		{"openclaw", "openclaw"},
		{"seo-agent", ""}, // a template, but not a runtime's default
		{"platform-agent", ""},
		{"langgraph", ""},
		{"", ""},
	}
	for _, tt := range tests {
		got, ok := c.DefaultFor(tt.runtime)
		if ok != (tt.want != "") || got.Name != tt.want {
			t.Errorf("DefaultFor(%q) = %q, %v; want %q", tt.runtime, got.Name, ok, tt.want)
		}
	}
}

func TestDefaultNeedsMatchingRuntime(t *testing.T) {
	// A template named like a runtime but declared for another runtime is
	// not that runtime's default.
	dir := writeTree(t, map[string]string{
		"manifest.json":       `{"workspace_templates":[{"name":"hermes","runtime":"claude-code"}]}`,
		"hermes/config.yaml":  "name: Odd Hermes\n",
		"custom/config.yaml":  "name: Custom\n", // no manifest entry, no runtime key: runtime "custom", which "other" declares
		"other/config.yaml":   "name: Other\nruntime: custom\n",
		".git/config":         "not a template",
		"README.md":           "ignored",
		"loose-file.yaml":     "ignored",
		".hidden/config.yaml": "name: Hidden\n",
	})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Template{
		{Name: "custom", Runtime: "custom", DisplayName: "Custom", Default: true},
		{Name: "hermes", Runtime: "claude-code", DisplayName: "Odd Hermes"},
		{Name: "other", Runtime: "custom", DisplayName: "Other"},
	}
	if got := c.Templates(); !reflect.DeepEqual(got, want) {
		t.Errorf("Templates() = %+v, want %+v", got, want)
	}
	if got, ok := c.DefaultFor("hermes"); ok {
		t.Errorf("DefaultFor(hermes) = %q, want none", got.Name)
	}
	if got, ok := c.DefaultFor("claude-code"); ok {
		t.Errorf("DefaultFor(claude-code) = %q, want none", got.Name)
	}
}

func TestLoadWithoutManifest(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"claude-code-default/config.yaml": "name: Claude Code Agent\n",
		"hermes/config.yaml":              "\xEF\xBB\xBFname: Hermes Agent\r\nruntime: hermes\r\n",
	})
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Template{
		{Name: "claude-code-default", Runtime: "claude-code", DisplayName: "Claude Code Agent", Default: true},
		{Name: "hermes", Runtime: "hermes", DisplayName: "Hermes Agent", Default: true},
	}
	if got := c.Templates(); !reflect.DeepEqual(got, want) {
		t.Errorf("Templates() = %+v, want %+v", got, want)
	}
}

func TestLoadErrors(t *testing.T) {
	ok := "name: Fine\n"
	tests := []struct {
		name  string
		files map[string]string
		want  []string // substrings of the error
	}{
		{
			name:  "duplicate display name",
			files: map[string]string{"a/config.yaml": "name: SEO Agent\n", "b/config.yaml": "name: seo agent \n"},
			want:  []string{`"a" and "b"`, "display name"},
		},
		{
			name:  "folder without config.yaml",
			files: map[string]string{"a/config.yaml": ok, "b/other.yaml": ok},
			want:  []string{filepath.Join("b") + " has no config.yaml"},
		},
		{
			name: "manifest entry without folder",
			files: map[string]string{"a/config.yaml": ok,
				"manifest.json": `{"workspace_templates":[{"name":"a"},{"name":"ghost","runtime":"x"}]}`},
			want: []string{"manifest.json", `workspace_templates[1] ("ghost")`, "no template folder"},
		},
		{
			name: "manifest entry differs in case from folder",
			files: map[string]string{"a/config.yaml": ok,
				"manifest.json": `{"workspace_templates":[{"name":"A"}]}`},
			want: []string{`("A")`, "no template folder"},
		},
		{
			name:  "config without name",
			files: map[string]string{"a/config.yaml": "runtime: claude-code\n"},
			want:  []string{filepath.Join("a", "config.yaml"), "no `name:` key"},
		},
		{
			name:  "name is not a string",
			files: map[string]string{"a/config.yaml": "name: 42\n"},
			want:  []string{filepath.Join("a", "config.yaml"), "!!int, not a string"},
		},
		{
			name:  "name is empty",
			files: map[string]string{"a/config.yaml": "name: '  '\n"},
			want:  []string{"`name:` is empty"},
		},
		{
			name:  "invalid YAML",
			files: map[string]string{"a/config.yaml": "name: [unclosed\n"},
			want:  []string{filepath.Join("a", "config.yaml"), "invalid YAML"},
		},
		{
			name:  "config is a list",
			files: map[string]string{"a/config.yaml": "- name: A\n"},
			want:  []string{filepath.Join("a", "config.yaml"), "sequence, not a mapping"},
		},
		{
			name:  "duplicate key in config",
			files: map[string]string{"a/config.yaml": "name: A\nname: B\n"},
			want:  []string{filepath.Join("a", "config.yaml"), "already defined"},
		},
		{
			name:  "invalid manifest JSON",
			files: map[string]string{"a/config.yaml": ok, "manifest.json": `{"workspace_templates": [`},
			want:  []string{"manifest.json", "invalid JSON"},
		},
		{
			name:  "manifest runtime not a string",
			files: map[string]string{"a/config.yaml": ok, "manifest.json": `{"workspace_templates":[{"name":"a","runtime":3}]}`},
			want:  []string{"manifest.json", "invalid JSON"},
		},
		{
			name:  "manifest entry without name",
			files: map[string]string{"a/config.yaml": ok, "manifest.json": `{"workspace_templates":[{"runtime":"x"}]}`},
			want:  []string{"workspace_templates[0] has no name"},
		},
		{
			name:  "manifest entry listed twice",
			files: map[string]string{"a/config.yaml": ok, "manifest.json": `{"workspace_templates":[{"name":"a"},{"name":"a"}]}`},
			want:  []string{`workspace_templates[1] ("a") is listed twice`},
		},
		{
			name:  "manifest entry with empty runtime",
			files: map[string]string{"a/config.yaml": ok, "manifest.json": `{"workspace_templates":[{"name":"a","runtime":" "}]}`},
			want:  []string{`("a") has an empty runtime`},
		},
		{
			name:  "names collide after -default stripping",
			files: map[string]string{"hermes/config.yaml": "name: H1\n", "hermes-default/config.yaml": "name: H2\n"},
			want:  []string{`"hermes" and "hermes-default" both resolve to "hermes"`},
		},
		{
			name:  "names collide after lower-casing",
			files: map[string]string{"Codex/config.yaml": "name: C1\n", "codex/config.yaml": "name: C2\n"},
			want:  []string{`"Codex" and "codex" both resolve to "codex"`},
		},
		{
			name:  "folder name empty once -default is stripped",
			files: map[string]string{"-default/config.yaml": ok},
			want:  []string{"leaves nothing to match"},
		},
		{
			name:  "no templates",
			files: map[string]string{"manifest.json": `{"workspace_templates":[]}`},
			want:  []string{"no template folders"},
		},
		{
			name:  "config.yaml is a folder",
			files: map[string]string{"a/config.yaml/x": ok},
			want:  []string{filepath.Join("a", "config.yaml")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeTree(t, tt.files)
			c, err := Load(dir)
			if err == nil {
				t.Fatalf("Load succeeded with %+v, want an error", c.Templates())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadMissingDir(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope")); err == nil {
		t.Fatal("Load of a missing folder succeeded")
	}
}

func TestDigest(t *testing.T) {
	base := map[string]string{
		"manifest.json":      `{"workspace_templates":[{"name":"a","runtime":"r"}]}`,
		"a/config.yaml":      "name: A\nruntime: r\n",
		"b/config.yaml":      "name: B\nruntime: r\n",
		"b/prompts/extra.md": "not read by Load",
	}
	digestOf := func(files map[string]string) string {
		t.Helper()
		c, err := Load(writeTree(t, files))
		if err != nil {
			t.Fatal(err)
		}
		d := c.Digest()
		if len(d) != 64 {
			t.Fatalf("Digest() = %q, want 64 hex digits", d)
		}
		return d
	}
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for kk, vv := range base {
			m[kk] = vv
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	d := digestOf(base)
	if got := digestOf(base); got != d {
		t.Errorf("same catalog, different digests: %s, %s", d, got)
	}
	if got := digestOf(with("b/prompts/extra.md", "changed")); got != d {
		t.Error("a file Load does not read changed the digest")
	}
	if got := digestOf(with("README", "x")); got != d {
		t.Error("an ignored file changed the digest")
	}
	for name, files := range map[string]map[string]string{
		"config changed":   with("a/config.yaml", "name: A2\nruntime: r\n"),
		"manifest changed": with("manifest.json", `{"workspace_templates":[{"name":"a","runtime":"q"}]}`),
		"manifest removed": with("manifest.json", ""),
		"template added":   with("c/config.yaml", "name: C\nruntime: r\n"),
		"template renamed": {"manifest.json": base["manifest.json"], "a/config.yaml": "name: A\nruntime: r\n", "c/config.yaml": "name: B\nruntime: r\n"},
	} {
		if got := digestOf(files); got == d {
			t.Errorf("%s: digest unchanged", name)
		}
	}
	if got := loadFixture(t).Digest(); got != loadFixture(t).Digest() {
		t.Error("fixture digest is not stable")
	}
}

func TestNilCatalog(t *testing.T) {
	var c *Catalog
	if _, ok := c.Lookup("hermes"); ok {
		t.Error("nil catalog found a template")
	}
	if _, ok := c.ByDisplayName("Hermes Agent"); ok {
		t.Error("nil catalog found a display name")
	}
	if _, ok := c.DefaultFor("hermes"); ok {
		t.Error("nil catalog found a default")
	}
	if c.Templates() != nil || c.Digest() != "" {
		t.Error("nil catalog is not empty")
	}
}

// TestRuntimeSources: the platform's cache has no manifest.json; a
// template's runtime comes from --manifest, else its config's runtime:,
// else <runtime>-default or a runtime another template declares; a custom
// template none of these covers is an error naming it, not a guess.
func TestRuntimeSources(t *testing.T) {
	tree := map[string]string{
		"claude-code-default/config.yaml": "name: Claude Code Agent\n",
		"hermes/config.yaml":              "name: Hermes Agent\nruntime: hermes\n",
		"seo-agent/config.yaml":           "name: SEO Agent\nruntime: claude-code\n",
		"platform-agent/config.yaml":      "name: Org Concierge\n",
	}
	if _, err := Load(writeTree(t, tree)); err == nil || !strings.Contains(err.Error(), "template platform-agent: its runtime cannot be derived") {
		t.Fatalf("a custom template without a runtime: %v", err)
	}
	dir := writeTree(t, tree)
	man := filepath.Join(t.TempDir(), "manifest.json")
	os.WriteFile(man, []byte(`{"workspace_templates":[{"name":"platform-agent","runtime":"claude-code"},{"name":"seo-agent","runtime":"codex"}]}`), 0o644)
	c, err := LoadWith(dir, man)
	if err != nil {
		t.Fatal(err)
	}
	for name, rt := range map[string]string{"claude-code-default": "claude-code", "hermes": "hermes", "seo-agent": "codex", "platform-agent": "claude-code"} {
		if got, _ := c.Lookup(name); got.Runtime != rt {
			t.Errorf("%s: runtime %q, want %q (manifest, then config, then name)", name, got.Runtime, rt)
		}
	}
	// The same files with the manifest inside the folder digest the same.
	inside := writeTree(t, tree)
	b, _ := os.ReadFile(man)
	os.WriteFile(filepath.Join(inside, "manifest.json"), b, 0o644)
	c2, err := Load(inside)
	if err != nil || c2.Digest() != c.Digest() {
		t.Fatalf("manifest inside: %v, digest %s vs %s", err, c2.Digest(), c.Digest())
	}
	if _, err := LoadWith(inside, man); err == nil || !strings.Contains(err.Error(), "use one") {
		t.Fatalf("two manifests: %v", err)
	}
}
