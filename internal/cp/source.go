package cp

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"backfill/internal/inputfile"
)

// A format is one kind of CP file: the extensions (lower-case) that name it
// and how its bytes become claims.
type format struct {
	exts  []string
	parse func(name string, data []byte) (*Records, error)
}

// formats is the one list of CP file kinds, each defined in its own file; a
// new kind is that file and a line here. A database source (postgres.go) is
// told apart by IsDatabase before a file's extension is looked at.
var formats = []format{csvFormat, jsonFormat, yamlFormat}

var utf8BOM = []byte("\xef\xbb\xbf")

// MaxFileBytes bounds a CP records file: millions of claims.
const MaxFileBytes = 1 << 30

// Load reads claims from a file path (format from its extension, see Parse)
// or, when IsDatabase(src), from the rows of query. ctx bounds the database
// work.
//
// The query must be one SELECT, or WITH … SELECT, and is refused before any
// connection otherwise (see checkQuery). It is then sent over the extended
// protocol, whatever default_query_exec_mode the connection string sets, so
// the server itself refuses a second statement; and it runs in a READ ONLY
// transaction, in a read-only session, that is always rolled back.
//
// The query must return exactly three columns named tenant, workspace_id and
// template, in any order (alias them with AS). Columns are matched by name,
// not position, so that a query listing them in another order cannot swap
// templates and tenants unnoticed. Any column type is read as its text form,
// so a uuid workspace_id works; a NULL workspace_id is a tenant-wide claim.
//
// Errors about the database never contain the connection string's password:
// they name the source by host and database only.
func Load(ctx context.Context, src, query string) (*Records, error) {
	if IsDatabase(src) {
		return loadPostgres(ctx, src, query)
	}
	if strings.TrimSpace(query) != "" {
		// A query next to a file would be ignored; refusing it catches a
		// --cp that was meant to be a database.
		return nil, fmt.Errorf("%s: --cp-query needs a postgres:// or key=value (host=… dbname=…) source, not a file", src)
	}
	data, err := inputfile.Read(src, MaxFileBytes)
	if err != nil {
		return nil, err
	}
	return Parse(src, data)
}

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
	ext := strings.ToLower(filepath.Ext(name))
	for _, f := range formats {
		if slices.Contains(f.exts, ext) {
			return f.parse(name, data)
		}
	}
	return nil, fmt.Errorf("%s: unknown CP file format %q: want %s", name, ext, formatList())
}

// formatList names every extension Parse reads: ".csv, .json, .yaml or .yml".
func formatList() string {
	var exts []string
	for _, f := range formats {
		exts = append(exts, f.exts...)
	}
	return strings.Join(exts[:len(exts)-1], ", ") + " or " + exts[len(exts)-1]
}

func at(name string, line int) string { return name + ":" + strconv.Itoa(line) }

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
