package inventory

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"backfill/internal/collector"
)

// testEnv holds distinctive values so a leak into an error is easy to spot.
var testEnv = map[string]string{
	"JRS_PG_PASSWORD": "pg-Secret-111",
	"JRS_ADMIN_TOKEN": "tok-Secret-222",
	"JRS_ORG_ID":      "org-Secret-333",
	"CONCIERGE_DSN":   "postgres://concierge:cc-Secret-444@cc-db/molecule",
	"PLAIN_PW":        "kv-Secret-555",
	"AT_PW":           "at@Secret-666",
	"NL_TOKEN":        "nl-Secret-777\r\nX-Injected: yes",
	"EMPTY":           "",
	"YAMLISH":         "/a\ncollector:\n  exec: [sh] # {\"k\": [1]} &y *z",
	"BRACED":          "tok{Secret}888",
	"DEV_DIR":         "/dev/shm",
}

func getenv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

// writeInventory writes data to a fresh inventory.yaml and returns its path.
func writeInventory(t *testing.T, data string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "inventory.yaml")
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const example = `version: 1
defaults:
  collector:
    exec: ["docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"]
tenants:
  - name: jrs-seo                      # unique slug
    dsn: "postgres://backfill:${JRS_PG_PASSWORD}@jrs-db:5432/molecule?sslmode=require"
    collector:                         # optional override; exactly one of exec, http, file
      http:
        url: "https://configs.jrs.example/{workspace_id}/config.yaml?root=/configs"
        headers: {Authorization: "Bearer ${JRS_ADMIN_TOKEN}", X-Molecule-Org-Id: "${JRS_ORG_ID}"}
        json_field: content            # the platform's files API answers {"path","content","size"}
  - name: concierge
    dsn: "${CONCIERGE_DSN}"
    collector:
      file: "/mnt/concierge/{workspace_id}/configs/config.yaml"
  - name: plain.v2_x
    dsn: host=db user=backfill password=${PLAIN_PW} dbname=$NOT_EXPANDED
`

func TestLoadExample(t *testing.T) {
	path := writeInventory(t, example)
	inv, err := Load(path, getenv)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if inv.Path != path {
		t.Errorf("Path = %q, want %q", inv.Path, path)
	}
	defaultExec := collector.Spec{Method: "exec", Argv: []string{"docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"}}
	want := []Tenant{
		{
			Name: "jrs-seo",
			DSN:  "postgres://backfill:pg-Secret-111@jrs-db:5432/molecule?sslmode=require",
			Collector: collector.Spec{
				Method:    "http",
				URL:       "https://configs.jrs.example/{workspace_id}/config.yaml?root=/configs",
				Headers:   map[string]string{"Authorization": "Bearer tok-Secret-222", "X-Molecule-Org-Id": "org-Secret-333"},
				JSONField: "content",
			},
			Raw: collector.Spec{
				Method:    "http",
				URL:       "https://configs.jrs.example/{workspace_id}/config.yaml?root=/configs",
				Headers:   map[string]string{"Authorization": "Bearer ${JRS_ADMIN_TOKEN}", "X-Molecule-Org-Id": "${JRS_ORG_ID}"},
				JSONField: "content",
			},
			Line: 6,
		},
		{
			Name:      "concierge",
			DSN:       "postgres://concierge:cc-Secret-444@cc-db/molecule",
			Collector: collector.Spec{Method: "file", Path: "/mnt/concierge/{workspace_id}/configs/config.yaml"},
			Raw:       collector.Spec{Method: "file", Path: "/mnt/concierge/{workspace_id}/configs/config.yaml"},
			Line:      13,
		},
		{
			Name:      "plain.v2_x",
			DSN:       "host=db user=backfill password=kv-Secret-555 dbname=$NOT_EXPANDED",
			Collector: defaultExec,
			Raw:       defaultExec,
			Line:      17,
		},
	}
	for i := range want { // a single collector is a chain of one
		want[i].Chain, want[i].RawChain = []collector.Spec{want[i].Collector}, []collector.Spec{want[i].Raw}
	}
	if !reflect.DeepEqual(inv.Tenants, want) {
		t.Errorf("Tenants =\n%+v\nwant\n%+v", inv.Tenants, want)
	}

	// Tenants share the defaults by value, not by reference.
	inv.Tenants[2].Collector.Argv[0] = "changed"
	if inv.Tenants[2].Raw.Argv[0] != "docker" {
		t.Error("Collector and Raw share an argv slice")
	}

	if got, ok := inv.Tenant("concierge"); !ok || got.Name != "concierge" {
		t.Errorf("Tenant(concierge) = %+v, %v", got, ok)
	}
	if _, ok := inv.Tenant("missing"); ok {
		t.Error("Tenant(missing) found")
	}
}

func TestSecrets(t *testing.T) {
	inv, err := Parse("inventory.yaml", []byte(example), getenv)
	if err != nil {
		t.Fatal(err)
	}
	got := inv.Secrets()
	for _, want := range []string{
		"pg-Secret-111",          // env value, also the DSN password
		"tok-Secret-222",         // env value
		"Bearer tok-Secret-222",  // header value
		"org-Secret-333",         // env value and header value
		testEnv["CONCIERGE_DSN"], // a whole DSN from the environment
		"cc-Secret-444",          // that DSN's password
		"kv-Secret-555",          // key=value DSN password
	} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q; got %q", want, got)
		}
	}
	for _, notSecret := range []string{"", "content", "docker", "jrs-seo"} {
		if slices.Contains(got, notSecret) {
			t.Errorf("Secrets() holds %q", notSecret)
		}
	}
	seen := map[string]bool{}
	for _, s := range got {
		if seen[s] {
			t.Errorf("Secrets() repeats %q", s)
		}
		seen[s] = true
	}
}

func TestSecretsDecodedDSNPassword(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: "postgres://u:p%40ss-word@h/db"
    collector: {file: /x}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	got := inv.Secrets()
	for _, want := range []string{"p%40ss-word", "p@ss-word"} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q; got %q", want, got)
		}
	}
}

// Expansion happens after parsing, so YAML syntax inside a value is data.
func TestExpansionCannotChangeStructure(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: host=h
    collector:
      file: "${YAMLISH}"
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	c := inv.Tenants[0].Collector
	if c.Method != "file" || c.Path != testEnv["YAMLISH"] || c.Argv != nil {
		t.Errorf("collector = %+v", c)
	}
}

func TestAnchorsAndLiteralBraces(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: host=h
    collector: &shared
      exec: [sh, -c, 'printf "{\"t\": \"%s\"}" {tenant}', "{{.State}}", "{}", "{ x }"]
  - name: b
    dsn: host=h
    collector: *shared
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(inv.Tenants[0].Collector, inv.Tenants[1].Collector) {
		t.Errorf("alias not followed: %+v", inv.Tenants)
	}
}

var lineMarker = regexp.MustCompile(`#<`)

// markedLine returns the 1-based line holding "#<" in data.
func markedLine(t *testing.T, data string) int {
	t.Helper()
	loc := lineMarker.FindStringIndex(data)
	if loc == nil {
		t.Fatalf("no #< marker in:\n%s", data)
	}
	return 1 + strings.Count(data[:loc[0]], "\n")
}

func TestParseErrors(t *testing.T) {
	const head = "version: 1\ntenants:\n"
	tests := []struct {
		name   string
		data   string
		line   int    // 0: the line marked with "#<"
		tenant string // "" when no tenant is involved
		msg    string
	}{
		{"version 2", "version: 2 #<\ntenants: []\n", 0, "", "version must be 1"},
		{"version string", "version: \"1\" #<\ntenants: [{name: a, dsn: h=1, collector: {file: /x}}]\n", 0, "", "version must be 1"},
		{"missing version", "tenants: #<\n  - {name: a, dsn: h=1, collector: {file: /x}}\n", 0, "", "missing version"},
		{"unknown top key", head + "  - {name: a, dsn: h=1, collector: {file: /x}}\ntenant: [] #<\n", 0, "", `unknown key "tenant"`},
		{"unknown tenant key", head + "  - name: jrs-seo\n    dns: h=1 #<\n    collector: {file: /x}\n", 0, "jrs-seo", `unknown key "dns"`},
		{"unknown key before name", head + "  - dns: h=1 #<\n    name: jrs-seo\n    collector: {file: /x}\n", 0, "jrs-seo", `unknown key "dns"`},
		{"unknown http key", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        header: {A: b} #<\n", 0, "a", `unknown key "header"`},
		{"unknown defaults key", "version: 1\ndefaults:\n  colector: {file: /x} #<\ntenants: [{name: a, dsn: h=1, collector: {file: /x}}]\n", 0, "", `unknown key "colector"`},
		{"merge key", head + "  - name: a\n    dsn: h=1\n    collector:\n      <<: {file: /x} #<\n", 0, "a", "merge keys"},
		{"duplicate tenant key", head + "  - name: a\n    dsn: h=1\n    dsn: h=2 #<\n    collector: {file: /x}\n", 0, "a", `duplicate key "dsn" (first at line 4)`},
		{"duplicate top key", head + "  - {name: a, dsn: h=1, collector: {file: /x}}\nversion: 1 #<\n", 0, "", `duplicate key "version"`},
		{"duplicate header", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        headers:\n          A: b\n          a: c #<\n", 0, "a", `duplicate header "a"`},
		{"duplicate tenant", head + "  - {name: a, dsn: h=1, collector: {file: /x}}\n  - {name: a, dsn: h=1, collector: {file: /x}} #<\n", 0, "a", "duplicate tenant name (first at line 3)"},
		{"tenant names differ in case", head + "  - {name: a, dsn: h=1, collector: {file: /x}}\n  - {name: A, dsn: h=1, collector: {file: /x}} #<\n", 0, "A", "differs only in case"},
		{"name with space", head + "  - name: jrs seo #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, "jrs seo", "name must match"},
		{"name dot", head + "  - name: \".\" #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, ".", "name must match"},
		{"name dotdot", head + "  - name: \"..\" #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, "..", "name must match"},
		{"name leading dash", head + "  - name: -rf #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, "-rf", "name must match"},
		{"name slash", head + "  - name: a/b #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, "a/b", "name must match"},
		{"name not a string", head + "  - name: [a] #<\n    dsn: h=1\n    collector: {file: /x}\n", 0, "", "name must be a string"},
		{"no name", head + "  - dsn: h=1 #<\n    collector: {file: /x}\n", 0, "", "tenant has no name"},
		{"missing dsn", head + "  - name: a #<\n    collector: {file: /x}\n", 0, "a", "missing dsn"},
		{"empty dsn", head + "  - name: a\n    dsn: \"\" #<\n    collector: {file: /x}\n", 0, "a", "dsn is empty"},
		{"dsn empty after expansion", head + "  - name: a\n    dsn: ${EMPTY} #<\n    collector: {file: /x}\n", 0, "a", "dsn is empty after expanding"},
		{"invalid dsn from env", head + "  - name: a\n    dsn: postgres://u:${AT_PW}@h/db #<\n    collector: {file: /x}\n", 0, "a", "percent-encode it as %40"},
		{"unparsable dsn", head + "  - name: a\n    dsn: not a dsn #<\n    collector: {file: /x}\n", 0, "a", "dsn is not a valid"},
		{"dsn sslmode misspelt", head + "  - name: a\n    dsn: postgres://u:pw-9Qx@h/db?sslmode=requir #<\n    collector: {file: /x}\n", 0, "a", "dsn does not parse: failed to configure TLS (sslmode is invalid)"},
		{"dsn port not a number", head + "  - name: a\n    dsn: host=h dbname=db port=5x432 password=pw-9Qx #<\n    collector: {file: /x}\n", 0, "a", "dsn does not parse: invalid port"},
		{"dsn timeout not a number", head + "  - name: a\n    dsn: postgres://u:pw-9Qx@h/db?connect_timeout=ten #<\n    collector: {file: /x}\n", 0, "a", "dsn does not parse: invalid connect_timeout"},
		{"dsn session attrs misspelt", head + "  - name: a\n    dsn: postgres://u:pw-9Qx@h/db?target_session_attrs=primaryy #<\n    collector: {file: /x}\n", 0, "a", "unknown target_session_attrs value: primaryy"},
		{"collector with no method", head + "  - name: a\n    dsn: h=1\n    collector: {} #<\n", 0, "a", "it sets none"},
		{"collector null", head + "  - name: a\n    dsn: h=1\n    collector: #<\n", 0, "a", "it sets none"},
		{"collector with two methods", head + "  - name: a\n    dsn: h=1\n    collector: #<\n      exec: [cat]\n      file: /x\n", 0, "a", "it sets exec and file"},
		{"defaults collector with two methods", "version: 1\ndefaults:\n  collector: #<\n    http: {url: https://x}\n    file: /x\n" + head[len("version: 1\n"):] + "  - {name: a, dsn: h=1}\n", 0, "", "it sets http and file"},
		{"no collector", head + "  - name: a #<\n    dsn: h=1\n", 0, "a", "no collector"},
		{"empty exec", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: [] #<\n", 0, "a", "exec argv is empty"},
		{"null exec", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: #<\n", 0, "a", "exec argv is empty"},
		{"exec string", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: cat /x #<\n", 0, "a", "exec must be a list"},
		{"exec empty program", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: [\"\", x] #<\n", 0, "a", "exec program"},
		{"exec nested list", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        - cat\n        - [x] #<\n", 0, "a", "exec argument 2 must be a string"},
		{"http without url", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: #<\n        json_field: content\n", 0, "a", "http collector has no url"},
		{"http url not http", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: {url: \"ftp://x\"} #<\n", 0, "a", "must start with http"},
		{"invalid header name", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        headers: {\"Bad Name\": x} #<\n", 0, "a", "invalid header name"},
		{"header line break", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        headers: {X-Token: \"${NL_TOKEN}\"} #<\n", 0, "a", "line break"},
		{"unset variable", head + "  - name: jrs-seo\n    dsn: \"postgres://backfill:${JRS_PG_PASSWORD_TYPO}@jrs-db/m\" #<\n    collector: {file: /x}\n", 0, "jrs-seo", "${JRS_PG_PASSWORD_TYPO} is not set"},
		{"unset variable in defaults", "version: 1\ndefaults:\n  collector:\n    file: /x/${NOPE} #<\n" + head[len("version: 1\n"):] + "  - {name: a, dsn: h=1}\n", 0, "", "${NOPE} is not set"},
		{"http at the platform's files API", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: {url: \"https://x.example/api/workspaces/{workspace_id}/files/config.yaml?root=/configs\"} #<\n", 0, "a", "use the files_api collector"},
		{"http at the files API, percent-encoded", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: {url: \"https://x.example/workspaces/{workspace_id}/%66iles/config.yaml\"} #<\n", 0, "a", "use the files_api collector"},
		{"http at the platform's files listing", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: {url: \"HTTPS://x.example/Workspaces/${PLAIN_PW}/files?root=/configs\"} #<\n", 0, "a", "http url is the platform's files API"},
		{"empty variable reference", head + "  - name: a\n    dsn: h=1\n    collector:\n      http: {url: \"https://x/${}\"} #<\n", 0, "a", "empty ${}"},
		{"unterminated variable reference", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: /x/${HOME #<\n", 0, "a", `unterminated "${"`},
		{"invalid variable name", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: /x/${A-B} #<\n", 0, "a", `invalid variable name "A-B"`},
		{"unknown placeholder", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: /x/{workspace}/c #<\n", 0, "a", "unknown placeholder {workspace}"},
		{"unknown placeholder in header", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        headers: {X-T: \"{Tenant}\"} #<\n", 0, "a", "unknown placeholder {Tenant}"},
		{"unknown placeholder in argv", "version: 1\ndefaults:\n  collector:\n    exec: [cat, \"{instance}\"] #<\ntenants: [{name: a, dsn: h=1}]\n", 0, "", "unknown placeholder {instance}"},
		{"placeholder from environment", head + "  - name: a\n    dsn: h=1\n    collector:\n      http:\n        url: https://x\n        headers: {X-T: \"${BRACED}\"} #<\n", 0, "a", "an environment value contains a {name} sequence"},
		{"file path relative", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: configs/{workspace_id}.yaml #<\n", 0, "a", "file path must be absolute"},
		{"file under /proc", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: /proc/self/environ #<\n", 0, "a", "file root is under /proc, /sys or /dev"},
		{"file root under /sys", head + "  - name: a\n    dsn: h=1\n    collector:\n      file:\n        path: /sys/{tenant}/x\n        root: /sys #<\n", 0, "a", "under /proc, /sys or /dev"},
		{"file root from env under /dev", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: {path: \"${DEV_DIR}/{workspace_id}/c.yaml\"} #<\n", 0, "a", "under /proc, /sys or /dev"},
		{"file root not holding the path", head + "  - name: a\n    dsn: h=1\n    collector:\n      file:\n        path: /mnt/c/{workspace_id}/config.yaml\n        root: /mnt/d #<\n", 0, "a", "not beneath its root"},
		{"file root with a placeholder", head + "  - name: a\n    dsn: h=1\n    collector:\n      file:\n        path: /mnt/c/{workspace_id}/config.yaml\n        root: /mnt/{tenant} #<\n", 0, "a", "must not contain placeholders"},
		{"file mapping without path", head + "  - name: a\n    dsn: h=1\n    collector:\n      file: #<\n        root: /mnt\n", 0, "a", "file collector has no path"},
		{"file mapping unknown key", head + "  - name: a\n    dsn: h=1\n    collector:\n      file:\n        path: /mnt/c/{workspace_id}/config.yaml\n        follow: true #<\n", 0, "a", `unknown key "follow" in file (allowed: path, root)`},
		{"file root empty", head + "  - name: a\n    dsn: h=1\n    collector:\n      file:\n        path: /mnt/c/{workspace_id}/config.yaml\n        root: \"\" #<\n", 0, "a", "file root is empty"},
		{"exec mapping without argv", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: #<\n        env: [JRS_ORG_ID]\n", 0, "a", "exec collector has no argv"},
		{"exec mapping unknown key", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        environment: [X] #<\n", 0, "a", `unknown key "environment" in exec (allowed: argv, env)`},
		{"exec env not a list", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        env: JRS_ORG_ID #<\n", 0, "a", "exec env must be a list of variable names"},
		{"exec env bad name", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        env:\n          - JRS_ORG_ID\n          - DOCKER-HOST #<\n", 0, "a", `exec env: "DOCKER-HOST" is not a variable name`},
		{"exec env assignment", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec: {argv: [cat], env: [\"A=b\"]} #<\n", 0, "a", `exec env: "A=b" is not a variable name`},
		{"exec env twice", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        env:\n          - JRS_ORG_ID\n          - JRS_ORG_ID #<\n", 0, "a", "exec env: JRS_ORG_ID is listed twice (first at line 9)"},
		{"exec env unset", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        env: [DOCKER_HOST_TYPO] #<\n", 0, "a", "exec env: DOCKER_HOST_TYPO is not set in the environment"},
		{"exec env entry not a string", head + "  - name: a\n    dsn: h=1\n    collector:\n      exec:\n        argv: [cat]\n        env: [[X]] #<\n", 0, "a", "exec env entry must be a string"},
		{"alias repeats a tenant", head + "  - &t {name: a, dsn: h=1, collector: {file: /x}}\n  - *t #<\n", 0, "a", "this alias repeats the tenant entry at line 3"},
		{"empty tenants", "version: 1\ntenants: [] #<\n", 0, "", "tenants is empty"},
		{"null tenants", "version: 1\ntenants: #<\n", 0, "", "tenants is empty"},
		{"missing tenants", "version: 1 #<\n", 0, "", "missing tenants"},
		{"tenants not a list", "version: 1\ntenants: {name: a} #<\n", 0, "", "tenants must be a list"},
		{"tenant not a mapping", head + "  - a #<\n", 0, "", "each tenant must be a mapping"},
		{"document is a list", "- version: 1 #<\n", 0, "", "top level must be a mapping"},
		{"document is a scalar", "hello #<\n", 0, "", "top level must be a mapping"},
		{"empty document", "", 1, "", "inventory is empty"},
		{"only comments", "# nothing\n", 1, "", "inventory is empty"},
		{"multiple documents", head + "  - {name: a, dsn: h=1, collector: {file: /x}}\n--- #<\nversion: 1\n", 0, "", "second YAML document"},
		{"syntax error", head + "  - name: a\n    dsn: h=1\n      collector: x #<\n", 0, "", "invalid YAML"},
		{"syntax error without line from yaml", "version: 1\ntenants: *nope #<\n", 0, "", "unknown anchor"},
		{"control character", "version: 1\ntenants: \"\x01\" #<\n", 0, "", "invalid YAML"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := tt.line
			if line == 0 {
				line = markedLine(t, tt.data)
			}
			path := writeInventory(t, tt.data)
			_, err := Load(path, getenv)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			msg := err.Error()
			prefix := path + ":" + strconv.Itoa(line) + ": "
			if tt.tenant != "" {
				prefix += "tenant " + strconv.Quote(tt.tenant) + ": "
			}
			var found bool
			for _, l := range strings.Split(msg, "\n") {
				if strings.HasPrefix(l, prefix) && strings.Contains(l, tt.msg) {
					found = true
				}
				if !strings.HasPrefix(l, path+":") {
					t.Errorf("error line does not name the file: %q", l)
				}
			}
			if !found {
				t.Errorf("error\n%s\nhas no line starting %q containing %q", msg, prefix, tt.msg)
			}
			for name, v := range testEnv {
				if v != "" && strings.Contains(msg, v) {
					t.Errorf("error leaks $%s:\n%s", name, msg)
				}
			}
			var ie *Error
			if !errors.As(err, &ie) || ie.File != path {
				t.Errorf("errors.As(*Error) = %+v", ie)
			}
		})
	}
}

// The example from the spec, verbatim.
func TestUnsetVariableMessage(t *testing.T) {
	data := "version: 1\ntenants:\n" + strings.Repeat("# padding\n", 8) +
		"  - name: jrs-seo\n    dsn: \"postgres://backfill:${JRS_PG_PASSWORD}@jrs-db:5432/molecule\"\n    collector: {file: /x}\n"
	_, err := Parse("inventory.yaml", []byte(data), func(string) (string, bool) { return "", false })
	want := `inventory.yaml:12: tenant "jrs-seo": ${JRS_PG_PASSWORD} is not set`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
}

func TestAllErrorsReported(t *testing.T) {
	data := `version: 1
defaults:
  collector: {file: /x}
tenants:
  - name: a
    dsn: ${UNSET_ONE}
  - name: b
    dsn: h=1
    extra: 1
  - name: a
    dsn: h=1
`
	_, err := Parse("inv.yaml", []byte(data), getenv)
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	want := []string{
		`inv.yaml:6: tenant "a": ${UNSET_ONE} is not set (in dsn)`,
		`inv.yaml:9: tenant "b": unknown key "extra" in a tenant (allowed: name, dsn, collector, collectors)`,
		`inv.yaml:10: tenant "a": duplicate tenant name (first at line 5)`,
	}
	if got := strings.Split(err.Error(), "\n"); !slices.Equal(got, want) {
		t.Errorf("errors =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// An aliased collector is validated once: its problems are reported once,
// and a small file cannot cost quadratic time.
func TestAliasedCollectorValidatedOnce(t *testing.T) {
	var b strings.Builder
	b.WriteString("version: 1\ntenants:\n  - name: t0\n    dsn: h=1\n    collector: &c\n      exec: [\"\"")
	for range 5000 {
		b.WriteString(", \"{nope}\"")
	}
	b.WriteString("]\n")
	for i := 1; i < 5000; i++ {
		fmt.Fprintf(&b, "  - {name: t%d, dsn: h=1, collector: *c}\n", i)
	}
	_, err := Parse("inv.yaml", []byte(b.String()), getenv)
	if err == nil {
		t.Fatal("Parse succeeded")
	}
	if n := strings.Count(err.Error(), "\n") + 1; n != 5001 {
		t.Errorf("got %d errors, want 5001 (one per argument of the one collector)", n)
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.yaml")
	_, err := Load(path, getenv)
	if err == nil || !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestNilGetenvUsesEnvironment(t *testing.T) {
	t.Setenv("BACKFILL_TEST_INVENTORY_PW", "env-Secret-999")
	inv, err := Parse("inv.yaml", []byte("version: 1\ntenants: [{name: a, dsn: 'password=${BACKFILL_TEST_INVENTORY_PW}', collector: {file: /x}}]\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Tenants[0].DSN != "password=env-Secret-999" {
		t.Errorf("DSN = %q", inv.Tenants[0].DSN)
	}
}

func TestFileCollectorMapping(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: host=h
    collector:
      file: {path: "/mnt/${JRS_ORG_ID}/{workspace_id}/config.yaml", root: "/mnt"}
  - name: b
    dsn: host=h
    collector:
      file: {path: "/mnt/c/{workspace_id}/config.yaml"}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	want := []collector.Spec{
		{Method: "file", Path: "/mnt/" + testEnv["JRS_ORG_ID"] + "/{workspace_id}/config.yaml", Root: "/mnt"},
		{Method: "file", Path: "/mnt/c/{workspace_id}/config.yaml"},
	}
	for i, w := range want {
		if got := inv.Tenants[i].Collector; !reflect.DeepEqual(got, w) {
			t.Errorf("tenant %d collector = %+v, want %+v", i, got, w)
		}
	}
	if raw := inv.Tenants[0].Raw; raw.Path != "/mnt/${JRS_ORG_ID}/{workspace_id}/config.yaml" || raw.Root != "/mnt" {
		t.Errorf("raw = %+v", raw)
	}
}

// TestExecCollectorMapping: the command's environment is PATH, HOME, LANG and
// TZ when set, plus the listed names, all resolved through the lookup given
// to Parse; the listed values are secrets, the base ones are not.
func TestExecCollectorMapping(t *testing.T) {
	env := map[string]string{
		"PATH": "/opt/bin:/usr/bin", "TZ": "UTC", "DOCKER_HOST": "tcp://dock:Secret-999@d:2376",
		"DOCKER_CONFIG": "/etc/dock-Secret-000", "UNLISTED": "unlisted-Secret-121",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	inv, err := Parse("inv.yaml", []byte(`version: 1
defaults:
  collector:
    exec: ["docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"]
tenants:
  - name: a
    dsn: host=h
    collector:
      exec:
        argv: ["docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"]
        env: [DOCKER_HOST, DOCKER_CONFIG, TZ]
  - name: b
    dsn: host=h
`), lookup)
	if err != nil {
		t.Fatal(err)
	}
	argv := []string{"docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"}
	a, b := inv.Tenants[0], inv.Tenants[1]
	wantA := collector.Spec{Method: "exec", Argv: argv, Env: []string{"DOCKER_HOST", "DOCKER_CONFIG", "TZ"},
		Environ: []string{"PATH=/opt/bin:/usr/bin", "DOCKER_HOST=" + env["DOCKER_HOST"], "DOCKER_CONFIG=" + env["DOCKER_CONFIG"], "TZ=UTC"}}
	if !reflect.DeepEqual(a.Collector, wantA) {
		t.Errorf("collector = %+v\nwant %+v", a.Collector, wantA)
	}
	if want := (collector.Spec{Method: "exec", Argv: argv, Env: wantA.Env}); !reflect.DeepEqual(a.Raw, want) {
		t.Errorf("raw = %+v, want %+v (no values)", a.Raw, want)
	}
	wantB := collector.Spec{Method: "exec", Argv: argv, Environ: []string{"PATH=/opt/bin:/usr/bin", "TZ=UTC"}}
	if !reflect.DeepEqual(b.Collector, wantB) {
		t.Errorf("plain argv collector = %+v, want %+v", b.Collector, wantB)
	}
	secrets := inv.Secrets()
	for _, s := range []string{env["DOCKER_HOST"], env["DOCKER_CONFIG"]} {
		if !slices.Contains(secrets, s) {
			t.Errorf("Secrets() lacks listed value %q", s)
		}
	}
	for _, s := range []string{env["PATH"], "UTC", env["UNLISTED"]} {
		if slices.Contains(secrets, s) {
			t.Errorf("Secrets() has %q", s)
		}
	}
	for _, kv := range append(a.Collector.Environ, b.Collector.Environ...) {
		if strings.Contains(kv, "UNLISTED") {
			t.Errorf("unlisted variable passed: %s", kv)
		}
	}
}

// TestSecretsLiteralCredentials: credentials written into the file rather
// than the environment are secrets too, but ordinary URL parts are not.
func TestSecretsLiteralCredentials(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: host=h
    collector:
      http:
        url: "https://svc:pw-literal-1@h/w/{workspace_id}?access_token=qtok-literal-2&root=/configs"
        headers: {Authorization: "Bearer abc123literal", X-Molecule-Org-Id: "${JRS_ORG_ID}"}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	got := inv.Secrets()
	for _, want := range []string{"abc123literal", "Bearer abc123literal", "pw-literal-1", "qtok-literal-2", testEnv["JRS_ORG_ID"]} {
		if !slices.Contains(got, want) {
			t.Errorf("Secrets() lacks %q; got %q", want, got)
		}
	}
	for _, not := range []string{"/configs", "svc", "Bearer", "h"} {
		if slices.Contains(got, not) {
			t.Errorf("Secrets() has %q", not)
		}
	}
}

// TestDSNNamingAFileElsewhereLoads: a DSN whose text parses but names a file
// missing on this machine (a CA, a client key) loads: the machine that
// connects may have it. A DSN that does not parse never shows its password.
func TestDSNNamingAFileElsewhereLoads(t *testing.T) {
	doc := "version: 1\ntenants:\n  - name: a\n    dsn: postgres://u:pw-9Qx@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\n    collector: {file: /x}\n"
	if _, err := Parse("inventory.yaml", []byte(doc), func(string) (string, bool) { return "", false }); err != nil {
		t.Fatalf("a DSN naming a CA file missing here: %v", err)
	}
	doc = "version: 1\ntenants:\n  - name: a\n    dsn: postgres://u:pw-9Qx@h/db?sslmode=requir\n    collector: {file: /x}\n"
	_, err := Parse("inventory.yaml", []byte(doc), func(string) (string, bool) { return "", false })
	if err == nil || strings.Contains(err.Error(), "pw-9Qx") || !strings.Contains(err.Error(), "inventory.yaml:4") {
		t.Fatalf("a DSN that does not parse: %v", err)
	}
}

// The commands that collect nothing read names and DSNs alone: a files API
// token or an exec collector's variable unset where plan or apply runs is
// no error, a write inventory may list no collector, and none of the
// collectors' values is read, so none becomes a secret to hold. What they
// do read is checked as strictly as ever.
func TestParseDatabases(t *testing.T) {
	onlyDSN := func(name string) (string, bool) {
		if name == "JRS_PG_PASSWORD" {
			return "pg-Secret-111", true
		}
		return "", false
	}
	if _, err := Parse("inv.yaml", []byte(example), onlyDSN); err == nil {
		t.Fatal("Parse accepted the example with its collectors' variables unset")
	}
	withExec := example + `  - name: docker-host
    dsn: "host=db dbname=m"
    collector:
      exec: {argv: [docker, exec, "{container}", cat, /configs/config.yaml], env: [DOCKER_HOST_UNSET]}
  - name: write-only
    dsn: "postgres://backfill:${JRS_PG_PASSWORD}@other-db/molecule"
`
	// The example's other DSNs come from variables too.
	env := func(name string) (string, bool) {
		switch name {
		case "CONCIERGE_DSN":
			return "host=db dbname=concierge", true
		case "PLAIN_PW":
			return "kv-Secret-555", true
		}
		return onlyDSN(name)
	}
	inv, err := ParseDatabases("inv.yaml", []byte(withExec), env)
	if err != nil {
		t.Fatalf("ParseDatabases: %v", err)
	}
	if !inv.DatabasesOnly() {
		t.Error("DatabasesOnly is false")
	}
	var names []string
	for _, tn := range inv.Tenants {
		names = append(names, tn.Name)
		if tn.DSN == "" || len(tn.Chain) != 0 || len(tn.RawChain) != 0 || tn.Collector.Method != "" || tn.Raw.Method != "" {
			t.Errorf("tenant %s: DSN %q, collectors %+v %+v", tn.Name, tn.DSN, tn.Chain, tn.Collector)
		}
	}
	if len(names) < 4 || names[len(names)-1] != "write-only" {
		t.Errorf("tenants %v", names)
	}
	if got := inv.Secrets(); !slices.Equal(got, []string{"pg-Secret-111", "host=db dbname=concierge", "kv-Secret-555"}) {
		t.Errorf("secrets %q: only the DSNs' values were read", got)
	}
	if inv.Digest() == "" {
		t.Error("no digest")
	}

	// What is read is checked: an unset DSN variable, a misspelt key (under
	// a tenant or defaults), a duplicate tenant.
	for _, tt := range []struct{ name, data, want string }{
		{"unset dsn variable", "version: 1\ntenants:\n  - {name: a, dsn: \"${NOPE_DSN}\"}\n", `inv.yaml:3: tenant "a": ${NOPE_DSN} is not set (in dsn)`},
		{"misspelt tenant key", "version: 1\ntenants:\n  - name: a\n    dsn: h=1\n    colector: {file: /x}\n", "colector"},
		{"misspelt defaults key", "version: 1\ndefaults:\n  colectors: []\ntenants:\n  - {name: a, dsn: h=1}\n", "colectors"},
		{"duplicate tenant", "version: 1\ntenants:\n  - {name: a, dsn: h=1}\n  - {name: a, dsn: h=2}\n", "duplicate tenant name"},
	} {
		if _, err := ParseDatabases("inv.yaml", []byte(tt.data), env); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}
