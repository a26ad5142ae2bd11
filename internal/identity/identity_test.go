package identity

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"backfill/internal/catalog"
	"backfill/internal/fixture"
)

func loadCatalog(tb testing.TB) *catalog.Catalog {
	tb.Helper()
	c, err := catalog.Load(fixture.CatalogDir(tb))
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func readLive(tb testing.TB, name string) []byte {
	tb.Helper()
	return fixture.Live(name)
}

// aliasBomb is the YAML "billion laughs": nine levels of ten aliases each,
// 10^9 nodes once expanded, from under 1 KiB of text.
func aliasBomb() []byte {
	var b strings.Builder
	b.WriteString("a0: &a0 [lol]\n")
	for i := 1; i <= 9; i++ {
		b.WriteString("a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [")
		for j := 0; j < 10; j++ {
			if j > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*a" + string(rune('0'+i-1)))
		}
		b.WriteString("]\n")
	}
	return []byte(b.String())
}

// deepFlow nests n flow mappings: {a: {a: ... }}.
func deepFlow(n int) []byte {
	return []byte("name: SEO Agent\nx: " + strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n) + "\n")
}

// deepSeq nests n flow sequences.
func deepSeq(n int) []byte {
	return []byte(strings.Repeat("[", n) + strings.Repeat("]", n))
}

// bigMapping is a valid config padded with distinct keys to about size bytes.
func bigMapping(size int) []byte {
	var b bytes.Buffer
	b.WriteString("name: SEO Agent\n")
	for i := 0; b.Len() < size-40; i++ {
		b.WriteString("k")
		b.WriteString(strings.Repeat("0", 8-len(itoa(i))) + itoa(i))
		b.WriteString(": value\n")
	}
	return b.Bytes()
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}

func crlf(b []byte) []byte { return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n")) }

func TestDerive(t *testing.T) {
	cat := loadCatalog(t)
	seo := readLive(t, "custom-seo-agent.yaml")
	openclaw := fixture.Template("openclaw")
	type want struct {
		rule     Rule
		template string
		known    bool
		dflt     bool
		runtime  string
		reason   string // substring
	}
	named := func(tmpl, rt string, dflt bool) want {
		return want{rule: RuleName, template: tmpl, known: true, dflt: dflt, runtime: rt}
	}
	// unlike: the name was read and matched, but a body of a few keys does
	// not resemble the template, so the match is no evidence.
	unlike := func(tmpl string) want {
		return want{rule: RuleUnlike, reason: "matches template " + tmpl + "'s display name"}
	}
	tests := []struct {
		name    string
		content []byte
		want    want
	}{
		// The live examples.
		{"live custom seo agent", seo,
			want{rule: RuleName, template: "seo-agent", known: true, runtime: "claude-code",
				reason: `name "SEO Agent" matches template seo-agent's display name`}},
		{"live explicit template key", readLive(t, "explicit-template-key.yaml"),
			want{rule: RuleExplicit, template: "claude-code-default", known: true, dflt: true, runtime: "claude-code",
				reason: `template key "claude-code-default" names template claude-code-default`}},
		{"live stub named like a template", readLive(t, "stub-named-like-a-template.yaml"),
			want{rule: RuleStub, reason: "equals template seo-agent's display name"}},
		{"live runtime default after restart", readLive(t, "runtime-default-after-restart.yaml"),
			named("claude-code-default", "claude-code", true)},

		// Encoding.
		{"BOM and CRLF", append([]byte("\xEF\xBB\xBF"), crlf(seo)...), named("seo-agent", "claude-code", false)},
		{"CRLF only", crlf(seo), named("seo-agent", "claude-code", false)},
		{"BOM only", append([]byte("\xEF\xBB\xBF"), seo...), named("seo-agent", "claude-code", false)},
		{"non-UTF-8", []byte("name: SEO Agent\nnote: caf\xe9\n"), want{rule: RuleInvalid, reason: "not valid UTF-8"}},
		{"UTF-16 with BOM", []byte("\xff\xfen\x00a\x00m\x00e\x00:\x00"), want{rule: RuleInvalid, reason: "not valid UTF-8"}},
		{"binary", []byte{0x00, 0x01, 0x02, 0xff, 0xfe, 0x7f}, want{rule: RuleInvalid}},
		{"NUL in UTF-8", []byte("name: SEO Agent\x00\n"), want{rule: RuleInvalid, reason: "invalid YAML"}},

		// Not a mapping.
		{"empty file", []byte{}, want{rule: RuleInvalid, reason: "empty file"}},
		{"BOM only file", []byte("\xEF\xBB\xBF"), want{rule: RuleInvalid, reason: "empty file"}},
		{"whitespace only", []byte(" \r\n\t\n"), want{rule: RuleInvalid, reason: "empty file"}},
		{"comment only", []byte("# nothing here\n"), want{rule: RuleInvalid, reason: "no YAML document"}},
		{"null document", []byte("null\n"), want{rule: RuleInvalid, reason: "null, not a mapping"}},
		{"tilde document", []byte("~"), want{rule: RuleInvalid, reason: "null, not a mapping"}},
		{"scalar document", []byte("SEO Agent\n"), want{rule: RuleInvalid, reason: "scalar (!!str), not a mapping"}},
		{"number document", []byte("42\n"), want{rule: RuleInvalid, reason: "scalar (!!int)"}},
		{"list document", []byte("- name: SEO Agent\n"), want{rule: RuleInvalid, reason: "sequence, not a mapping"}},
		{"invalid YAML", []byte("name: SEO Agent\n  bad: indent\n"), want{rule: RuleInvalid, reason: "invalid YAML"}},
		{"unclosed flow", []byte("name: [SEO Agent\n"), want{rule: RuleInvalid, reason: "invalid YAML"}},
		{"tab indentation", []byte("runtime_config:\n\tmodel: x\n"), want{rule: RuleInvalid, reason: "invalid YAML"}},

		// Documents.
		{"two documents", []byte("name: SEO Agent\n---\nname: Hermes Agent\n"), want{rule: RuleInvalid, reason: "more than one YAML document"}},
		{"trailing document marker", []byte("name: SEO Agent\nskills: []\n---\n"), want{rule: RuleInvalid, reason: "more than one YAML document"}},
		{"second document broken", []byte("name: SEO Agent\n---\n[\n"), want{rule: RuleInvalid, reason: "invalid YAML"}},
		{"leading marker, one document", []byte("---\nname: SEO Agent\nskills: []\n...\n"), unlike("seo-agent")},

		// Keys.
		{"duplicate top-level key", []byte("name: SEO Agent\nskills: []\nname: Hermes Agent\n"), want{rule: RuleInvalid, reason: `key "name" already defined at line 1`}},
		{"duplicate nested key", []byte("name: SEO Agent\nrc:\n  a: 1\n  a: 2\n"), want{rule: RuleInvalid, reason: `key "a" already defined`}},
		{"duplicate key quoted", []byte("name: SEO Agent\n\"name\": Hermes Agent\n"), want{rule: RuleInvalid, reason: "already defined"}},
		{"int and string keys differ", []byte("1: a\n\"1\": b\nname: SEO Agent\n"), unlike("seo-agent")},
		{"merge key", []byte("base: &b {template: hermes}\n<<: *b\nname: SEO Agent\n"), want{rule: RuleInvalid, reason: "merge key"}},
		{"complex key", []byte("? [a, b]\n: 1\nname: SEO Agent\n"), want{rule: RuleInvalid, reason: "not a scalar"}},
		{"quoted merge key is a plain key", []byte("\"<<\": x\nname: SEO Agent\n"), unlike("seo-agent")},
		{"keys are case-sensitive", []byte("Name: SEO Agent\nTemplate: hermes\n"), want{rule: RuleNone, reason: "no template key and no name"}},

		// Bounds.
		{"alias bomb", aliasBomb(), want{rule: RuleInvalid, reason: "alias bomb"}},
		{"alias cycle", []byte("a: &a [*a]\n"), want{rule: RuleInvalid, reason: "contains it"}},
		{"deep nest 10000", deepFlow(10000), want{rule: RuleInvalid, reason: "nested more than 100 levels"}},
		{"deep sequence 10000", deepSeq(10000), want{rule: RuleInvalid, reason: "nested more than 100 levels"}},
		{"deep sequence 20000", deepSeq(20000), want{rule: RuleInvalid, reason: "max depth"}},
		{"nest just over our limit", deepFlow(100), want{rule: RuleInvalid, reason: "more than 100 levels"}},
		{"nest within our limit", deepFlow(98), unlike("seo-agent")},
		{"alias deepens past the limit", []byte("name: SEO Agent\nd: &d " + strings.Repeat("[", 60) + strings.Repeat("]", 60) + "\ne: " + strings.Repeat("[", 50) + "*d" + strings.Repeat("]", 50) + "\n"),
			want{rule: RuleInvalid, reason: "alias *d nests more than"}},
		{"over 1 MiB", bigMapping(1<<20 + 100), want{rule: RuleInvalid, reason: "over the 1048576-byte limit"}},
		{"just under 1 MiB", bigMapping(1<<20 - 100), unlike("seo-agent")},

		// Explicit template key.
		{"template key odd case and spaces", []byte("name: X\ntemplate: \"  SEO-Agent \"\n"),
			want{rule: RuleExplicit, template: "seo-agent", known: true, runtime: "claude-code", reason: `"SEO-Agent" names template seo-agent`}},
		{"template key runtime name", []byte("template: claude-code\n"),
			want{rule: RuleExplicit, template: "claude-code-default", known: true, dflt: true, runtime: "claude-code"}},
		{"template key hermes-default", []byte("template: hermes-default\n"),
			want{rule: RuleExplicit, template: "hermes", known: true, dflt: true, runtime: "hermes"}},
		{"template key unknown", []byte("name: SEO Agent\ntemplate: '  My-Custom '\n"),
			want{rule: RuleExplicit, template: "My-Custom", reason: `"My-Custom" is not in the catalog`}},
		{"template key wins over name", []byte("name: SEO Agent\ntemplate: hermes\n"),
			want{rule: RuleExplicit, template: "hermes", known: true, dflt: true, runtime: "hermes"}},
		{"template key with stub keys is not a stub", []byte("name: SEO Agent\nruntime: claude-code\ntemplate: seo-agent\n"),
			want{rule: RuleExplicit, template: "seo-agent", known: true, runtime: "claude-code"}},
		{"template key look-alike", []byte("template: s\u0435o-agent\n"),
			want{rule: RuleExplicit, template: "s\u0435o-agent", reason: "not in the catalog"}},
		{"template key tagged string", []byte("template: !!str 123\n"),
			want{rule: RuleExplicit, template: "123", reason: "not in the catalog"}},
		{"template key via alias", []byte("t: &t seo-agent\ntemplate: *t\n"),
			want{rule: RuleExplicit, template: "seo-agent", known: true, runtime: "claude-code"}},
		{"template key empty", []byte("name: SEO Agent\ntemplate: ''\n"), want{rule: RuleNone, reason: "template key is empty"}},
		{"template key blank", []byte("name: SEO Agent\ntemplate: '   '\n"), want{rule: RuleNone, reason: "template key is empty"}},
		{"template key null", []byte("name: SEO Agent\ntemplate:\n"), want{rule: RuleNone, reason: "template key is null"}},
		{"template key int", []byte("name: SEO Agent\ntemplate: 123\n"), want{rule: RuleInvalid, reason: "template key is !!int, not a string"}},
		{"template key bool", []byte("template: yes\n"), want{rule: RuleExplicit, template: "yes", reason: "not in the catalog"}},
		{"template key true", []byte("template: true\n"), want{rule: RuleInvalid, reason: "!!bool"}},
		{"template key list", []byte("template: [seo-agent]\n"), want{rule: RuleInvalid, reason: "a sequence, not a string"}},
		{"template key mapping", []byte("template: {name: seo-agent}\n"), want{rule: RuleInvalid, reason: "a mapping, not a string"}},

		// Display name.
		{"name with Cyrillic e", bytes.Replace(seo, []byte("SEO Agent"), []byte("SEO Ag\u0435nt"), 1),
			want{rule: RuleNone, reason: "matches no template's display name"}},
		{"name with long s", bytes.Replace(seo, []byte("SEO Agent"), []byte("\u017fEO Agent"), 1), want{rule: RuleNone}},
		{"name with zero-width space", bytes.Replace(seo, []byte("SEO Agent"), []byte("SEO\u200b Agent"), 1), want{rule: RuleNone}},
		{"name case and spaces", []byte("name: '  seo AGENT '\nskills: []\n"), unlike("seo-agent")},
		{"name quoted key", []byte("\"name\": SEO Agent\nskills: []\n"), unlike("seo-agent")},
		{"name via alias", []byte("n: &n Org Concierge\nname: *n\n"), unlike("platform-agent")},
		{"name not a string", []byte("name: 2024\nskills: []\n"), want{rule: RuleNone, reason: "name is !!int, not a string"}},
		{"name empty", []byte("name: ''\nskills: []\n"), want{rule: RuleNone, reason: "name is empty"}},
		{"name unknown", []byte("name: Backend Engineer\nskills: []\n"), want{rule: RuleNone, reason: `"Backend Engineer" matches no`}},
		{"no name", []byte("skills: []\n"), want{rule: RuleNone, reason: "no template key and no name"}},
		{"empty mapping", []byte("{}\n"), want{rule: RuleNone, reason: "empty mapping"}},

		// Stubs.
		{"stub with every stub key", []byte("name: SEO Agent\ndescription: d\nversion: 1\ntier: 2\nruntime: claude-code\nmodel: m\nprovider: p\nproviders: [p]\nruntime_config: {model: m, provider: p, timeout: 0}\n"),
			want{rule: RuleStub}},
		{"stub named like a runtime default", []byte("name: Claude Code Agent\nruntime: claude-code\n"), want{rule: RuleStub}},
		{"stub with null runtime_config", []byte("name: SEO Agent\nruntime_config:\n"), want{rule: RuleStub}},
		{"stub with empty runtime_config", []byte("name: SEO Agent\nruntime_config: {}\n"), want{rule: RuleStub}},
		{"stub without name", []byte("runtime: hermes\n"), want{rule: RuleStub, reason: "not evidence"}},
		{"stub with non-string name", []byte("name: 7\n"), want{rule: RuleStub}},
		{"stub with anchors", []byte("name: &n SEO Agent\ndescription: *n\n"), want{rule: RuleStub}},
		{"runtime_config with extra key is not a stub", []byte("name: SEO Agent\nruntime_config: {model: m, models: []}\n"), unlike("seo-agent")},
		{"runtime_config as a scalar is not a stub", []byte("name: SEO Agent\nruntime_config: fast\n"), unlike("seo-agent")},
		{"runtime_config as a list is not a stub", []byte("name: SEO Agent\nruntime_config: [model]\n"), unlike("seo-agent")},
		{"extra top-level key is not a stub", []byte("name: SEO Agent\nskills: []\n"), unlike("seo-agent")},
		{"non-string key is not a stub", []byte("name: SEO Agent\n1: x\n"), unlike("seo-agent")},
		{"null key is not a stub key", []byte("name: SEO Agent\n~: x\n"), unlike("seo-agent")},
		{"openclaw's own config is stub-shaped", openclaw, want{rule: RuleStub, reason: "OpenClaw Agent"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Derive(tt.content, cat)
			w := tt.want
			if got.Rule != w.rule || got.Template != w.template || got.Known != w.known ||
				got.Default != w.dflt || got.Runtime != w.runtime {
				t.Errorf("Derive = %+v\nwant rule=%s template=%q known=%v default=%v runtime=%q",
					got, w.rule, w.template, w.known, w.dflt, w.runtime)
			}
			if got.Reason == "" || !strings.Contains(got.Reason, w.reason) {
				t.Errorf("reason %q does not contain %q", got.Reason, w.reason)
			}
		})
	}
}

func TestDeriveNilCatalog(t *testing.T) {
	if got := Derive(readLive(t, "custom-seo-agent.yaml"), nil); got.Rule != RuleNone {
		t.Errorf("display name with no catalog = %+v, want none", got)
	}
	got := Derive(readLive(t, "explicit-template-key.yaml"), nil)
	if got.Rule != RuleExplicit || got.Known || got.Template != "claude-code-default" {
		t.Errorf("template key with no catalog = %+v, want unknown claude-code-default", got)
	}
}

// TestDeriveHostilePrompt runs the inputs meant to exhaust the parser
// together, so a regression to exponential work shows up plainly: such a
// regression takes minutes, so the bound is generous and a pass that is
// slow only once (a busy machine's pause) is run again before it fails.
func TestDeriveHostilePrompt(t *testing.T) {
	cat := loadCatalog(t)
	all := func() time.Duration {
		start := time.Now()
		for _, b := range [][]byte{aliasBomb(), deepFlow(10000), deepSeq(10000), deepSeq(200000), bigMapping(1 << 20)} {
			Derive(b, cat)
		}
		return time.Since(start)
	}
	if d := all(); d > 15*time.Second*slowdown {
		if d2 := all(); d2 > 15*time.Second*slowdown {
			t.Errorf("hostile inputs took %v, then %v", d, d2)
		}
	}
}

func BenchmarkDerive(b *testing.B) {
	cat := loadCatalog(b)
	content := readLive(b, "custom-seo-agent.yaml")
	b.SetBytes(int64(len(content)))
	b.ReportAllocs()
	for b.Loop() {
		if id := Derive(content, cat); id.Template != "seo-agent" {
			b.Fatalf("Derive = %+v", id)
		}
	}
}

// TestResemblanceAndPlatformKind: a display-name match counts only when the
// body resembles the template more than its runtime default, so a runtime
// default renamed after a custom template is no evidence while a real
// config with edited values is; a concierge row derives platform-agent.
func TestResemblanceAndPlatformKind(t *testing.T) {
	cat := loadCatalog(t)
	seo := readLive(t, "custom-seo-agent.yaml")
	restarted := readLive(t, "runtime-default-after-restart.yaml")
	renamed := bytes.Replace(restarted, []byte("name: Claude Code Agent"), []byte("name: SEO Agent"), 1)
	edited := bytes.Replace(bytes.Replace(seo, []byte("model: sonnet"), []byte("model: opus"), 1), []byte("tier: 2"), []byte("tier: 4"), 1)
	for _, tt := range []struct {
		name    string
		content []byte
		kind    string
		rule    Rule
		tmpl    string
	}{
		{"real seo config", seo, "workspace", RuleName, "seo-agent"},
		{"seo config with edited values", edited, "workspace", RuleName, "seo-agent"},
		{"runtime default renamed SEO Agent", renamed, "workspace", RuleUnlike, ""},
		{"runtime default as itself", restarted, "workspace", RuleName, "claude-code-default"},
		{"concierge: the runtime default renamed", bytes.Replace(restarted, []byte("Claude Code Agent"), []byte("Acme Agent"), 1), "platform", RulePlatformKind, "platform-agent"},
		{"concierge: whatever the bytes", []byte("not: [yaml"), "platform", RulePlatformKind, "platform-agent"},
	} {
		got := DeriveFor(tt.content, tt.kind, cat)
		if got.Rule != tt.rule || got.Template != tt.tmpl {
			t.Errorf("%s: %s %q (%s), want %s %q", tt.name, got.Rule, got.Template, got.Reason, tt.rule, tt.tmpl)
		}
		if (got.Rule == RuleName || got.Rule == RuleUnlike) && got.Resemblance.Template == 0 && got.Resemblance.Default == 0 {
			t.Errorf("%s: no resemblance recorded: %+v", tt.name, got)
		}
	}
	// Without platform-agent in the catalog, a concierge's config is read
	// like any other.
	if got := DeriveFor(seo, "platform", nil); got.Rule == RulePlatformKind {
		t.Errorf("platform-kind without the template in the catalog: %+v", got)
	}
}

// TestDeriveBoundsWhatAHostileConfigCosts: a captured config whose name
// matches a catalog display name is shaped; explicit keys of 100 KiB under
// 10,000 leaves, or aliases that walk one mapping thousands of times, must
// cost what a plain config does, not gigabytes (plan derives every
// captured config, and a capture is never deleted).
func TestDeriveBoundsWhatAHostileConfigCosts(t *testing.T) {
	cat := loadCatalog(t)
	long := strings.Repeat("x", 100<<10)
	var keys strings.Builder
	keys.WriteString("name: SEO Agent\n? " + long + "\n:\n")
	for i := range 10_000 {
		fmt.Fprintf(&keys, "  k%d: 1\n", i)
	}
	var aliases strings.Builder
	aliases.WriteString("name: SEO Agent\nanch: &a {")
	for i := range 100 {
		fmt.Fprintf(&aliases, "k%d: 1, ", i)
	}
	aliases.WriteString("z: 1}\n? " + long + "\n: [")
	for range 4000 {
		aliases.WriteString("*a, ")
	}
	aliases.WriteString("*a]\n")
	var items strings.Builder
	items.WriteString("name: SEO Agent\nskills: [")
	for i := range 100_000 {
		fmt.Fprintf(&items, "s%d, ", i)
	}
	items.WriteString("z]\n")
	for name, doc := range map[string]string{"long keys": keys.String(), "aliases": aliases.String(), "a long list": items.String()} {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		id := Derive([]byte(doc), cat)
		runtime.ReadMemStats(&after)
		// Parsing a document of this size alone allocates tens of
		// megabytes; shaping must not add more than that.
		if got := (after.TotalAlloc - before.TotalAlloc) >> 20; got > 256 {
			t.Errorf("%s (%d bytes): deriving allocated %d MiB (rule %s)", name, len(doc), got, id.Rule)
		}
	}
}
