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

	// Aliases can make one node appear many times; each is validated once
	// so that a small file cannot cost quadratic time or repeat its errors.
	tenantNodes    map[*yaml.Node]int // resolved tenant node -> line first seen
	collectorNodes map[*yaml.Node]collectorResult
}

type collectorResult struct {
	raw, exp Collector
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
	var defRaw, defExp []Collector
	defaultsState := "absent"
	if d, ok := top["defaults"]; ok {
		if df, ok := p.fields(d.val, "", "defaults", "collector", "collectors"); ok {
			if raw, exp, set, ok := p.chain(df, d.key.Line, ""); set {
				defaultsState = "broken"
				if ok {
					defRaw, defExp, defaultsState = raw, exp, "ok"
				}
			}
		} else {
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
func (p *parser) tenant(n *yaml.Node, defRaw, defExp []Collector, defaultsState string) (Tenant, bool) {
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
			} else {
				t.DSN = dsn
			}
		}
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
func (p *parser) chain(f map[string]field, line int, tenant string) (raw, exp []Collector, set, ok bool) {
	one, hasOne := f["collector"]
	list, hasList := f["collectors"]
	switch {
	case hasOne && hasList:
		p.errorf(list.key.Line, tenant, "set collector or collectors, not both")
		return nil, nil, true, false
	case hasOne:
		r, e, ok := p.collector(one, tenant)
		return []Collector{r}, []Collector{e}, true, ok
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

func cloneChain(cs []Collector) []Collector {
	out := make([]Collector, len(cs))
	for i, c := range cs {
		out[i] = c.clone()
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

var methods = []string{"exec", "http", "file", "files_api"}

// collector validates a collector mapping and returns it both as written
// and expanded.
func (p *parser) collector(c field, tenant string) (raw, exp Collector, ok bool) {
	n := resolve(c.val)
	if r, seen := p.collectorNodes[n]; seen {
		return r.raw.clone(), r.exp.clone(), r.ok
	}
	defer func() {
		if p.collectorNodes == nil {
			p.collectorNodes = make(map[*yaml.Node]collectorResult)
		}
		p.collectorNodes[n] = collectorResult{raw.clone(), exp.clone(), ok}
	}()
	errs := len(p.errs)
	f, _ := p.fields(c.val, tenant, "a collector", methods...)
	if f == nil {
		return raw, exp, false
	}
	var set []string
	for _, m := range methods {
		if _, ok := f[m]; ok {
			set = append(set, m)
		}
	}
	switch len(set) {
	case 0:
		p.errorf(c.key.Line, tenant, "collector must set exactly one of exec, http, file or files_api; it sets none")
		return raw, exp, false
	case 1:
	default:
		p.errorf(c.key.Line, tenant, "collector must set exactly one of exec, http, file or files_api; it sets %s", strings.Join(set, " and "))
		return raw, exp, false
	}

	raw.Method, exp.Method = set[0], set[0]
	v := f[set[0]]
	switch set[0] {
	case "exec":
		p.execCollector(v, tenant, &raw, &exp)
	case "http":
		p.http(v, tenant, &raw, &exp)
	case "file":
		p.fileCollector(v, tenant, &raw, &exp)
	case "files_api":
		p.filesAPI(v, tenant, &raw, &exp)
	}
	return raw, exp, len(p.errs) == errs
}

// maxRate bounds a files_api rate: the platform allows 10 a second per org.
const maxRate = 1000

// filesAPI validates a files_api collector: {base_url, headers, rate}.
func (p *parser) filesAPI(v field, tenant string, raw, exp *Collector) {
	f, _ := p.fields(v.val, tenant, "files_api", "base_url", "headers", "rate")
	if f == nil {
		return
	}
	if u, ok := f["base_url"]; !ok {
		p.errorf(v.key.Line, tenant, "files_api collector has no base_url")
	} else if r, ok := p.str(u.val, tenant, "base_url"); ok {
		line := resolve(u.val).Line
		if r == "" {
			p.errorf(line, tenant, "files_api base_url is empty")
		} else if e, ok := p.collectorString(r, line, tenant, "base_url"); ok {
			l := strings.ToLower(e)
			switch {
			case !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://"):
				p.errorf(line, tenant, "files_api base_url must start with http:// or https://")
			case strings.ContainsAny(e, "?#"):
				p.errorf(line, tenant, "files_api base_url must not have a query or fragment: give the server, the collector adds /workspaces/... and ?root=/configs")
			}
			raw.BaseURL, exp.BaseURL = r, e
		}
	}
	if h, ok := f["headers"]; ok {
		p.headers(h, tenant, raw, exp)
	}
	raw.Rate = collector.DefaultRate
	if r, ok := f["rate"]; ok {
		n := resolve(r.val)
		rate, err := strconv.ParseFloat(n.Value, 64)
		switch {
		case n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") || err != nil:
			p.errorf(n.Line, tenant, "files_api rate must be a number of requests per second (default %g)", collector.DefaultRate)
		case !(rate > 0 && rate <= maxRate):
			p.errorf(n.Line, tenant, "files_api rate must be above 0 and at most %d requests per second", maxRate)
		default:
			raw.Rate = rate
		}
	}
	exp.Rate = raw.Rate
}

// fileCollector validates a file collector: a path, or a mapping {path, root}.
func (p *parser) fileCollector(v field, tenant string, raw, exp *Collector) {
	pathField, rootField := v, field{}
	if n := resolve(v.val); n.Kind == yaml.MappingNode {
		f, _ := p.fields(n, tenant, "file", "path", "root")
		if f == nil {
			return
		}
		pf, ok := f["path"]
		if !ok {
			p.errorf(v.key.Line, tenant, "file collector has no path")
			return
		}
		pathField, rootField = pf, f["root"]
	}
	errs := len(p.errs)
	line := resolve(pathField.val).Line
	raw.Path, exp.Path = p.fileString(pathField, tenant, "file path")
	if rootField.val != nil {
		line = resolve(rootField.val).Line
		raw.Root, exp.Root = p.fileString(rootField, tenant, "file root")
	}
	if len(p.errs) > errs {
		return
	}
	// The collector's own rule, so that a file read at capture time can
	// never be refused for a reason the inventory could have caught.
	if _, err := collector.FileRoot(exp.Path, exp.Root); err != nil {
		p.errorf(line, tenant, "%v", err)
	}
}

// fileString validates one path of a file collector, returning it as
// written and expanded.
func (p *parser) fileString(v field, tenant, what string) (raw, exp string) {
	r, ok := p.str(v.val, tenant, what)
	if !ok {
		return "", ""
	}
	line := resolve(v.val).Line
	if r == "" {
		p.errorf(line, tenant, "%s is empty", what)
		return "", ""
	}
	e, ok := p.collectorString(r, line, tenant, what)
	if !ok {
		return "", ""
	}
	if e == "" {
		p.errorf(line, tenant, "%s is empty after expanding environment variables", what)
	}
	return r, e
}

// execCollector validates an exec collector: an argv list, or a mapping
// {argv, env}. The command's environment is resolved here, through the same
// lookup as ${NAME}, so that it is decided once and never taken from
// whatever else the process environment holds.
func (p *parser) execCollector(v field, tenant string, raw, exp *Collector) {
	argv := v
	var env field
	if n := resolve(v.val); n.Kind == yaml.MappingNode {
		f, _ := p.fields(n, tenant, "exec", "argv", "env")
		if f == nil {
			return
		}
		a, ok := f["argv"]
		if !ok {
			p.errorf(v.key.Line, tenant, "exec collector has no argv")
			return
		}
		argv, env = a, f["env"]
	}
	raw.Argv, exp.Argv = p.exec(argv, tenant)
	if env.val != nil {
		raw.Env = p.envNames(env, tenant)
		exp.Env = slices.Clone(raw.Env)
	}
	for _, name := range collector.BaseEnv {
		if v, ok := p.getenv(name); ok && !slices.Contains(raw.Env, name) {
			exp.Environ = append(exp.Environ, name+"="+v)
		}
	}
	for _, name := range raw.Env {
		if v, ok := p.getenv(name); ok {
			exp.Environ = append(exp.Environ, name+"="+v)
			if !slices.Contains(collector.BaseEnv, name) {
				p.useEnv(v)
			}
		}
	}
}

// envNames validates an exec collector's env list: variable names, each
// once, each set in the environment (a command missing its DOCKER_HOST
// would talk to the wrong daemon, so unset is an error, as for ${NAME}).
func (p *parser) envNames(v field, tenant string) []string {
	n := resolve(v.val)
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, tenant, "exec env must be a list of variable names such as [DOCKER_HOST], not %s", kindName(n))
		return nil
	}
	var names []string
	seen := make(map[string]int)
	for _, item := range n.Content {
		name, ok := p.str(item, tenant, "exec env entry")
		if !ok {
			continue
		}
		line := resolve(item).Line
		switch first, dup := seen[name]; {
		case !validVarName(name):
			p.errorf(line, tenant, "exec env: %q is not a variable name (letters, digits and _, not starting with a digit)", truncate(name, 40))
		case dup:
			p.errorf(line, tenant, "exec env: %s is listed twice (first at line %d)", name, first)
		default:
			if _, set := p.getenv(name); !set {
				p.errorf(line, tenant, "exec env: %s is not set in the environment", name)
				continue
			}
			seen[name] = line
			names = append(names, name)
		}
	}
	return names
}

func (p *parser) exec(v field, tenant string) (raw, exp []string) {
	n := resolve(v.val)
	if isNull(n) {
		p.errorf(v.key.Line, tenant, "exec argv is empty")
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, tenant, `exec must be a list of arguments such as ["cat", "/configs/config.yaml"] or a mapping {argv: [...], env: [...]}, not %s`, kindName(n))
		return nil, nil
	}
	if len(n.Content) == 0 {
		p.errorf(n.Line, tenant, "exec argv is empty")
		return nil, nil
	}
	for i, a := range n.Content {
		what := fmt.Sprintf("exec argument %d", i+1)
		r, ok := p.str(a, tenant, what)
		if !ok {
			continue
		}
		line := resolve(a).Line
		e, ok := p.collectorString(r, line, tenant, what)
		if !ok {
			continue
		}
		if i == 0 && e == "" {
			p.errorf(line, tenant, "exec program (the first argument) is empty")
		}
		raw, exp = append(raw, r), append(exp, e)
	}
	return raw, exp
}

func (p *parser) http(v field, tenant string, raw, exp *Collector) {
	f, _ := p.fields(v.val, tenant, "http", "url", "headers", "json_field")
	if f == nil {
		return
	}
	if u, ok := f["url"]; !ok {
		p.errorf(v.key.Line, tenant, "http collector has no url")
	} else if r, ok := p.str(u.val, tenant, "url"); ok {
		line := resolve(u.val).Line
		if r == "" {
			p.errorf(line, tenant, "http url is empty")
		} else if e, ok := p.collectorString(r, line, tenant, "url"); ok {
			if l := strings.ToLower(e); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
				p.errorf(line, tenant, "http url must start with http:// or https://")
			}
			raw.URL, exp.URL = r, e
		}
	}

	if h, ok := f["headers"]; ok {
		p.headers(h, tenant, raw, exp)
	}

	if j, ok := f["json_field"]; ok {
		if r, ok := p.str(j.val, tenant, "json_field"); ok {
			if r == "" {
				p.errorf(resolve(j.val).Line, tenant, "json_field is empty; omit it to use the whole response body")
			}
			// A field name, not a template: neither expanded nor substituted.
			raw.JSONField, exp.JSONField = r, r
		}
	}
}

func (p *parser) headers(h field, tenant string, raw, exp *Collector) {
	n := resolve(h.val)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, tenant, "headers must be a mapping of name to value, not %s", kindName(n))
		return
	}
	seen := make(map[string]int) // canonical name -> line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			p.errorf(k.Line, tenant, "header names must be strings")
			continue
		}
		name := k.Value
		if !validHeaderName(name) {
			p.errorf(k.Line, tenant, "invalid header name %q", name)
			continue
		}
		// HTTP header names are case-insensitive, so these would collide.
		canon := strings.ToLower(name)
		if first, dup := seen[canon]; dup {
			p.errorf(k.Line, tenant, "duplicate header %q (first at line %d)", name, first)
			continue
		}
		seen[canon] = k.Line
		what := fmt.Sprintf("header %s", name)
		r, ok := p.str(val, tenant, what)
		if !ok {
			continue
		}
		line := resolve(val).Line
		e, ok := p.collectorString(r, line, tenant, what)
		if !ok {
			continue
		}
		// A line break would smuggle extra headers into the request.
		if strings.ContainsAny(e, "\r\n\x00") {
			p.errorf(line, tenant, "header %s value contains a line break or NUL", name)
			continue
		}
		if raw.Headers == nil {
			raw.Headers, exp.Headers = make(map[string]string), make(map[string]string)
		}
		raw.Headers[name], exp.Headers[name] = r, e
	}
}

// validHeaderName reports whether s is an RFC 9110 token.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

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

// resolve follows an alias to the node it names. Aliases cannot chain, but
// the bound keeps a malformed tree from looping.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

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
