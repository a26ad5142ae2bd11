package cp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// jsonFormat reads a JSON list of claim objects.
var jsonFormat = format{exts: []string{".json"}, parse: parseJSON}

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
