package cp

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// csvFormat reads a CSV whose header names the three columns in any order.
var csvFormat = format{exts: []string{".csv"}, parse: parseCSV}

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
