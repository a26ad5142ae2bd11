// Package configyaml reads a workspace config.yaml into its top-level mapping,
// refusing anything that is not plainly one YAML mapping. The catalog and the
// identity rules share it so that a template's display name and a live file's
// `name:` are read by exactly the same rules.
//
// The input is hostile by assumption (it was captured from running
// workspaces), so reading is bounded: at most MaxSize bytes, at most MaxNodes
// nodes counting every alias expansion, and at most MaxDepth levels of
// nesting, again through aliases.
package configyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"backfill/internal/yamlnode"
)

// Limits on what Parse accepts. Real config files are a few KiB, a few
// hundred nodes and under ten levels deep; these leave ample room while
// keeping the work per file small and predictable.
const (
	// MaxSize is the largest file accepted, in bytes after the BOM.
	MaxSize = 1 << 20
	// MaxNodes bounds the nodes of the document with every alias expanded,
	// which is what stops "billion laughs" documents. It is above the ~500k
	// nodes that MaxSize bytes can hold without aliases, so only aliasing
	// can reach it.
	MaxNodes = 1_000_000
	// MaxDepth bounds nesting, with aliases expanded.
	MaxDepth = 100
)

var bom = []byte("\xEF\xBB\xBF")

// Entry is one key/value pair of a mapping, with aliases resolved on both
// sides.
type Entry struct {
	Key   *yaml.Node // always a scalar
	Value *yaml.Node
}

// KeyString returns the key's text when the key is a string (tag !!str):
// `1:` or `true:` are not the string keys "1" or "true".
func (e Entry) KeyString() (string, bool) {
	return Str(e.Key)
}

// Doc is a parsed config file: one YAML mapping.
type Doc struct {
	entries []Entry
	byKey   map[string]*yaml.Node
}

// Len returns the number of top-level keys.
func (d *Doc) Len() int { return len(d.entries) }

// Entries returns the top-level pairs in file order.
func (d *Doc) Entries() []Entry { return append([]Entry(nil), d.entries...) }

// Get returns the value of the top-level string key, aliases resolved.
func (d *Doc) Get(key string) (*yaml.Node, bool) {
	v, ok := d.byKey[key]
	return v, ok
}

// Parse reads content as one YAML mapping. A UTF-8 BOM is dropped and CRLF
// line endings are fine. The error, when there is one, is a short sentence
// fit for a report.
//
// Refused, on top of invalid YAML: more than MaxSize bytes, bytes that are
// not UTF-8, an empty or comment-only file, more than one document (which of
// them the platform reads is not something to guess), a document that is not
// a mapping, a duplicate key in any mapping, a key that is not a scalar, a
// merge key (`<<`, which would add keys the file does not spell out), and the
// limits above.
func Parse(content []byte) (*Doc, error) {
	content = bytes.TrimPrefix(content, bom)
	if len(content) > MaxSize {
		return nil, fmt.Errorf("file is %d bytes, over the %d-byte limit", len(content), MaxSize)
	}
	if !utf8.Valid(content) {
		return nil, fmt.Errorf("not valid UTF-8 (first bad byte at offset %d)", firstInvalid(content))
	}
	if len(bytes.TrimSpace(content)) == 0 {
		return nil, errors.New("empty file")
	}
	doc, err := decodeOne(content)
	if err != nil {
		return nil, err
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, errors.New("no YAML document")
	}
	w := walker{memo: map[*yaml.Node]result{}}
	if _, err := w.walk(doc.Content[0], 1); err != nil {
		return nil, err
	}
	root := resolve(doc.Content[0])
	switch {
	case root.Kind == yaml.MappingNode:
	case root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null":
		return nil, errors.New("document is null, not a mapping")
	case root.Kind == yaml.ScalarNode:
		return nil, fmt.Errorf("document is a scalar (%s), not a mapping", root.ShortTag())
	case root.Kind == yaml.SequenceNode:
		return nil, errors.New("document is a sequence, not a mapping")
	default:
		return nil, errors.New("document is not a mapping")
	}
	entries, _ := MappingEntries(root)
	d := &Doc{entries: entries, byKey: make(map[string]*yaml.Node, len(entries))}
	for _, e := range entries {
		if k, ok := e.KeyString(); ok {
			d.byKey[k] = e.Value
		}
	}
	return d, nil
}

// decodeOne parses the first document and makes sure no second one follows.
// The YAML library can panic on some malformed input instead of returning an
// error; that is turned into an error here so a hostile file is only ever
// "invalid".
func decodeOne(content []byte) (doc *yaml.Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			doc, err = nil, fmt.Errorf("invalid YAML: parser failed: %v", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(content))
	var first yaml.Node
	switch err := dec.Decode(&first); {
	case errors.Is(err, io.EOF):
		return nil, errors.New("no YAML document (only comments or directives)")
	case err != nil:
		return nil, fmt.Errorf("invalid YAML: %v", trimPrefix(err))
	}
	var second yaml.Node
	switch err := dec.Decode(&second); {
	case errors.Is(err, io.EOF):
		return &first, nil
	case err != nil:
		return nil, fmt.Errorf("invalid YAML: %v", trimPrefix(err))
	default:
		return nil, errors.New("more than one YAML document")
	}
}

// trimPrefix drops the library's "yaml: " prefix, since callers say
// "invalid YAML" already.
func trimPrefix(err error) string {
	s := err.Error()
	rest, _ := strings.CutPrefix(s, "yaml: ")
	return rest
}

func firstInvalid(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			return i
		}
		i += n
	}
	return -1
}

// Str returns a scalar's text when it is a string (tag !!str), aliases
// resolved. Plain `123`, `true` or `~` are not strings; quoted ones are.
func Str(n *yaml.Node) (string, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", false
	}
	return n.Value, true
}

// IsNull reports whether n is a null scalar (`~`, `null`, or nothing at all).
func IsNull(n *yaml.Node) bool { return yamlnode.IsNull(n) }

// MappingEntries returns the pairs of a mapping node, aliases resolved, or
// false when n is not a mapping. It relies on Parse having checked the
// document, so it is meant for nodes of a Doc.
func MappingEntries(n *yaml.Node) ([]Entry, bool) {
	n = resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, false
	}
	out := make([]Entry, 0, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		out = append(out, Entry{Key: resolve(n.Content[i]), Value: resolve(n.Content[i+1])})
	}
	return out, true
}

func resolve(n *yaml.Node) *yaml.Node { return yamlnode.Resolve(n) }

// result is what walking a node found: its size and height with aliases
// expanded. Anchored nodes are memoised, so each node is checked once and a
// document costs time linear in its text however its aliases multiply.
type result struct {
	size, height int
	done         bool // false while the node is being walked: an alias to it is a cycle
}

type walker struct {
	memo map[*yaml.Node]result
}

func (w *walker) walk(n *yaml.Node, depth int) (result, error) {
	if depth > MaxDepth {
		return result{}, fmt.Errorf("nested more than %d levels deep (line %d)", MaxDepth, n.Line)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return result{}, fmt.Errorf("line %d: alias *%s names no anchor", n.Line, n.Value)
		}
		r, seen := w.memo[n.Alias]
		if seen && !r.done {
			return result{}, fmt.Errorf("line %d: alias *%s refers to a node that contains it", n.Line, n.Value)
		}
		if !seen {
			var err error
			if r, err = w.walk(n.Alias, depth); err != nil {
				return result{}, err
			}
		}
		if depth-1+r.height > MaxDepth {
			return result{}, fmt.Errorf("line %d: alias *%s nests more than %d levels deep", n.Line, n.Value, MaxDepth)
		}
		return r, nil
	}
	if n.Anchor != "" {
		if r, seen := w.memo[n]; seen {
			if !r.done {
				return result{}, fmt.Errorf("line %d: anchor &%s contains itself", n.Line, n.Anchor)
			}
			return r, nil
		}
		w.memo[n] = result{}
	}
	r := result{size: 1, height: 1}
	if n.Kind == yaml.MappingNode {
		if err := checkKeys(n); err != nil {
			return result{}, err
		}
	}
	for _, c := range n.Content {
		cr, err := w.walk(c, depth+1)
		if err != nil {
			return result{}, err
		}
		r.size += cr.size
		if r.size > MaxNodes {
			return result{}, fmt.Errorf("more than %d nodes with aliases expanded (alias bomb?)", MaxNodes)
		}
		r.height = max(r.height, cr.height+1)
	}
	r.done = true
	if n.Anchor != "" {
		w.memo[n] = r
	}
	return r, nil
}

// checkKeys refuses what a plain reading of the mapping would get wrong:
// duplicate keys (readers disagree on which one wins), complex keys, and merge
// keys. Keys compare by tag and text, so `1:` and `"1":` differ.
func checkKeys(m *yaml.Node) error {
	if len(m.Content)%2 != 0 {
		return fmt.Errorf("line %d: mapping has a key without a value", m.Line)
	}
	seen := make(map[string]int, len(m.Content)/2)
	for i := 0; i < len(m.Content); i += 2 {
		k := resolve(m.Content[i])
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("line %d: mapping key is not a scalar", m.Content[i].Line)
		}
		tag := k.ShortTag()
		if tag == "!!merge" {
			return fmt.Errorf("line %d: merge key (<<) is not supported", m.Content[i].Line)
		}
		id := tag + "\x00" + k.Value
		if prev, dup := seen[id]; dup {
			return fmt.Errorf("line %d: mapping key %q already defined at line %d", m.Content[i].Line, k.Value, prev)
		}
		seen[id] = m.Content[i].Line
	}
	return nil
}
