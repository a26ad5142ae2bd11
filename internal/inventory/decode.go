package inventory

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"backfill/internal/collector"
	"backfill/internal/placeholder"
	"backfill/internal/secret"
	"backfill/internal/tenantdb"
	"backfill/internal/yamlnode"
)

// The document is walked as a yaml.Node tree rather than decoded into
// structs: Node decoding is not strict, and walking it ourselves gives every
// error an exact line and the tenant it belongs to.

// parser accumulates errors so that an operator sees every problem at once.
type parser struct {
	file      string
	getenv    func(string) (string, bool)
	errs      []*Error
	envValues []string
	// databasesOnly: collectors are not read (LoadDatabases).
	databasesOnly bool

	// Aliases can make one node appear many times; each is validated once
	// so that a small file cannot cost quadratic time or repeat its errors.
	tenantNodes    map[*yaml.Node]int // resolved tenant node -> line first seen
	collectorNodes map[*yaml.Node]collectorResult
}

type collectorResult struct {
	raw, exp collector.Spec
	ok       bool
}

func (p *parser) errorf(line int, tenant, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: max(line, 1), Tenant: tenant, Msg: fmt.Sprintf(format, args...)})
}

// err returns the accumulated errors in line order, or nil.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	if len(p.errs) == 1 {
		return p.errs[0]
	}
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

func (p *parser) parse(data []byte) *Inventory {
	inv := &Inventory{}
	root := p.document(data)
	if root == nil {
		return inv
	}
	top, ok := p.fields(root, "", "the top level", "version", "defaults", "tenants")
	if !ok {
		return inv
	}

	if v, ok := top["version"]; !ok {
		p.errorf(root.Line, "", "missing version (must be 1)")
	} else if n := resolve(v.val); n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Value != "1" {
		p.errorf(n.Line, "", "version must be 1")
	}

	// defaultsState distinguishes "no default" from "a broken default", so
	// that a broken default is reported once, not again for every tenant.
	var defRaw, defExp []collector.Spec
	defaultsState := "absent"
	if d, ok := top["defaults"]; ok {
		// LoadDatabases checks the keys and reads nothing under them.
		if df, ok := p.fields(d.val, "", "defaults", "collector", "collectors"); ok && !p.databasesOnly {
			if raw, exp, set, ok := p.chain(df, d.key.Line, ""); set {
				defaultsState = "broken"
				if ok {
					defRaw, defExp, defaultsState = raw, exp, "ok"
				}
			}
		} else if !ok {
			defaultsState = "broken"
		}
	}

	t, ok := top["tenants"]
	if !ok {
		p.errorf(root.Line, "", "missing tenants")
		return inv
	}
	list := resolve(t.val)
	if isNull(list) {
		p.errorf(t.key.Line, "", "tenants is empty; list at least one tenant")
		return inv
	}
	if list.Kind != yaml.SequenceNode {
		p.errorf(list.Line, "", "tenants must be a list, not %s", kindName(list))
		return inv
	}
	if len(list.Content) == 0 {
		p.errorf(t.key.Line, "", "tenants is empty; list at least one tenant")
		return inv
	}

	byName := make(map[string]Tenant) // keyed by lower-cased name
	p.tenantNodes = make(map[*yaml.Node]int)
	for _, item := range list.Content {
		node := resolve(item)
		if first, seen := p.tenantNodes[node]; seen {
			p.errorf(item.Line, peekName(node), "this alias repeats the tenant entry at line %d", first)
			continue
		}
		p.tenantNodes[node] = item.Line
		tn, ok := p.tenant(node, defRaw, defExp, defaultsState)
		if tn.Name != "" {
			key := strings.ToLower(tn.Name)
			if first, dup := byName[key]; dup {
				if first.Name == tn.Name {
					p.errorf(tn.Line, tn.Name, "duplicate tenant name (first at line %d)", first.Line)
				} else {
					// Names become directory names; on a case-insensitive
					// file system these two would share one.
					p.errorf(tn.Line, tn.Name, "name differs only in case from tenant %q at line %d", first.Name, first.Line)
				}
				continue
			}
			byName[key] = tn
		}
		if ok {
			inv.Tenants = append(inv.Tenants, tn)
		}
	}
	inv.envValues = p.envValues
	return inv
}

// document decodes data into a node tree and returns its root mapping, or
// nil after recording an error.
func (p *parser) document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if err == io.EOF {
			p.errorf(1, "", "inventory is empty; expected a mapping with version and tenants")
		} else {
			p.yamlError(data, err)
		}
		return nil
	}
	var next yaml.Node
	switch err := decodeNode(dec, &next); {
	case err == nil:
		p.errorf(next.Line, "", "a second YAML document starts here; the inventory must be a single document")
		return nil
	case err != io.EOF:
		p.yamlError(data, err)
		return nil
	}

	if len(doc.Content) == 0 || isNull(resolve(doc.Content[0])) {
		p.errorf(doc.Line, "", "inventory is empty; expected a mapping with version and tenants")
		return nil
	}
	root := resolve(doc.Content[0])
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "", "the top level must be a mapping, not %s", kindName(root))
		return nil
	}
	return root
}

// decodeNode guards against panics inside the YAML library: a malformed
// operator file must produce an error, not a crash.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: %v", r)
		}
	}()
	return dec.Decode(n)
}

var yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)

// yamlError records a syntax error from the YAML library. The library leaves
// out the line for some errors; the line is then found by looking for the
// offending input, or taken to be the first line.
func (p *parser) yamlError(data []byte, err error) {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		p.errorf(line, "", "invalid YAML: %s", m[2])
		return
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	p.errorf(locate(data, msg), "", "invalid YAML: %s", msg)
}

var unknownAnchorRE = regexp.MustCompile(`^unknown anchor '(.*)' referenced$`)

// locate guesses the line a line-less YAML error refers to.
func locate(data []byte, msg string) int {
	off := -1
	switch {
	case unknownAnchorRE.MatchString(msg):
		off = bytes.Index(data, []byte("*"+unknownAnchorRE.FindStringSubmatch(msg)[1]))
	case strings.Contains(msg, "control characters"):
		off = bytes.IndexFunc(data, func(r rune) bool {
			return r == 0x7f || (r < 0x20 && r != '\t' && r != '\n' && r != '\r')
		})
	case strings.Contains(msg, "UTF-8"):
		for i := 0; i < len(data); {
			r, size := utf8.DecodeRune(data[i:])
			if r == utf8.RuneError && size <= 1 {
				off = i
				break
			}
			i += size
		}
	}
	if off < 0 {
		return 1
	}
	return 1 + bytes.Count(data[:off], []byte("\n"))
}

// tenant validates one entry of the tenants list. It returns the tenant with
// as much filled in as could be validated, and whether all of it was.
func (p *parser) tenant(n *yaml.Node, defRaw, defExp []collector.Spec, defaultsState string) (Tenant, bool) {
	t := Tenant{Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "", "each tenant must be a mapping, not %s", kindName(n))
		return t, false
	}
	label := peekName(n) // so errors in other keys can name the tenant
	errs := len(p.errs)
	f, _ := p.fields(n, label, "a tenant", "name", "dsn", "collector", "collectors")

	if v, ok := f["name"]; !ok {
		p.errorf(n.Line, "", "tenant has no name")
	} else if name, ok := p.str(v.val, label, "name"); ok {
		if !validName(name) {
			p.errorf(v.val.Line, label, `name must match [A-Za-z0-9._-]+, not start with "-" and not be "." or ".."`)
		} else {
			t.Name = name
		}
	}

	if v, ok := f["dsn"]; !ok {
		p.errorf(n.Line, label, "missing dsn")
	} else if raw, ok := p.str(v.val, label, "dsn"); ok {
		line := resolve(v.val).Line
		if raw == "" {
			p.errorf(line, label, "dsn is empty")
		} else if dsn, ok := p.expand(raw, line, label, "dsn"); ok {
			if dsn == "" {
				p.errorf(line, label, "dsn is empty after expanding environment variables")
			} else if _, err := secret.DSNPasswords(dsn); err != nil {
				// err never quotes the DSN, so it is safe to show.
				p.errorf(line, label, "dsn is not a valid postgres URL or key=value DSN: %v", err)
			} else if derr := dsnProblem(dsn); derr != "" {
				p.errorf(line, label, "dsn does not parse: %s", derr)
			} else {
				t.DSN = dsn
			}
		}
	}

	if p.databasesOnly {
		return t, len(p.errs) == errs
	}
	if raw, exp, set, _ := p.chain(f, n.Line, label); set {
		t.RawChain, t.Chain = raw, exp
	} else {
		switch defaultsState {
		case "ok":
			t.RawChain, t.Chain = cloneChain(defRaw), cloneChain(defExp)
		case "absent":
			p.errorf(n.Line, label, "no collector: the tenant sets none and there is no defaults.collector or defaults.collectors")
		}
	}
	if len(t.Chain) > 0 {
		t.Raw, t.Collector = t.RawChain[0], t.Chain[0]
	}
	return t, len(p.errs) == errs
}

// maxChain bounds a collectors list: each one is an attempt per workspace.
const maxChain = 8

// chain reads a mapping's collector (one) or collectors (a list tried in
// order), returning them as written and expanded; set says whether either
// key is there.
func (p *parser) chain(f map[string]field, line int, tenant string) (raw, exp []collector.Spec, set, ok bool) {
	one, hasOne := f["collector"]
	list, hasList := f["collectors"]
	switch {
	case hasOne && hasList:
		p.errorf(list.key.Line, tenant, "set collector or collectors, not both")
		return nil, nil, true, false
	case hasOne:
		r, e, ok := p.collector(one, tenant)
		return []collector.Spec{r}, []collector.Spec{e}, true, ok
	case !hasList:
		return nil, nil, false, false
	}
	n := resolve(list.val)
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		p.errorf(list.key.Line, tenant, "collectors must be a non-empty list of collectors, each a mapping like {exec: [...]} or {file: ...}")
		return nil, nil, true, false
	}
	if len(n.Content) > maxChain {
		p.errorf(list.key.Line, tenant, "collectors lists %d collectors; at most %d", len(n.Content), maxChain)
		return nil, nil, true, false
	}
	ok = true
	for _, item := range n.Content {
		r, e, iok := p.collector(field{key: resolve(item), val: item}, tenant)
		raw, exp = append(raw, r), append(exp, e)
		ok = ok && iok
	}
	return raw, exp, true, ok
}

func cloneChain(cs []collector.Spec) []collector.Spec {
	out := make([]collector.Spec, len(cs))
	for i, c := range cs {
		out[i] = clone(c)
	}
	return out
}

// peekName returns the tenant's name if it is a scalar, for labelling
// errors found before the name itself is validated.
func peekName(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), resolve(n.Content[i+1])
		if k.Kind == yaml.ScalarNode && k.Value == "name" && v.Kind == yaml.ScalarNode && !isNull(v) {
			return v.Value
		}
	}
	return ""
}

// validName reports whether s is a plain slug. A leading '-' is refused as
// well: the name is substituted for {tenant} in argv, where it would read as
// an option, and the placeholder package refuses such values.
func validName(s string) bool {
	if s == "" || s == "." || s == ".." || s[0] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// collector decodes a collector mapping (collector.Decode) and returns it
// both as written and expanded.
func (p *parser) collector(c field, tenant string) (raw, exp collector.Spec, ok bool) {
	n := resolve(c.val)
	if r, seen := p.collectorNodes[n]; seen {
		return clone(r.raw), clone(r.exp), r.ok
	}
	errs := len(p.errs)
	raw, exp = collector.Decode(tenantDecoder{p, tenant}, collector.Field{Key: c.key, Val: c.val})
	ok = len(p.errs) == errs
	if p.collectorNodes == nil {
		p.collectorNodes = make(map[*yaml.Node]collectorResult)
	}
	p.collectorNodes[n] = collectorResult{clone(raw), clone(exp), ok}
	return raw, exp, ok
}

// tenantDecoder is the parser as a collector.Decoder for one tenant's
// collectors (tenant is "" for the defaults).
type tenantDecoder struct {
	p      *parser
	tenant string
}

func (d tenantDecoder) Errorf(line int, format string, args ...any) {
	d.p.errorf(line, d.tenant, format, args...)
}

func (d tenantDecoder) Fields(n *yaml.Node, what string, allowed ...string) map[string]collector.Field {
	f, _ := d.p.fields(n, d.tenant, what, allowed...)
	if f == nil {
		return nil
	}
	out := make(map[string]collector.Field, len(f))
	for k, v := range f {
		out[k] = collector.Field{Key: v.key, Val: v.val}
	}
	return out
}

func (d tenantDecoder) Str(n *yaml.Node, what string) (string, bool) {
	return d.p.str(n, d.tenant, what)
}

func (d tenantDecoder) Template(raw string, line int, what string) (string, bool) {
	return d.p.collectorString(raw, line, d.tenant, what)
}

func (d tenantDecoder) Getenv(name string) (string, bool) { return d.p.getenv(name) }
func (d tenantDecoder) UseEnv(v string)                   { d.p.useEnv(v) }
func (d tenantDecoder) KindName(n *yaml.Node) string      { return kindName(n) }

// collectorString checks raw's placeholders and expands its ${NAME}s. The
// rules are the placeholder package's, so a template accepted here is one
// the collector will accept.
func (p *parser) collectorString(raw string, line int, tenant, what string) (string, bool) {
	ok := true
	if err := placeholder.Validate(raw); err != nil {
		// raw is the file's text, not an expanded secret, so naming it is safe.
		p.errorf(line, tenant, "%s: %v", what, err)
		ok = false
	}
	exp, eok := p.expand(raw, line, tenant, what)
	if ok && eok && placeholder.Validate(exp) != nil {
		// The braces came from an environment value: the collector would
		// fail on it and its error would quote part of a secret.
		p.errorf(line, tenant, "%s: an environment value contains a {name} sequence that is not a known placeholder", what)
		ok = false
	}
	return exp, ok && eok
}

// field is one key of a mapping with its value.
type field struct {
	key, val *yaml.Node
}

// fields checks that n is a mapping whose keys are unique strings from
// allowed, and returns its fields by key. A null value counts as an empty
// mapping, so "defaults:" with nothing under it is accepted.
func (p *parser) fields(n *yaml.Node, tenant, what string, allowed ...string) (map[string]field, bool) {
	n = resolve(n)
	out := make(map[string]field)
	if isNull(n) {
		return out, true
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, tenant, "%s must be a mapping, not %s", what, kindName(n))
		return nil, false
	}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, tenant, "keys in %s must be strings, not %s", what, kindName(k))
		case k.ShortTag() == "!!merge":
			p.errorf(k.Line, tenant, "merge keys (<<) are not supported")
		case !slices.Contains(allowed, k.Value):
			p.errorf(k.Line, tenant, "unknown key %q in %s (allowed: %s)", k.Value, what, strings.Join(allowed, ", "))
		default:
			if first, dup := out[k.Value]; dup {
				p.errorf(k.Line, tenant, "duplicate key %q (first at line %d)", k.Value, first.key.Line)
			} else {
				out[k.Value] = field{key: k, val: n.Content[i+1]}
				continue
			}
		}
		ok = false
	}
	return out, ok
}

// stringTags are the scalar types taken as their literal text where a
// string is expected: an argument written as 30 means "30".
var stringTags = []string{"!!str", "!!int", "!!float", "!!bool", "!!timestamp", "!!merge"}

// str returns the text of a scalar meant to be a string; null gives "".
func (p *parser) str(n *yaml.Node, tenant, what string) (string, bool) {
	n = resolve(n)
	switch {
	case n.Kind != yaml.ScalarNode:
		p.errorf(n.Line, tenant, "%s must be a string, not %s", what, kindName(n))
		return "", false
	case isNull(n):
		return "", true
	case !slices.Contains(stringTags, n.ShortTag()):
		p.errorf(n.Line, tenant, "%s must be a string, not a %s value", what, n.ShortTag())
		return "", false
	}
	return n.Value, true
}

func resolve(n *yaml.Node) *yaml.Node { return yamlnode.Resolve(n) }

func isNull(n *yaml.Node) bool { return yamlnode.IsNull(n) }

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a single value"
	}
	return "an unexpected node"
}

// dsnProblem is why the DSN's own text cannot connect (an sslmode pgx does
// not know, a port that is not a number), or "". A file it names that is
// missing here is left to the machine that connects.
func dsnProblem(dsn string) string {
	var e *tenantdb.DSNError
	if err := tenantdb.CheckDSN(dsn); errors.As(err, &e) && !e.Env {
		return e.Why
	}
	return ""
}
