package cp

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

var utf8BOM = []byte("\xef\xbb\xbf")

// Parse reads claims from data in the format named by name's extension
// (.csv, .json, .yaml or .yml, in any case). name is used as given in errors
// and in each claim's Source.
//
// Every format holds records with the keys tenant, workspace_id and template.
// A CSV must start with a header naming exactly those three columns, in any
// order; a header alone means no claims, but a file without even a header is
// an error, as it is more likely truncated than meant. JSON and YAML hold a
// list of objects whose values are strings; workspace_id may be missing,
// null or "" for a tenant-wide claim, the other two are required. A leading
// UTF-8 byte order mark is ignored in every format.
func Parse(name string, data []byte) (*Records, error) {
	data = bytes.TrimPrefix(data, utf8BOM)
	switch ext := strings.ToLower(filepath.Ext(name)); ext {
	case ".csv":
		return parseCSV(name, data)
	case ".json":
		return parseJSON(name, data)
	case ".yaml", ".yml":
		return parseYAML(name, data)
	default:
		return nil, fmt.Errorf("%s: unknown CP file format %q: want .csv, .json, .yaml or .yml", name, ext)
	}
}

func at(name string, line int) string { return name + ":" + strconv.Itoa(line) }

func parseCSV(name string, data []byte) (*Records, error) {
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1 // counted here, to say which line is short
	header, err := r.Read()
	if err == io.EOF {
		return nil, fmt.Errorf("%s: no header: want tenant,workspace_id,template", name)
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	col, err := csvHeader(header)
	if err != nil {
		line, _ := r.FieldPos(0)
		return nil, fmt.Errorf("%s: %w", at(name, line), err)
	}
	var b builder
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		line, _ := r.FieldPos(0)
		if len(rec) != len(fieldNames) {
			return nil, fmt.Errorf("%s: %d fields, want %d (tenant,workspace_id,template)", at(name, line), len(rec), len(fieldNames))
		}
		// A quoted field may span lines; point at the line the field starts on.
		fieldAt := func(field string) string {
			l, _ := r.FieldPos(col[fieldIndex(field)])
			return at(name, l)
		}
		c, err := newClaim(rec[col[idxTenant]], rec[col[idxWorkspaceID]], rec[col[idxTemplate]], fieldAt, at(name, line))
		if err != nil {
			return nil, err
		}
		b.add(c)
	}
	return b.records(), nil
}

// csvHeader maps each field (in fieldNames order) to its column. The order of
// the columns is free because a header makes it unambiguous; anything but the
// three names is refused so a misspelt column cannot be silently ignored.
func csvHeader(header []string) ([3]int, error) {
	col := [3]int{-1, -1, -1}
	for i, h := range header {
		h = strings.TrimSpace(h)
		f := fieldIndex(h)
		switch {
		case f < 0:
			return col, fmt.Errorf("header: unknown column %q: want tenant,workspace_id,template", h)
		case col[f] >= 0:
			return col, fmt.Errorf("header: column %q appears twice", h)
		}
		col[f] = i
	}
	for f, c := range col {
		if c < 0 {
			return col, fmt.Errorf("header: no %s column: want tenant,workspace_id,template", fieldNames[f])
		}
	}
	return col, nil
}

func csvError(name string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: column %d: %w", at(name, pe.Line), pe.Column, pe.Err)
	}
	return fmt.Errorf("%s: %w", name, err)
}

// jsonDoc tracks where the decoder is in the file so errors can carry lines.
type jsonDoc struct {
	name string
	data []byte
	dec  *json.Decoder
}

func (d *jsonDoc) lineAt(off int64) int {
	off = min(max(off, 0), int64(len(d.data)))
	return 1 + bytes.Count(d.data[:off], []byte{'\n'})
}

// next is the line of the next token: the decoder's offset is just past the
// previous token, before any whitespace or separator.
func (d *jsonDoc) next() string {
	off := d.dec.InputOffset()
	for off < int64(len(d.data)) && strings.IndexByte(" \t\r\n,:", d.data[off]) >= 0 {
		off++
	}
	return at(d.name, d.lineAt(off))
}

func (d *jsonDoc) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err == nil {
		return tok, nil
	}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return nil, fmt.Errorf("%s: %w", at(d.name, d.lineAt(se.Offset)), err)
	case errors.As(err, &te):
		return nil, fmt.Errorf("%s: %w", at(d.name, d.lineAt(te.Offset)), err)
	case err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF):
		return nil, fmt.Errorf("%s: unexpected end of file", at(d.name, d.lineAt(int64(len(d.data)))))
	default:
		return nil, fmt.Errorf("%s: %w", d.next(), err)
	}
}

func parseJSON(name string, data []byte) (*Records, error) {
	if len(bytes.Trim(data, " \t\r\n")) == 0 {
		return nil, fmt.Errorf("%s: empty file: want a JSON list of claims ([] for none)", name)
	}
	d := &jsonDoc{name: name, data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	d.dec.UseNumber() // numbers are refused anyway; this keeps huge ones from failing differently
	where := d.next()
	tok, err := d.token()
	if err != nil {
		return nil, err
	}
	if tok != json.Delim('[') {
		return nil, fmt.Errorf("%s: want a JSON list of claims, found %s", where, jsonKind(tok))
	}
	var b builder
	for d.dec.More() {
		c, err := d.object()
		if err != nil {
			return nil, err
		}
		b.add(c)
	}
	if _, err := d.token(); err != nil { // the closing ']'
		return nil, err
	}
	where = d.next()
	if _, err := d.dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%s: unexpected data after the list", where)
	}
	return b.records(), nil
}

func (d *jsonDoc) object() (Claim, error) {
	objAt := d.next()
	tok, err := d.token()
	if err != nil {
		return Claim{}, err
	}
	if tok != json.Delim('{') {
		return Claim{}, fmt.Errorf("%s: want an object with tenant, workspace_id and template, found %s", objAt, jsonKind(tok))
	}
	var vals [3]string
	var lines [3]string
	for d.dec.More() {
		keyAt := d.next()
		tok, err := d.token()
		if err != nil {
			return Claim{}, err
		}
		k, _ := tok.(string) // inside an object the decoder only yields string keys
		f := fieldIndex(k)
		switch {
		case f < 0:
			return Claim{}, fmt.Errorf("%s: unknown key %q: want tenant, workspace_id, template", keyAt, k)
		case lines[f] != "":
			return Claim{}, fmt.Errorf("%s: key %q appears twice", keyAt, k)
		}
		lines[f] = d.next()
		tok, err = d.token()
		if err != nil {
			return Claim{}, err
		}
		switch v := tok.(type) {
		case string:
			vals[f] = v
		case nil:
			if f != idxWorkspaceID {
				return Claim{}, fmt.Errorf("%s: %s is null", lines[f], k)
			}
		default:
			return Claim{}, fmt.Errorf("%s: %s must be a string, found %s", lines[f], k, jsonKind(tok))
		}
	}
	if _, err := d.token(); err != nil { // the closing '}'
		return Claim{}, err
	}
	return claimFromMap(vals, lines, objAt)
}

// claimFromMap builds a claim from a JSON or YAML object; lines[f] is where
// field f's value was, or "" when the key was missing.
func claimFromMap(vals, lines [3]string, objAt string) (Claim, error) {
	for _, f := range []int{idxTenant, idxTemplate} {
		if lines[f] == "" {
			return Claim{}, fmt.Errorf("%s: no %s key", objAt, fieldNames[f])
		}
	}
	fieldAt := func(field string) string {
		if l := lines[fieldIndex(field)]; l != "" {
			return l
		}
		return objAt
	}
	return newClaim(vals[idxTenant], vals[idxWorkspaceID], vals[idxTemplate], fieldAt, objAt)
}

func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '[':
			return "a list"
		case '{':
			return "an object"
		}
		return strconv.Quote(v.String())
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return fmt.Sprintf("%T", tok)
}

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
	list := resolveAlias(doc.Content[0])
	if list.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("%s: want a YAML list of claims, found %s", at(name, list.Line), yamlKind(list))
	}
	var b builder
	for _, item := range list.Content {
		c, err := yamlClaim(name, resolveAlias(item))
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
		k, v := resolveAlias(n.Content[i]), resolveAlias(n.Content[i+1])
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

// resolveAlias follows *alias to its anchored node; anchors cannot point at
// aliases, so one step suffices.
func resolveAlias(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
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
