package cp

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const header = "tenant,workspace_id,template\n"

// TestParseErrors writes each case to a real file and loads it: the error
// must start with the file's path and carry the line in file:line form.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, content string
		want                string // must appear in the error, after the directory
	}{
		// CSV
		{"csv empty file", "cp.csv", "", "cp.csv: no header"},
		{"csv only BOM", "cp.csv", "\ufeff", "cp.csv: no header"},
		{"csv only blank lines", "cp.csv", "\n\n", "cp.csv: no header"},
		{"csv unknown column", "cp.csv", "tenant,workspace,template\n", `cp.csv:1: header: unknown column "workspace"`},
		{"csv extra column", "cp.csv", "tenant,workspace_id,template,note\n", `cp.csv:1: header: unknown column "note"`},
		{"csv missing column", "cp.csv", "tenant,template\n", "cp.csv:1: header: no workspace_id column"},
		{"csv column twice", "cp.csv", "tenant,workspace_id,template,tenant\n", `cp.csv:1: header: column "tenant" appears twice`},
		{"csv header case matters", "cp.csv", "Tenant,workspace_id,template\n", `cp.csv:1: header: unknown column "Tenant"`},
		{"csv header after blank lines", "cp.csv", "\n\ntenant,template\n", "cp.csv:3: header: no workspace_id column"},
		{"csv too few fields", "cp.csv", header + "a,,b\na,b\n", "cp.csv:3: 2 fields, want 3"},
		{"csv too many fields", "cp.csv", header + "a,,b,c\n", "cp.csv:2: 4 fields, want 3"},
		{"csv blank line is one empty field", "cp.csv", header + "a,,b\n \n", "cp.csv:3: 1 fields, want 3"},
		{"csv empty tenant", "cp.csv", header + "a,,b\n,,b\n", "cp.csv:3: tenant is empty"},
		{"csv blank tenant", "cp.csv", header + "  ,,b\n", "cp.csv:2: tenant is empty"},
		{"csv empty template", "cp.csv", header + "a,,\n", "cp.csv:2: template is empty"},
		{"csv bad workspace id", "cp.csv", header + "a,,b\nc,,d\ne,,f\ng,abc,h\n", `cp.csv:5: workspace_id "abc" is not a UUID`},
		{"csv braced uuid", "cp.csv", header + "a,{" + wsA + "},b\n", `cp.csv:2: workspace_id "{` + wsA + `}" is not a UUID`},
		{"csv uuid without dashes", "cp.csv", header + "a," + strings.ReplaceAll(wsA, "-", "") + ",b\n", "cp.csv:2: workspace_id"},
		{"csv uuid with a non-hex digit", "cp.csv", header + "a," + strings.Replace(wsA, "0", "g", 1) + ",b\n", "is not a UUID"},
		{"csv bare quote", "cp.csv", header + "a,,b\na\"x,,b\n", `cp.csv:3: column 2: bare " in non-quoted-field`},
		{"csv unterminated quote", "cp.csv", header + "a,,\"b\n", "cp.csv:"},
		{"csv line numbers with CRLF", "cp.csv", strings.ReplaceAll(header+"a,,b\nc,,\n", "\n", "\r\n"), "cp.csv:3: template is empty"},
		{"csv line numbers with BOM and blank lines", "cp.csv", "\ufeff" + header + "\na,,b\n\nc,x,d\n", `cp.csv:5: workspace_id "x" is not a UUID`},
		{"csv multi-line field names its own line", "cp.csv", header + "\"a\",,\"\n\n\"\n", "cp.csv:2: template is empty"},
		{"csv newline inside a value", "cp.csv", header + "\"a\nb\",,c\n", `cp.csv:2: tenant "a\nb" contains the non-printing character U+000A`},
		{"csv zero-width space", "cp.csv", header + "a,,seo\u200b-agent\n", `cp.csv:2: template "seo\u200b-agent" contains the non-printing character U+200B`},
		{"csv no-break space", "cp.csv", header + "a,,seo\u00a0agent\n", "U+00A0"},
		{"csv invalid UTF-8", "cp.csv", header + "a\xff,,b\n", `cp.csv:2: tenant "a\xff" is not valid UTF-8`},

		// JSON
		{"json empty file", "cp.json", "", "cp.json: empty file"},
		{"json whitespace only", "cp.json", " \n\n", "cp.json: empty file"},
		{"json top-level object", "cp.json", "\n{\"tenant\": \"a\"}", "cp.json:2: want a JSON list of claims, found an object"},
		{"json top-level null", "cp.json", "null", "cp.json:1: want a JSON list of claims, found null"},
		{"json list of strings", "cp.json", "[\n\"a\"\n]", "cp.json:2: want an object with tenant, workspace_id and template, found a string"},
		{"json nested list", "cp.json", "[\n  [1]\n]", "cp.json:2: want an object"},
		{"json unknown key", "cp.json", "[\n {\"tenant\": \"a\",\n  \"template\": \"b\",\n  \"note\": \"c\"}\n]", `cp.json:4: unknown key "note": want tenant, workspace_id, template`},
		{"json key case matters", "cp.json", `[{"Tenant": "a", "template": "b"}]`, `cp.json:1: unknown key "Tenant"`},
		{"json key twice", "cp.json", "[{\"tenant\": \"a\",\n\"tenant\": \"b\", \"template\": \"c\"}]", `cp.json:2: key "tenant" appears twice`},
		{"json number value", "cp.json", "[{\"tenant\": \"a\",\n\"template\": 12}]", "cp.json:2: template must be a string, found a number"},
		{"json bool value", "cp.json", "[{\"tenant\": true, \"template\": \"b\"}]", "cp.json:1: tenant must be a string, found a boolean"},
		{"json object value", "cp.json", "[{\"tenant\": \"a\", \"template\": \"b\",\n\"workspace_id\": {}}]", "cp.json:2: workspace_id must be a string, found an object"},
		{"json null template", "cp.json", "[{\"tenant\": \"a\", \"template\": null}]", "cp.json:1: template is null"},
		{"json null tenant", "cp.json", "[\n\n{\"tenant\": null, \"template\": \"b\"}]", "cp.json:3: tenant is null"},
		{"json missing tenant", "cp.json", "[\n  {\"template\": \"b\"},\n  {\n    \"template\": \"b\"}\n]", "cp.json:2: no tenant key"},
		{"json missing template", "cp.json", "[\n  {\"tenant\": \"a\"}\n]", "cp.json:2: no template key"},
		{"json empty tenant", "cp.json", "[\n{\"tenant\": \" \",\n \"template\": \"b\"}]", "cp.json:2: tenant is empty"},
		{"json bad workspace id", "cp.json", "[\n{\"tenant\": \"a\",\n \"template\": \"b\",\n \"workspace_id\": \"abc\"}]", `cp.json:4: workspace_id "abc" is not a UUID`},
		{"json control character", "cp.json", `[{"tenant": "a\tb", "template": "c"}]`, `cp.json:1: tenant "a\tb" contains the non-printing character U+0009`},
		{"json syntax error", "cp.json", "[\n{\"tenant\": \"a\",\n \"template\" \"b\"}]", "cp.json:3: invalid character"},
		{"json missing comma", "cp.json", "[\n{\"tenant\": \"a\", \"template\": \"b\"}\n{\"tenant\": \"a\", \"template\": \"b\"}]", "cp.json:3: invalid character"},
		{"json truncated", "cp.json", "[\n{\"tenant\": \"a\",\n", "cp.json:3: unexpected end of file"},
		{"json unclosed list", "cp.json", "[\n{\"tenant\": \"a\", \"template\": \"b\"}\n", "cp.json:3: unexpected end of file"},
		{"json data after the list", "cp.json", "[]\n\n[]", "cp.json:3: unexpected data after the list"},
		{"json trailing garbage", "cp.json", "[]\nx", "cp.json:2: unexpected data after the list"},

		// YAML
		{"yaml empty file", "cp.yaml", "", "cp.yaml: empty file"},
		{"yaml comment only", "cp.yml", "# nothing here\n", "cp.yml:"},
		{"yaml top-level mapping", "cp.yaml", "\ntenant: a\ntemplate: b\n", "cp.yaml:2: want a YAML list of claims, found a mapping"},
		{"yaml top-level null", "cp.yaml", "~\n", "cp.yaml:1: want a YAML list of claims, found null"},
		{"yaml item is a scalar", "cp.yaml", "- tenant: a\n  template: b\n- just-a-string\n", "cp.yaml:3: want a mapping with tenant, workspace_id and template, found str"},
		{"yaml unknown key", "cp.yaml", "- tenant: a\n  template: b\n  templat: c\n", `cp.yaml:3: unknown key "templat": want tenant, workspace_id, template`},
		{"yaml merge key is unknown", "cp.yaml", "- &x {tenant: a, template: b}\n- <<: *x\n", `cp.yaml:2: unknown key "<<"`},
		{"yaml non-string key", "cp.yaml", "- tenant: a\n  template: b\n  [x]: c\n", "cp.yaml:3: key must be a string, found a list"},
		{"yaml key twice", "cp.yaml", "- tenant: a\n  template: b\n  tenant: c\n", `cp.yaml:3: key "tenant" appears twice`},
		{"yaml unquoted number", "cp.yaml", "- tenant: a\n  template: 1.0\n", "cp.yaml:2: template must be a string, found float (quote it)"},
		{"yaml unquoted bool", "cp.yaml", "- tenant: true\n  template: b\n", "cp.yaml:1: tenant must be a string, found bool (quote it)"},
		{"yaml list value", "cp.yaml", "- tenant: a\n  template:\n    - b\n", "cp.yaml:3: template must be a string, found a list"},
		{"yaml custom tag", "cp.yaml", "- tenant: !t a\n  template: b\n", "cp.yaml:1: tenant must be a string, found !t"},
		{"yaml null template", "cp.yaml", "- tenant: a\n  template:\n", "cp.yaml:2: template is null"},
		{"yaml missing template", "cp.yaml", "- tenant: a\n\n- tenant: b\n  workspace_id: ~\n", "cp.yaml:1: no template key"},
		{"yaml missing tenant", "cp.yaml", "- tenant: a\n  template: b\n- template: c\n", "cp.yaml:3: no tenant key"},
		{"yaml empty template", "cp.yaml", "- tenant: a\n  template: ''\n", "cp.yaml:2: template is empty"},
		{"yaml bad workspace id", "cp.yaml", "- tenant: a\n  template: b\n  workspace_id: abc\n", `cp.yaml:3: workspace_id "abc" is not a UUID`},
		{"yaml syntax error", "cp.yaml", "- tenant: a\n  template: b\n - tenant: c\n", "cp.yaml:3: invalid YAML"},
		{"yaml syntax error on line 1", "cp.yaml", "]\n", "cp.yaml:1: invalid YAML: did not find expected node content"},
		{"yaml syntax error after the list", "cp.yaml", "- tenant: a\n  template: b\n]\n", "cp.yaml:3: invalid YAML: did not find expected '-' indicator"},
		{"yaml syntax error in a flow list", "cp.yaml", "[\n {tenant: a, template: b}\n {tenant: c, template: d}]\n", "cp.yaml:3: invalid YAML: did not find expected ',' or ']'"},
		{"yaml scanner error", "cp.yaml", "- tenant: a\n  template: b\n  workspace_id: \"x\n", "cp.yaml:3: invalid YAML: found unexpected end of stream"},
		{"yaml tab indentation", "cp.yaml", "- tenant: a\n\ttemplate: b\n", "cp.yaml:2: invalid YAML: found a tab character that violates indentation"},
		{"yaml two documents", "cp.yaml", "- tenant: a\n  template: b\n---\n- tenant: c\n  template: d\n", "cp.yaml:3: more than one YAML document"},
		{"yaml control character", "cp.yaml", "- tenant: \"a\\u0007\"\n  template: b\n", `cp.yaml:1: tenant "a\a" contains the non-printing character U+0007`},

		// Any format
		{"unknown extension", "cp.txt", header, `cp.txt: unknown CP file format ".txt": want .csv, .json, .yaml or .yml`},
		{"no extension", "cp", header, `cp: unknown CP file format "": want .csv, .json, .yaml or .yml`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.content)
			recs, err := Load(t.Context(), path, "")
			if err == nil {
				t.Fatalf("Load accepted it: %v", recs.Claims())
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, path) || !strings.Contains(msg, tt.want) {
				t.Errorf("error %q\nwant it to start with %q and contain %q", msg, path, tt.want)
			}
			// Parse, given the bare name, says the same.
			if _, perr := Parse(tt.file, []byte(tt.content)); perr == nil || perr.Error() != strings.Replace(msg, filepath.Dir(path)+"/", "", 1) {
				t.Errorf("Parse error %v, want Load's without the directory", perr)
			}
		})
	}
}

func TestLoadFileErrors(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing.csv")
	if _, err := Load(t.Context(), missing, ""); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: error %v, want it to name %s", err, missing)
	}
	path := writeFile(t, "cp.csv", header)
	if _, err := Load(t.Context(), path, "SELECT 1"); err == nil || !strings.Contains(err.Error(), "--cp-query needs a postgres:// or key=value (host=… dbname=…) source, not a file") {
		t.Errorf("file with a query: error %v", err)
	}
}

// TestParseValid checks what each format accepts and how it reads it.
func TestParseValid(t *testing.T) {
	want := []Claim{
		{"a", "", "tpl-a", ""},
		{"b", wsA, "tpl b", ""},
		{"b", wsB, "tpl-b", ""},
	}
	tests := []struct{ name, file, content string }{
		{"csv", "cp.csv", header + "a,,tpl-a\nb," + wsA + ",tpl b\nb," + wsB + ",tpl-b\n"},
		{"csv columns in another order, quoted, padded", "CP.CSV", "template, tenant ,workspace_id\n\"tpl-a\",a,\n\" tpl b \", b ,\"" + strings.ToUpper(wsA) + "\"\ntpl-b,b, " + wsB + " \n"},
		{"csv CRLF and BOM", "cp.csv", "\ufeff" + strings.ReplaceAll(header+"a,,tpl-a\n\nb,"+wsA+",tpl b\nb,"+wsB+",tpl-b", "\n", "\r\n")},
		{"json", "cp.json", `[{"tenant":"a","workspace_id":null,"template":"tpl-a"},{"tenant":"b","workspace_id":"` + wsA + `","template":"tpl b"},{"template":"tpl-b","workspace_id":"` + strings.ToUpper(wsB) + `","tenant":"b"}]`},
		{"json BOM, missing and empty workspace_id", "cp.json", "\ufeff[\n{\"tenant\":\"a\",\"template\":\"tpl-a\"},\n{\"tenant\":\"b\",\"workspace_id\":\"" + wsA + "\",\"template\":\" tpl b\"},\n{\"tenant\":\"b\",\"workspace_id\":\"" + wsB + "\",\"template\":\"tpl-b\"}]\n"},
		{"yaml", "cp.yaml", "- tenant: a\n  template: tpl-a\n- tenant: b\n  workspace_id: " + wsA + "\n  template: tpl b\n- {tenant: b, workspace_id: '" + wsB + "', template: \"tpl-b\"}\n"},
		{"yml with anchors and aliases", "cp.yml", "- {tenant: a, workspace_id: ~, template: tpl-a}\n- {tenant: &b b, workspace_id: " + wsA + ", template: tpl b}\n- {tenant: *b, workspace_id: " + wsB + ", template: !!str tpl-b}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := mustLoad(t, tt.file, tt.content)
			got := recs.Claims()
			for i := range got {
				got[i].Source = ""
			}
			if !slices.Equal(got, want) {
				t.Errorf("Claims() = %q\nwant %q", got, want)
			}
		})
	}
}

// TestSources checks each format's Source: file and the line a record starts on.
func TestSources(t *testing.T) {
	tests := []struct {
		file, content string
		want          []string
	}{
		{"cp.csv", header + "a,,x\n\n\"b\n\",,y\nc,,z\n", []string{"cp.csv:2", "cp.csv:4", "cp.csv:6"}},
		{"cp.json", "[{\"tenant\":\"a\",\"template\":\"x\"},\n\n  {\"tenant\":\"b\",\n\"template\":\"y\"},\n{\"tenant\":\"c\",\"template\":\"z\"}]", []string{"cp.json:1", "cp.json:3", "cp.json:5"}},
		{"cp.yaml", "# claims\n- tenant: a\n  template: x\n-\n  tenant: b\n  template: y\n- {tenant: c, template: z}\n", []string{"cp.yaml:2", "cp.yaml:5", "cp.yaml:7"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			// In the CSV, the quoted "b\n" spans lines 4-5 and trims to "b".
			recs, err := Parse(tt.file, []byte(tt.content))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range recs.Claims() {
				got = append(got, c.Source)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("sources %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEmptyButValid(t *testing.T) {
	for file, content := range map[string]string{
		"header.csv":     header,
		"header-bom.csv": "\ufeff" + strings.TrimSuffix(header, "\n") + "\r\n",
		"empty.json":     " [ ] \n",
		"empty.yaml":     "# no claims yet\n[]\n",
		"empty-flow.yml": "[]",
	} {
		recs := mustLoad(t, file, content)
		if recs.Len() != 0 || recs.Tenants() != nil {
			t.Errorf("%s: %d claims, want none", file, recs.Len())
		}
	}
}

func TestExampleFiles(t *testing.T) {
	var first *Records
	for _, name := range []string{"cp.csv", "cp.json", "cp.yaml"} {
		recs, err := Load(t.Context(), filepath.Join("testdata", name), "")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := recs.Tenants(), []string{"concierge", "jrs-seo", "molecules-seo"}; !slices.Equal(got, want) {
			t.Errorf("%s: Tenants() = %q", name, got)
		}
		if tpl, level, _ := recs.For("jrs-seo", wsA); !slices.Equal(tpl, []string{"seo-agent"}) || level != LevelTenant {
			t.Errorf("%s: For(jrs-seo) = %q, %q", name, tpl, level)
		}
		if first == nil {
			first = recs
		} else if recs.Digest() != first.Digest() {
			t.Errorf("%s digests differently from cp.csv", name)
		}
	}
}
