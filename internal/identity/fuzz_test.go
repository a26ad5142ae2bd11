package identity

import (
	"bytes"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"backfill/internal/catalog"
)

// deriveBound is how long one Derive may take. Real files take microseconds
// and a 1 MiB file well under 100ms; the slack covers fuzzing's
// instrumentation on a busy machine.
const deriveBound = 2 * time.Second

// FuzzDerive checks that Derive never panics, is deterministic, returns
// within deriveBound, keeps its result fields consistent, and never yields a
// template for a file that an independent reading calls a stub. Its seeds in
// testdata/fuzz/FuzzDerive run with every plain `go test`.
func FuzzDerive(f *testing.F) {
	cat := loadCatalog(f)
	f.Fuzz(func(t *testing.T, content []byte) {
		orig := bytes.Clone(content)
		id, d := timedDerive(content, cat)
		if d > deriveBound {
			// Wall time also counts a busy machine's pauses; an input that
			// is really slow is slow twice in a row.
			if _, d2 := timedDerive(content, cat); d2 > deriveBound {
				t.Fatalf("Derive took %v, then %v, on %d bytes", d, d2, len(content))
			}
		}
		if !bytes.Equal(content, orig) {
			t.Fatal("Derive modified its input")
		}
		if again := Derive(content, cat); again != id {
			t.Fatalf("not deterministic: %+v then %+v", id, again)
		}
		if id.Reason == "" {
			t.Fatalf("no reason: %+v", id)
		}

		switch id.Rule {
		case RuleStub, RuleNone, RuleInvalid:
			if id != (Identity{Rule: id.Rule, Reason: id.Reason}) {
				t.Fatalf("%s yields a template: %+v", id.Rule, id)
			}
		case RuleUnlike:
			if id.Template != "" || id.Known || id.Resemblance.Template >= MinResemblance && id.Resemblance.Template > id.Resemblance.Default {
				t.Fatalf("%s yields a template, or resembles it: %+v", id.Rule, id)
			}
		case RuleExplicit, RuleName:
			if id.Template == "" {
				t.Fatalf("%s without a template: %+v", id.Rule, id)
			}
			if id.Rule == RuleName && !id.Known {
				t.Fatalf("display name matched an unknown template: %+v", id)
			}
			if id.Known {
				tmpl, ok := cat.Lookup(id.Template)
				if !ok || tmpl.Name != id.Template || tmpl.Runtime != id.Runtime || tmpl.Default != id.Default {
					t.Fatalf("result disagrees with the catalog (%+v): %+v", tmpl, id)
				}
			} else if id.Default || id.Runtime != "" {
				t.Fatalf("unknown template with catalog facts: %+v", id)
			}
		default:
			t.Fatalf("unknown rule: %+v", id)
		}

		if id.Rule != RuleInvalid && id.Template != "" && oracleStub(content) {
			t.Fatalf("stub yields a template: %+v", id)
		}
	})
}

func timedDerive(content []byte, cat *catalog.Catalog) (Identity, time.Duration) {
	start := time.Now()
	id := Derive(content, cat)
	return id, time.Since(start)
}

// oracleStub is a second, independent reading of the stub rule through
// yaml.v3's ordinary decoding. It decodes into map[any]any because a string
// map silently drops a null key, which is a key all the same. Explicit tags
// are left out: decoding to Go values turns a `!!binary` key into its bytes,
// where Derive, reading tags, rightly sees no string key.
func oracleStub(content []byte) (stub bool) {
	if bytes.IndexByte(content, '!') >= 0 {
		return false
	}
	defer func() {
		if recover() != nil {
			stub = false
		}
	}()
	var m map[any]any
	if err := yaml.Unmarshal(bytes.TrimPrefix(content, []byte("\xEF\xBB\xBF")), &m); err != nil || len(m) == 0 {
		return false
	}
	for k := range m {
		if s, ok := k.(string); !ok || !stubKeys[s] {
			return false
		}
	}
	var rcKeys []string
	switch rc := m["runtime_config"].(type) {
	case nil:
		return true
	case map[string]any:
		for k := range rc {
			rcKeys = append(rcKeys, k)
		}
	case map[any]any:
		for k := range rc {
			s, ok := k.(string)
			if !ok {
				return false
			}
			rcKeys = append(rcKeys, s)
		}
	default:
		return false
	}
	for _, k := range rcKeys {
		if !stubRuntimeConfigKeys[k] {
			return false
		}
	}
	return true
}

// TestOracleStub keeps the fuzz oracle honest: an oracle that always said
// "not a stub" would make the stub property pass vacuously.
func TestOracleStub(t *testing.T) {
	for _, tt := range []struct {
		content string
		want    bool
	}{
		{string(readLive(t, "stub-named-like-a-template.yaml")), true},
		{"name: SEO Agent\nruntime_config:\n", true},
		{"name: SEO Agent\nruntime_config: {model: m, timeout: 0}\n", true},
		{string(readLive(t, "custom-seo-agent.yaml")), false},
		{"name: SEO Agent\nruntime_config: {models: []}\n", false},
		{"name: SEO Agent\nruntime_config: fast\n", false},
		{"name: SEO Agent\n~: x\n", false},
		{"name: SEO Agent\n1: x\n", false},
		{"{}", false},
		{"- a\n", false},
	} {
		if got := oracleStub([]byte(tt.content)); got != tt.want {
			t.Errorf("oracleStub(%q) = %v, want %v", tt.content, got, tt.want)
		}
	}
}
