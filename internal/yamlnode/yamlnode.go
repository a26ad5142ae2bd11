// Package yamlnode holds the rules for reading a yaml.v3 node tree that every
// strict decoder here (the inventory, its collectors, the CP's YAML files,
// workspace configs) shares: how an alias is followed and what counts as
// null. Each decoder keeps its own wording for errors.
package yamlnode

import "gopkg.in/yaml.v3"

// Resolve follows an alias to the node it names; nil stays nil. Aliases
// cannot chain, but the bound keeps a malformed tree from looping.
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; i < 8 && n != nil && n.Kind == yaml.AliasNode && n.Alias != nil; i++ {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n, aliases followed, is a null scalar (`~`, `null`
// or nothing at all).
func IsNull(n *yaml.Node) bool {
	n = Resolve(n)
	return n != nil && n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}
