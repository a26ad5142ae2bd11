package cp

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"backfill/internal/yamlnode"
)

// yamlFormat reads a YAML list of claim mappings.
var yamlFormat = format{exts: []string{".yaml", ".yml"}, parse: parseYAML}

var yamlLine = regexp.MustCompile(`^line (\d+): `)

// yamlParserProblems are the messages of yaml.v3's parser (as opposed to its
// scanner). For these it prints the 0-based line, and no line at all for the
// first one, so their line is one more than the message says.
var yamlParserProblems = map[string]bool{
	"did not find expected <stream-start>":   true,
	"did not find expected <document start>": true,
	"did not find expected node content":     true,
	"did not find expected '-' indicator":    true,
	"did not find expected key":              true,
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
	"found duplicate %TAG directive":         true,
}

// yamlError moves the line yaml.v3 puts in its message to the usual
// file:line prefix.
func yamlError(name string, err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	if yamlParserProblems[msg] {
		line++
	}
	if line > 0 {
		return fmt.Errorf("%s: invalid YAML: %s", at(name, line), msg)
	}
	return fmt.Errorf("%s: invalid YAML: %s", name, msg)
}

func parseYAML(name string, data []byte) (*Records, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, fmt.Errorf("%s: empty file: want a YAML list of claims ([] for none)", name)
		}
		return nil, yamlError(name, err)
	}
	// A second document would be silently ignored by a plain Unmarshal; it is
	// more likely a mistake than intent.
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, fmt.Errorf("%s: more than one YAML document", at(name, extra.Line))
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("%s: empty document: want a YAML list of claims ([] for none)", at(name, doc.Line))
	}
	list := yamlnode.Resolve(doc.Content[0])
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: want a YAML list of claims, found %s", at(name, list.Line), yamlKind(list))
	}
	var b builder
	for _, item := range list.Content {
		c, err := yamlClaim(name, yamlnode.Resolve(item))
		if err != nil {
			return nil, err
		}
		b.add(c)
	}
	return b.records(), nil
}

func yamlClaim(name string, n *yaml.Node) (Claim, error) {
	objAt := at(name, n.Line)
	if n.Kind != yaml.MappingNode {
		return Claim{}, fmt.Errorf("%s: want a mapping with tenant, workspace_id and template, found %s", objAt, yamlKind(n))
	}
	var vals, lines [3]string
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := yamlnode.Resolve(n.Content[i]), yamlnode.Resolve(n.Content[i+1])
		keyAt := at(name, k.Line)
		if k.Kind != yaml.ScalarNode {
			return Claim{}, fmt.Errorf("%s: key must be a string, found %s", keyAt, yamlKind(k))
		}
		f := fieldIndex(k.Value)
		switch {
		case f < 0:
			return Claim{}, fmt.Errorf("%s: unknown key %q: want tenant, workspace_id, template", keyAt, k.Value)
		case lines[f] != "":
			return Claim{}, fmt.Errorf("%s: key %q appears twice", keyAt, k.Value)
		}
		lines[f] = at(name, v.Line)
		switch {
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
			vals[f] = v.Value
		case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null":
			if f != idxWorkspaceID {
				return Claim{}, fmt.Errorf("%s: %s is null", lines[f], k.Value)
			}
		default:
			// Unquoted 1.0 or true would otherwise change spelling on the way
			// through; asking for quotes keeps the value as written.
			return Claim{}, fmt.Errorf("%s: %s must be a string, found %s (quote it)", lines[f], k.Value, yamlKind(v))
		}
	}
	return claimFromMap(vals, lines, objAt)
}

func yamlKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.ScalarNode:
		return strings.TrimPrefix(n.ShortTag(), "!!")
	case yaml.AliasNode:
		return "an alias"
	}
	return "nothing"
}
