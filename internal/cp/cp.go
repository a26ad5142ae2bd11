// Package cp reads the control plane's records: claims of which template a
// tenant, or a single workspace of it, uses. The planner weighs them against
// the other sources of truth, so this package keeps every claim as written
// (even contradicting ones) and only validates and indexes them.
package cp

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"backfill/internal/placeholder"
)

// Levels reported by Records.For: which kind of record the claims came from.
const (
	// LevelWorkspace means the claims name the workspace id itself.
	LevelWorkspace = "workspace"
	// LevelTenant means no record names the workspace, so the tenant-wide
	// records apply.
	LevelTenant = "tenant"
)

// Claim is one CP record.
type Claim struct {
	Tenant      string // as written (trimmed); matched exactly against the inventory
	WorkspaceID string // "" = tenant-wide; otherwise a lower-case UUID
	Template    string // as written (trimmed); the planner resolves it against the catalog
	Source      string // "file.csv:3" / "file.yaml:7" / "query row 12" — where it came from, for the review report
}

// Records is the set of claims, indexed for lookup. A nil *Records behaves as
// an empty set, so callers without a CP source need no special case.
type Records struct {
	claims []Claim         // sorted by (tenant, workspace_id, template, input order)
	byKey  map[key][]Claim // sub-slices of claims, same order
}

type key struct{ tenant, workspaceID string }

// builder collects claims in input order. records sorts on that order last
// rather than on Source, so "f.csv:9" comes before "f.csv:10" where a string
// sort would not.
type builder struct {
	claims []Claim
}

func (b *builder) add(c Claim) { b.claims = append(b.claims, c) }

func (b *builder) records() *Records {
	type seqClaim struct {
		Claim
		seq int
	}
	all := make([]seqClaim, len(b.claims))
	for i, c := range b.claims {
		all[i] = seqClaim{c, i}
	}
	slices.SortFunc(all, func(x, y seqClaim) int {
		return cmp.Or(
			strings.Compare(x.Tenant, y.Tenant),
			strings.Compare(x.WorkspaceID, y.WorkspaceID),
			strings.Compare(x.Template, y.Template),
			cmp.Compare(x.seq, y.seq),
		)
	})
	r := &Records{claims: make([]Claim, len(all)), byKey: make(map[key][]Claim)}
	for i, c := range all {
		r.claims[i] = c.Claim
	}
	for i := 0; i < len(r.claims); {
		k := key{r.claims[i].Tenant, r.claims[i].WorkspaceID}
		j := i + 1
		for j < len(r.claims) && r.claims[j].Tenant == k.tenant && r.claims[j].WorkspaceID == k.workspaceID {
			j++
		}
		r.byKey[k] = r.claims[i:j:j]
		i = j
	}
	return r
}

// Claims returns every claim, identical duplicates included (each has its own
// Source), sorted by tenant, workspace_id, template and then input order,
// which is source order within one file or query.
func (r *Records) Claims() []Claim {
	if r == nil {
		return nil
	}
	return slices.Clone(r.claims)
}

// Len is the number of claims, identical duplicates included.
func (r *Records) Len() int {
	if r == nil {
		return 0
	}
	return len(r.claims)
}

// For returns the claims that apply to a workspace: the distinct
// workspace-level templates when any exist (level LevelWorkspace), else the
// distinct tenant-wide ones (LevelTenant), else none (level ""). Templates
// come sorted; more than one means the CP contradicts itself, which is the
// planner's cp-ambiguous. Sources lists every record behind the answer,
// duplicates included, so the report can point at all of them.
func (r *Records) For(tenant, workspaceID string) (templates []string, level string, sources []string) {
	if r == nil {
		return nil, "", nil
	}
	if id := normalizeID(workspaceID); id != "" {
		if cs := r.byKey[key{tenant, id}]; len(cs) > 0 {
			t, s := collect(cs)
			return t, LevelWorkspace, s
		}
	}
	if cs := r.byKey[key{tenant, ""}]; len(cs) > 0 {
		t, s := collect(cs)
		return t, LevelTenant, s
	}
	return nil, "", nil
}

// collect relies on cs being sorted by template, so equal templates are
// adjacent and the result is sorted.
func collect(cs []Claim) (templates, sources []string) {
	for _, c := range cs {
		if len(templates) == 0 || templates[len(templates)-1] != c.Template {
			templates = append(templates, c.Template)
		}
		sources = append(sources, c.Source)
	}
	return templates, sources
}

// Tenants returns the distinct tenants named, sorted, so the CLI can warn
// about ones missing from the inventory.
func (r *Records) Tenants() []string {
	if r == nil {
		return nil
	}
	var out []string
	for _, c := range r.claims {
		if len(out) == 0 || out[len(out)-1] != c.Tenant {
			out = append(out, c.Tenant)
		}
	}
	return out
}

// Digest is a sha256 hex over the distinct (tenant, workspace_id, template)
// claims in sorted order, for the plan's input digests. Sources and identical
// duplicates are left out on purpose: they change neither the claims nor the
// plan, so moving a file, converting it to another format or reordering it
// keeps the digest.
func (r *Records) Digest() string {
	h := sha256.New()
	h.Write([]byte("backfill-cp-claims-v1\n"))
	claims := r.claimsOrNil()
	var prev *Claim
	for i := range claims {
		c := &claims[i]
		if prev != nil && prev.Tenant == c.Tenant && prev.WorkspaceID == c.WorkspaceID && prev.Template == c.Template {
			continue
		}
		prev = c
		// Length prefixes keep the encoding unambiguous whatever the values hold.
		for _, f := range []string{c.Tenant, c.WorkspaceID, c.Template} {
			h.Write([]byte(strconv.Itoa(len(f))))
			h.Write([]byte{':'})
			h.Write([]byte(f))
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (r *Records) claimsOrNil() []Claim {
	if r == nil {
		return nil
	}
	return r.claims
}

// cleanText trims a tenant or template and rejects values the planner could
// not compare or the report could not show faithfully: empty ones, invalid
// UTF-8, and invisible characters (controls, zero-width and the like), since
// "seo-agent" and "seo\u200b-agent" must not pass for the same name.
func cleanText(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%s is empty", field)
	}
	if !utf8.ValidString(s) {
		return "", fmt.Errorf("%s %q is not valid UTF-8", field, s)
	}
	for _, r := range s {
		if r != ' ' && (!unicode.IsGraphic(r) || unicode.Is(unicode.Zs, r)) {
			return "", fmt.Errorf("%s %q contains the non-printing character %U", field, s, r)
		}
	}
	return s, nil
}

// cleanWorkspaceID accepts "" (tenant-wide) or a UUID in its canonical
// 8-4-4-4-12 form, returned lower-case because tenant databases print UUIDs
// lower-case and lookups compare strings.
func cleanWorkspaceID(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !placeholder.IsUUID(s) {
		return "", fmt.Errorf("workspace_id %q is not a UUID", s)
	}
	return strings.ToLower(s), nil
}

// normalizeID lets For accept a workspace id in any case, as the inventory
// may have been produced by a tool that upper-cases UUIDs.
func normalizeID(s string) string {
	s = strings.TrimSpace(s)
	if placeholder.IsUUID(s) {
		return strings.ToLower(s)
	}
	return s
}

// newClaim validates one record's fields; at says where each field came from,
// so an error names the file and the line of the offending value.
func newClaim(tenant, workspaceID, template string, at func(field string) string, source string) (Claim, error) {
	t, err := cleanText("tenant", tenant)
	if err != nil {
		return Claim{}, fmt.Errorf("%s: %w", at(fieldTenant), err)
	}
	w, err := cleanWorkspaceID(workspaceID)
	if err != nil {
		return Claim{}, fmt.Errorf("%s: %w", at(fieldWorkspaceID), err)
	}
	tp, err := cleanText("template", template)
	if err != nil {
		return Claim{}, fmt.Errorf("%s: %w", at(fieldTemplate), err)
	}
	return Claim{Tenant: t, WorkspaceID: w, Template: tp, Source: source}, nil
}

// The column and key names, shared by every format.
const (
	fieldTenant      = "tenant"
	fieldWorkspaceID = "workspace_id"
	fieldTemplate    = "template"
)

// Positions of the fields in fieldNames and in per-field arrays.
const (
	idxTenant = iota
	idxWorkspaceID
	idxTemplate
)

var fieldNames = [3]string{idxTenant: fieldTenant, idxWorkspaceID: fieldWorkspaceID, idxTemplate: fieldTemplate}

func fieldIndex(name string) int {
	return slices.Index(fieldNames[:], name)
}
