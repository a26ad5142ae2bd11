// Package identity recognises which catalog template a live workspace was
// made from, given the bytes of its /configs/config.yaml.
//
// The rules are applied in a fixed order, first match wins:
//
//  1. invalid: the bytes are not one YAML mapping (see configyaml.Parse for
//     exactly what is refused), or `template:` is not a string;
//  2. stub: the file only has the keys the platform writes when it has no
//     template, so it is never evidence, whatever its name says;
//  3. template-key: an explicit `template:` key, resolved with
//     catalog.Lookup;
//  4. display-name: `name:` equals a catalog template's display name, and
//     the body resembles that template more than its runtime's default
//     (else display-name-unlike: a runtime default renamed after a custom
//     template is no evidence of it);
//  5. none: anything else, including an empty mapping and a `template:` key
//     that is empty or null (the file says it has no template, so its name
//     is not consulted either).
//
// Before all of them, DeriveFor gives a row of kind platform (an org's
// concierge, whose template the platform forces) template platform-agent
// by rule platform-kind, when the catalog has it.
package identity

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/internal/catalog"
	"backfill/internal/identity/configyaml"
)

// Rule says which rule decided an Identity.
type Rule string

// The rules. Derive tries invalid, stub, template-key and display-name in
// that order, and answers none when no rule applies.
const (
	RuleStub     Rule = "stub"         // stub config: never evidence
	RuleExplicit Rule = "template-key" // explicit `template:` key
	RuleName     Rule = "display-name" // `name:` matched a catalog display name
	RuleNone     Rule = "none"         // parsed, but nothing identifies a template
	RuleInvalid  Rule = "invalid"      // could not be read as a YAML mapping: reason says why
	// RuleUnlike: `name:` matches a display name but the body resembles the
	// runtime's default (or too little of the template): never evidence.
	RuleUnlike Rule = "display-name-unlike"
	// RulePlatformKind: the row is an org's concierge (kind platform); the
	// platform forces its template to platform-agent whatever its config says.
	RulePlatformKind Rule = "platform-kind"
)

// PlatformKind is the kind of a concierge row, and PlatformTemplate the
// template the platform forces on it.
const (
	PlatformKind     = "platform"
	PlatformTemplate = "platform-agent"
)

// MinResemblance is the least resemblance, in percent, a config must have
// to the template its name matches for the match to count.
const MinResemblance = 50

// Resemblance measures how much a config's shape (configyaml.Doc.Shape:
// its key paths and list entries, values and name aside) is that of the
// template its name matches, and that of the template's runtime default.
type Resemblance struct {
	Template int    `json:"template_pct"`
	Default  int    `json:"default_pct"`
	Against  string `json:"default"` // the runtime default compared with; "" when none
}

// IsEvidence reports whether the rule names a template the evidence stands
// for (the template may still be unknown to the catalog, for template-key).
func (r Rule) IsEvidence() bool {
	return r == RuleExplicit || r == RuleName || r == RulePlatformKind
}

// Identity is what a config file says about its template.
type Identity struct {
	Rule Rule
	// Template is the canonical catalog name when known. For RuleExplicit
	// with a name not in the catalog it is the trimmed name as written, with
	// Known false. Empty for every other rule.
	Template string
	Known    bool   // Template is in the catalog
	Default  bool   // Template is its runtime's default
	Runtime  string // the template's runtime (catalog) when Known
	Reason   string // human explanation, always set
	// Resemblance is set for display-name and display-name-unlike (zero
	// otherwise).
	Resemblance Resemblance
}

// stubKeys are the top-level keys of a platform-generated stub config.
var stubKeys = map[string]bool{
	"name": true, "description": true, "version": true, "tier": true,
	"runtime": true, "model": true, "provider": true, "providers": true,
	"runtime_config": true,
}

// stubRuntimeConfigKeys are the keys a stub's runtime_config may have.
var stubRuntimeConfigKeys = map[string]bool{"model": true, "provider": true, "timeout": true}

// Derive recognises the template of a config file. It is pure: the same bytes
// and catalog always give the same answer, and it does no I/O. A nil catalog
// is an empty one. Hostile input (alias bombs, deep nesting, huge files) is
// answered promptly with RuleInvalid.
func Derive(content []byte, cat *catalog.Catalog) Identity {
	doc, err := configyaml.Parse(content)
	if err != nil {
		return Identity{Rule: RuleInvalid, Reason: err.Error()}
	}
	if doc.Len() == 0 {
		return Identity{Rule: RuleNone, Reason: "empty mapping: the file has no keys"}
	}
	if isStub(doc) {
		return stub(doc, cat)
	}
	if v, ok := doc.Get("template"); ok {
		return explicit(v, cat)
	}
	return byName(doc, cat)
}

// DeriveFor is Derive for a row of the given kind (workspaces.kind): the
// kind's identity when ByKind gives one, else the content's.
func DeriveFor(content []byte, rowKind string, cat *catalog.Catalog) Identity {
	if id, ok := ByKind(rowKind, cat); ok {
		return id
	}
	return Derive(content, cat)
}

// ByKind returns the identity a row's kind gives whatever its config says,
// and false when the kind gives none: a concierge's (kind platform) is
// platform-agent by rule platform-kind, when the catalog has it. Callers
// that derive a content once for rows of several kinds ask this first.
func ByKind(rowKind string, cat *catalog.Catalog) (Identity, bool) {
	if rowKind != PlatformKind {
		return Identity{}, false
	}
	t, ok := cat.Lookup(PlatformTemplate)
	if !ok {
		return Identity{}, false
	}
	return Identity{Rule: RulePlatformKind, Template: t.Name, Known: true, Default: t.Default, Runtime: t.Runtime,
		Reason: fmt.Sprintf("the row is its org's concierge (kind %q), whose template the platform forces to %s", PlatformKind, t.Name)}, true
}

// isStub reports whether every top-level key is a stub key and runtime_config,
// when present, is a mapping of stub runtime_config keys. A null
// runtime_config counts as absent: it carries nothing a stub lacks, and
// calling it evidence would let `name:` alone pick a template.
func isStub(doc *configyaml.Doc) bool {
	for _, e := range doc.Entries() {
		k, ok := e.KeyString()
		if !ok || !stubKeys[k] {
			return false
		}
	}
	rc, ok := doc.Get("runtime_config")
	if !ok || configyaml.IsNull(rc) {
		return true
	}
	entries, ok := configyaml.MappingEntries(rc)
	if !ok {
		return false
	}
	for _, e := range entries {
		k, ok := e.KeyString()
		if !ok || !stubRuntimeConfigKeys[k] {
			return false
		}
	}
	return true
}

func stub(doc *configyaml.Doc, cat *catalog.Catalog) Identity {
	reason := "stub config (only platform-generated keys): not evidence of a template"
	if v, ok := doc.Get("name"); ok {
		if name, ok := configyaml.Str(v); ok {
			reason = fmt.Sprintf("stub config (only platform-generated keys): its name %q is the workspace's own, not evidence of a template", name)
			if t, ok := cat.ByDisplayName(name); ok {
				reason += fmt.Sprintf(", even though it equals template %s's display name", t.Name)
			}
		}
	}
	return Identity{Rule: RuleStub, Reason: reason}
}

func explicit(v *yaml.Node, cat *catalog.Catalog) Identity {
	if configyaml.IsNull(v) {
		return Identity{Rule: RuleNone, Reason: "template key is null: the file claims no template"}
	}
	// A non-string template key is a claim that cannot be read, which is not
	// the same as no claim: it is invalid rather than falling through to the
	// name.
	written, ok := configyaml.Str(v)
	if !ok {
		return Identity{Rule: RuleInvalid, Reason: fmt.Sprintf("template key is %s, not a string", kind(v))}
	}
	written = strings.TrimSpace(written)
	if written == "" {
		return Identity{Rule: RuleNone, Reason: "template key is empty: the file claims no template"}
	}
	t, ok := cat.Lookup(written)
	if !ok {
		return Identity{Rule: RuleExplicit, Template: written,
			Reason: fmt.Sprintf("template key %q is not in the catalog", written)}
	}
	return Identity{Rule: RuleExplicit, Template: t.Name, Known: true, Default: t.Default, Runtime: t.Runtime,
		Reason: fmt.Sprintf("template key %q names template %s", written, t.Name)}
}

func byName(doc *configyaml.Doc, cat *catalog.Catalog) Identity {
	v, ok := doc.Get("name")
	if !ok {
		return Identity{Rule: RuleNone, Reason: "no template key and no name"}
	}
	// A workspace may well be called 2024 or yes: that is no template's
	// display name, but it is not a broken file either.
	name, ok := configyaml.Str(v)
	if !ok {
		return Identity{Rule: RuleNone, Reason: fmt.Sprintf("no template key, and name is %s, not a string", kind(v))}
	}
	if strings.TrimSpace(name) == "" {
		return Identity{Rule: RuleNone, Reason: "no template key, and name is empty"}
	}
	t, ok := cat.ByDisplayName(name)
	if !ok {
		return Identity{Rule: RuleNone, Reason: fmt.Sprintf("no template key, and name %q matches no template's display name", name)}
	}
	// A name is the one thing a person renames: the body must also look like
	// the template, and more like it than like its runtime's default.
	shape := doc.Shape()
	r := Resemblance{Template: configyaml.Resemblance(shape, cat.Shape(t.Name))}
	if d, ok := cat.DefaultFor(t.Runtime); ok && d.Name != t.Name {
		r.Against, r.Default = d.Name, configyaml.Resemblance(shape, cat.Shape(d.Name))
	}
	if r.Template < MinResemblance || (r.Against != "" && r.Template <= r.Default) {
		why := fmt.Sprintf("name %q matches template %s's display name, but the body resembles it %d%%", name, t.Name, r.Template)
		if r.Against != "" {
			why += fmt.Sprintf(" and the runtime default %s %d%%", r.Against, r.Default)
		}
		return Identity{Rule: RuleUnlike, Resemblance: r, Reason: why + ": a renamed config is no evidence of the template"}
	}
	return Identity{Rule: RuleName, Template: t.Name, Known: true, Default: t.Default, Runtime: t.Runtime, Resemblance: r,
		Reason: fmt.Sprintf("name %q matches template %s's display name, and the body resembles it %d%%", name, t.Name, r.Template)}
}

// kind names a node's type for a reason: its tag for scalars, else its shape.
func kind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	default:
		return n.ShortTag()
	}
}
