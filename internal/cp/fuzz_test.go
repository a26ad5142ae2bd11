package cp

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"backfill/internal/placeholder"
)

var fuzzFormats = []string{".csv", ".json", ".yaml"}

// FuzzParse feeds arbitrary bytes to every format; the first argument picks
// the format. The seed corpus is testdata/fuzz/FuzzParse, run by plain go test.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, format byte, data []byte) {
		name := "fuzz" + fuzzFormats[int(format)%len(fuzzFormats)]
		recs, err := Parse(name, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), name+":") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		again, err := Parse(name, data)
		if err != nil || again.Digest() != recs.Digest() || !slices.Equal(again.Claims(), recs.Claims()) {
			t.Fatalf("re-parse differs: %v", err)
		}
		claims := recs.Claims()
		for _, c := range claims {
			if c.Tenant == "" || c.Template == "" || c.Tenant != strings.TrimSpace(c.Tenant) || c.Template != strings.TrimSpace(c.Template) {
				t.Fatalf("accepted an empty or untrimmed value: %q", c)
			}
			if c.WorkspaceID != "" && (!placeholder.IsUUID(c.WorkspaceID) || c.WorkspaceID != strings.ToLower(c.WorkspaceID)) {
				t.Fatalf("accepted workspace id %q", c.WorkspaceID)
			}
			if !strings.HasPrefix(c.Source, name+":") {
				t.Fatalf("source %q does not name the file", c.Source)
			}
			if tpl, _, _ := recs.For(c.Tenant, c.WorkspaceID); !slices.Contains(tpl, c.Template) {
				t.Fatalf("For(%q, %q) = %q misses its own claim %q", c.Tenant, c.WorkspaceID, tpl, c.Template)
			}
		}
		// The same claims written in any format, in reverse order, digest the same.
		slices.Reverse(claims)
		for _, ext := range fuzzFormats {
			out := encode(t, ext, claims)
			re, err := Parse("re"+ext, out)
			if err != nil {
				t.Fatalf("claims %q re-encoded as %s do not parse: %v\n%s", claims, ext, err, out)
			}
			if re.Digest() != recs.Digest() {
				t.Fatalf("claims re-encoded as %s digest differently\n%s", ext, out)
			}
		}
	})
}

// encode writes claims in the given format, the way a person or a script
// producing CP files would.
func encode(t *testing.T, ext string, claims []Claim) []byte {
	rows := make([]map[string]string, len(claims))
	for i, c := range claims {
		rows[i] = map[string]string{fieldTenant: c.Tenant, fieldWorkspaceID: c.WorkspaceID, fieldTemplate: c.Template}
	}
	var (
		out []byte
		err error
	)
	switch ext {
	case ".csv":
		var b bytes.Buffer
		w := csv.NewWriter(&b)
		_ = w.Write(fieldNames[:])
		for _, c := range claims {
			_ = w.Write([]string{c.Tenant, c.WorkspaceID, c.Template})
		}
		w.Flush()
		out, err = b.Bytes(), w.Error()
	case ".json":
		out, err = json.Marshal(rows)
	case ".yaml":
		out, err = yaml.Marshal(rows)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// FuzzCheckQuery checks the CP query lexer on arbitrary text: it never
// panics, and whatever it accepts leaves nothing open (no literal, quoted
// identifier or comment) that could swallow a second statement added after
// it, since that statement must be refused.
func FuzzCheckQuery(f *testing.F) {
	for _, tt := range cpQueryCases {
		f.Add(tt.query)
	}
	f.Fuzz(func(t *testing.T, q string) {
		err := checkQuery(q)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "--cp-query: ") {
				t.Fatalf("error does not name --cp-query: %v", err)
			}
			return
		}
		toks, _ := lexSQL(q)
		if !toks[0].is("SELECT", "WITH") {
			t.Fatalf("accepted %q, which starts with %v", q, toks[0])
		}
		for _, tail := range []string{"\n; SELECT 1", "\nINSERT INTO t VALUES (1)", "\n) x; DELETE FROM t"} {
			if checkQuery(q+tail) == nil {
				t.Fatalf("accepted %q followed by %q", q, tail)
			}
		}
	})
}
