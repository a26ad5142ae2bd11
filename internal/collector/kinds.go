package collector

import (
	"fmt"
	"net/http"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/internal/placeholder"
	"backfill/internal/yamlnode"
)

// A kind is one collection method: the Spec fields it uses, how they are
// decoded from the inventory and checked, how an attempt is described, and
// the attempt itself. Each kind lives in its own file.
type kind interface {
	// name is the method's name in the inventory and in Spec.Method.
	name() string
	// fields lists the Spec fields the kind may set; the first is required.
	fields() []string
	// validate checks the kind's own fields of one spec (raw or expanded).
	validate(s Spec) error
	// check makes the kind's checks that need both specs (URLs are parsed
	// from spec, quoted from raw) and returns the file root, if any.
	check(spec, raw Spec) (root string, err error)
	// decode reads the kind's value from the inventory into raw and exp.
	decode(d Decoder, v Field, raw, exp *Spec)
	// target describes an attempt from raw; fill expands placeholders.
	target(raw Spec, fill func(string) string) string
	// requests is how many HTTP requests one attempt makes.
	requests() int
	// collect makes one attempt, filling r; secrets it expands on the way
	// it hands to c.learn before any request, so that r is scrubbed of
	// them too.
	collect(c *Collector, a attempt, v placeholder.Values, r *Result)
}

// kinds is the one list of collection methods, in the order messages name
// them: a new method is its file and a line here.
var kinds = []kind{execKind{}, httpKind{}, fileKind{}, filesAPIKind{}}

func kindOf(method string) (kind, bool) {
	for _, k := range kinds {
		if k.name() == method {
			return k, true
		}
	}
	return nil, false
}

// methodList names every method for messages: "exec, http, file or files_api".
func methodList() string {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name()
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Field is one key of a YAML mapping with its value.
type Field struct {
	Key, Val *yaml.Node
}

// Decoder is what decoding a collector needs from the inventory's parser:
// errors that carry the file, the line and the tenant, the inventory's
// strict reading of mappings and strings, and its ${NAME} expansion. It is
// bound to one tenant (or to the defaults).
type Decoder interface {
	// Errorf records a problem at line.
	Errorf(line int, format string, args ...any)
	// Fields checks that n is a mapping with unique keys from allowed and
	// returns them by key; nil after recording an error.
	Fields(n *yaml.Node, what string, allowed ...string) map[string]Field
	// Str returns the text of a scalar meant to be a string; null gives "".
	Str(n *yaml.Node, what string) (string, bool)
	// Template checks raw's placeholders and expands its ${NAME}s.
	Template(raw string, line int, what string) (string, bool)
	// Getenv resolves a variable through the inventory's lookup.
	Getenv(name string) (string, bool)
	// UseEnv records a value taken from the environment as a secret.
	UseEnv(value string)
	// KindName describes a node's shape for a message ("a list").
	KindName(n *yaml.Node) string
}

// Decode reads one inventory collector mapping, c, which must set exactly
// one method, into the spec as written (raw) and expanded (exp). Problems
// go to d; the specs are then partly filled.
func Decode(d Decoder, c Field) (raw, exp Spec) {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.name()
	}
	f := d.Fields(c.Val, "a collector", names...)
	if f == nil {
		return raw, exp
	}
	var set []kind
	var setNames []string
	for _, k := range kinds {
		if _, ok := f[k.name()]; ok {
			set, setNames = append(set, k), append(setNames, k.name())
		}
	}
	switch len(set) {
	case 0:
		d.Errorf(c.Key.Line, "collector must set exactly one of %s; it sets none", methodList())
		return raw, exp
	case 1:
	default:
		d.Errorf(c.Key.Line, "collector must set exactly one of %s; it sets %s", methodList(), strings.Join(setNames, " and "))
		return raw, exp
	}
	k := set[0]
	raw.Method, exp.Method = k.name(), k.name()
	k.decode(d, f[k.name()], &raw, &exp)
	return raw, exp
}

// decodeHeaders reads a headers mapping (http, files_api).
func decodeHeaders(d Decoder, h Field, raw, exp *Spec) {
	n := yamlnode.Resolve(h.Val)
	if yamlnode.IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n.Line, "headers must be a mapping of name to value, not %s", d.KindName(n))
		return
	}
	seen := make(map[string]int) // canonical name -> line
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := yamlnode.Resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode || yamlnode.IsNull(k) {
			d.Errorf(k.Line, "header names must be strings")
			continue
		}
		name := k.Value
		if !validHeaderName(name) {
			d.Errorf(k.Line, "invalid header name %q", name)
			continue
		}
		// HTTP header names are case-insensitive, so these would collide.
		canon := strings.ToLower(name)
		if first, dup := seen[canon]; dup {
			d.Errorf(k.Line, "duplicate header %q (first at line %d)", name, first)
			continue
		}
		seen[canon] = k.Line
		what := fmt.Sprintf("header %s", name)
		r, ok := d.Str(val, what)
		if !ok {
			continue
		}
		line := yamlnode.Resolve(val).Line
		e, ok := d.Template(r, line, what)
		if !ok {
			continue
		}
		if badHeaderValue(e) {
			d.Errorf(line, "header %s value contains a line break or NUL", name)
			continue
		}
		if raw.Headers == nil {
			raw.Headers, exp.Headers = make(map[string]string), make(map[string]string)
		}
		raw.Headers[name], exp.Headers[name] = r, e
	}
}

// validateHeaders checks a spec's headers: RFC 9110 token names, values
// without line breaks, valid placeholders.
func validateHeaders(h map[string]string) error {
	for _, k := range sortedKeys(h) {
		if !validHeaderName(k) {
			return fmt.Errorf("header name %q is not a valid token", k)
		}
		v := h[k]
		if badHeaderValue(v) {
			return fmt.Errorf("header %s: value contains a line break or NUL", k)
		}
		if err := placeholder.Validate(v); err != nil {
			return fmt.Errorf("header %s: %w", k, err)
		}
	}
	return nil
}

// badHeaderValue reports a line break or NUL, which would smuggle extra
// headers into the request.
func badHeaderValue(v string) bool { return strings.ContainsAny(v, "\r\n\x00") }

// validHeaderName reports whether k is an RFC 9110 token.
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return false
		}
	}
	return true
}

// headerNames lists a spec's header names, canonical and sorted, for a
// target description.
func headerNames(h map[string]string) string {
	if len(h) == 0 {
		return ""
	}
	names := sortedKeys(h)
	for i, n := range names {
		names[i] = http.CanonicalHeaderKey(n)
	}
	return " (headers: " + strings.Join(names, ", ") + ")"
}

// decodeURL reads a url or base_url value: present, a string, not empty,
// http or https once expanded. It returns the line, the expanded value and
// whether it may be used.
func decodeURL(d Decoder, f map[string]Field, v Field, method, key string) (line int, r, e string, ok bool) {
	u, present := f[key]
	if !present {
		d.Errorf(v.Key.Line, "%s collector has no %s", method, key)
		return 0, "", "", false
	}
	r, ok = d.Str(u.Val, key)
	if !ok {
		return 0, "", "", false
	}
	line = yamlnode.Resolve(u.Val).Line
	if r == "" {
		d.Errorf(line, "%s %s is empty", method, key)
		return line, "", "", false
	}
	e, ok = d.Template(r, line, key)
	if !ok {
		return line, "", "", false
	}
	if l := strings.ToLower(e); !strings.HasPrefix(l, "http://") && !strings.HasPrefix(l, "https://") {
		d.Errorf(line, "%s %s must start with http:// or https://", method, key)
		return line, r, e, false
	}
	return line, r, e, true
}
