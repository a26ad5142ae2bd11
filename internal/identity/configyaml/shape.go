package configyaml

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Bounds on Shape: real configs have a few dozen leaves a few levels deep,
// keys of a few words and list items of a few. Past them the shape is
// simply cut short, which only makes two large documents look less alike.
// They bound its work and memory whatever a captured config holds: nodes
// walked count each time an alias leads back to them, and each path is
// at most maxShapePath bytes plus a list item's maxShapeValue, so a config
// of explicit keys of a megabyte each costs no more than a plain one.
const (
	maxShapeLeaves = 10_000
	maxShapeVisits = 4 * maxShapeLeaves
	maxShapeDepth  = 16
	maxShapePath   = 512
	maxShapeValue  = 256
)

// Shape returns the document's shape as a set of leaf paths, for telling
// which template a config was made from when its values have been edited:
//
//   - a scalar under key path a.b is "a.b" (its value is left out: editing a
//     value keeps the shape of the template it came from);
//   - each scalar element of a sequence under a.b is "a.b[]=<value>" (lists
//     such as skills or plugins are what tells templates apart);
//   - a mapping inside a sequence contributes "a.b[].k" paths;
//   - an empty mapping or sequence is its own path.
//
// The top-level `name` and `description` are left out: they are what a
// renamed config changes, and carry no shape.
func (d *Doc) Shape() map[string]bool {
	s := &shaper{out: map[string]bool{}}
	for _, e := range d.entries {
		k, ok := e.KeyString()
		if !ok || k == "name" || k == "description" {
			continue
		}
		s.walk(clip(k, maxShapePath), e.Value, 1)
	}
	return s.out
}

// shaper collects a shape and counts the nodes it walks.
type shaper struct {
	out    map[string]bool
	visits int
}

func (s *shaper) walk(path string, n *yaml.Node, depth int) {
	n = resolve(n)
	s.visits++
	if n == nil || len(s.out) >= maxShapeLeaves || s.visits > maxShapeVisits {
		return
	}
	if depth > maxShapeDepth {
		s.out[path] = true
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			s.out[path] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, ok := Str(n.Content[i])
			if !ok {
				k = resolve(n.Content[i]).Value
			}
			s.walk(clip(path+"."+clip(k, maxShapePath), maxShapePath), n.Content[i+1], depth+1)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			s.out[path] = true
		}
		for _, el := range n.Content {
			if len(s.out) >= maxShapeLeaves || s.visits > maxShapeVisits {
				return
			}
			if el = resolve(el); el.Kind == yaml.ScalarNode {
				s.visits++
				s.out[path+"[]="+clip(strings.TrimSpace(el.Value), maxShapeValue)] = true
				continue
			}
			s.walk(path+"[]", el, depth+1)
		}
	default:
		s.out[path] = true
	}
}

// clip is s cut to at most n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Resemblance is the Jaccard similarity of two shapes, in whole percent:
// the leaves they share over the leaves either has. Two empty shapes are
// alike (100).
func Resemblance(a, b map[string]bool) int {
	if len(a) == 0 && len(b) == 0 {
		return 100
	}
	shared := 0
	for k := range a {
		if b[k] {
			shared++
		}
	}
	union := len(a) + len(b) - shared
	return shared * 100 / union
}
