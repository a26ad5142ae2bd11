package configyaml

import (
	"strings"

	"gopkg.in/yaml.v3"
)

// Bounds on Shape: real configs have a few dozen leaves a few levels deep.
// Past them the shape is simply cut short, which only makes two large
// documents look less alike.
const (
	maxShapeLeaves = 10_000
	maxShapeDepth  = 16
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
	out := map[string]bool{}
	for _, e := range d.entries {
		k, ok := e.KeyString()
		if !ok || k == "name" || k == "description" {
			continue
		}
		shape(out, k, e.Value, 1)
	}
	return out
}

func shape(out map[string]bool, path string, n *yaml.Node, depth int) {
	n = resolve(n)
	if n == nil || len(out) >= maxShapeLeaves {
		return
	}
	if depth > maxShapeDepth {
		out[path] = true
		return
	}
	switch n.Kind {
	case yaml.MappingNode:
		if len(n.Content) == 0 {
			out[path] = true
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, ok := Str(n.Content[i])
			if !ok {
				k = resolve(n.Content[i]).Value
			}
			shape(out, path+"."+k, n.Content[i+1], depth+1)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			out[path] = true
		}
		for _, el := range n.Content {
			if el = resolve(el); el.Kind == yaml.ScalarNode {
				out[path+"[]="+strings.TrimSpace(el.Value)] = true
				continue
			}
			shape(out, path+"[]", el, depth+1)
		}
	default:
		out[path] = true
	}
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
