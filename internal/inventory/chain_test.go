package inventory

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"backfill/internal/collector"
)

func TestFilesAPICollector(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
tenants:
  - name: a
    dsn: h=1
    collector:
      files_api:
        base_url: "https://jrs.example/"
        headers: {Authorization: "Bearer ${JRS_ADMIN_TOKEN}", X-Molecule-Org-Id: "${JRS_ORG_ID}"}
  - name: b
    dsn: h=1
    collector:
      files_api: {base_url: "http://10.0.0.7:8080", headers: {Authorization: "Bearer literal-tok-9"}, rate: 2.5}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	a, b := inv.Tenants[0], inv.Tenants[1]
	want := collector.Spec{Method: "files_api", BaseURL: "https://jrs.example/", Rate: 8,
		Headers: map[string]string{"Authorization": "Bearer tok-Secret-222", "X-Molecule-Org-Id": "org-Secret-333"}}
	if !reflect.DeepEqual(a.Collector, want) || a.Raw.Headers["Authorization"] != "Bearer ${JRS_ADMIN_TOKEN}" || a.Raw.Rate != 8 {
		t.Fatalf("a = %+v\nraw %+v", a.Collector, a.Raw)
	}
	if b.Collector.Rate != 2.5 || b.Collector.BaseURL != "http://10.0.0.7:8080" {
		t.Fatalf("b = %+v", b.Collector)
	}
	got := inv.Secrets()
	for _, s := range []string{"tok-Secret-222", "org-Secret-333", "Bearer literal-tok-9", "literal-tok-9"} {
		if !slices.Contains(got, s) {
			t.Errorf("Secrets() lacks %q", s)
		}
	}
}

func TestFilesAPIErrors(t *testing.T) {
	for _, tc := range []struct{ body, want string }{
		{`{files_api: {headers: {A: b}}}`, `inv.yaml:5: tenant "a": files_api collector has no base_url`},
		{`{files_api: {base_url: "ftp://x"}}`, "base_url must start with http:// or https://"},
		{`{files_api: {base_url: "https://x/?org=1"}}`, "must not have a query or fragment"},
		{`{files_api: {base_url: "https://x", rate: 0}}`, "rate must be above 0 and at most 1000"},
		{`{files_api: {base_url: "https://x", rate: -3}}`, "rate must be above 0"},
		{`{files_api: {base_url: "https://x", rate: fast}}`, "rate must be a number of requests per second (default 8)"},
		{`{files_api: {base_url: "https://x", rate: 5000}}`, "at most 1000"},
		{`{files_api: {base_url: "https://x", url: "https://y"}}`, `unknown key "url" in files_api (allowed: base_url, headers, rate)`},
		{`{files_api: {base_url: "https://{pod}.x"}}`, "unknown placeholder {pod}"},
		{`{http: {url: "https://x"}, files_api: {base_url: "https://x"}}`, "exactly one of exec, http, file or files_api; it sets http and files_api"},
	} {
		_, err := Parse("inv.yaml", []byte("version: 1\ntenants:\n  - name: a\n    dsn: h=1\n    collector: "+tc.body+"\n"), getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.body, err, tc.want)
		}
	}
}

func TestCollectorChains(t *testing.T) {
	inv, err := Parse("inv.yaml", []byte(`version: 1
defaults:
  collectors:
    - exec: ["docker", "exec", "{container}", "cat", "/configs/config.yaml"]
    - file: "/var/lib/docker/volumes/ws-{workspace_id}-configs/_data/config.yaml"
tenants:
  - name: a
    dsn: h=1
  - name: b
    dsn: h=1
    collectors:
      - files_api: {base_url: "https://b.example", headers: {X-Molecule-Org-Id: "${JRS_ORG_ID}"}}
      - http: {url: "https://b.example/{workspace_id}", headers: {Authorization: "Bearer ${JRS_ADMIN_TOKEN}"}}
  - name: c
    dsn: h=1
    collector: {file: "/x/{workspace_id}"}
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	a, b, c := inv.Tenants[0], inv.Tenants[1], inv.Tenants[2]
	if len(a.Chain) != 2 || a.Chain[0].Method != "exec" || a.Chain[1].Method != "file" || a.Collector.Method != "exec" ||
		a.Chain[1].Path != "/var/lib/docker/volumes/ws-{workspace_id}-configs/_data/config.yaml" {
		t.Fatalf("a = %+v", a.Chain)
	}
	if len(b.Chain) != 2 || b.Chain[0].Method != "files_api" || b.Chain[1].Method != "http" || len(b.RawChain) != 2 {
		t.Fatalf("b = %+v", b.Chain)
	}
	if exp, raw := c.Collectors(); len(exp) != 1 || len(raw) != 1 || exp[0].Method != "file" {
		t.Fatalf("c = %+v", exp)
	}
	// Tenants sharing the defaults do not share their slices.
	a.Chain[0].Argv[0] = "changed"
	if inv.Tenants[0].RawChain[0].Argv[0] != "docker" {
		t.Fatal("Chain and RawChain share an argv")
	}
	got := inv.Secrets()
	for _, s := range []string{"tok-Secret-222", "org-Secret-333"} {
		if !slices.Contains(got, s) {
			t.Errorf("Secrets() lacks %q, a header of a second collector", s)
		}
	}
	if exp, raw := (Tenant{Collector: collector.Spec{Method: "file"}, Raw: collector.Spec{Method: "file"}}).Collectors(); len(exp) != 1 || len(raw) != 1 {
		t.Fatal("a hand-built tenant has no chain of one")
	}
}

func TestCollectorChainErrors(t *testing.T) {
	for _, tc := range []struct{ tenant, want string }{
		{"    collector: {file: /x}\n    collectors: [{file: /y}]\n", `inv.yaml:6: tenant "a": set collector or collectors, not both`},
		{"    collectors: []\n", "collectors must be a non-empty list"},
		{"    collectors: {file: /x}\n", "collectors must be a non-empty list"},
		{"    collectors: [{file: /x}, {pipe: y}]\n", `unknown key "pipe" in a collector`},
		{"    collectors: [{file: /x, exec: [cat]}]\n", "it sets exec and file"},
		{"    collectors: [" + strings.Repeat("{file: /x}, ", 8) + "{file: /x}]\n", "collectors lists 9 collectors; at most 8"},
	} {
		_, err := Parse("inv.yaml", []byte("version: 1\ntenants:\n  - name: a\n    dsn: h=1\n"+tc.tenant), getenv)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.tenant, err, tc.want)
		}
	}
	_, err := Parse("inv.yaml", []byte("version: 1\ndefaults:\n  collector: {file: /x}\n  collectors: [{file: /y}]\ntenants:\n  - name: a\n    dsn: h=1\n"), getenv)
	if err == nil || !strings.Contains(err.Error(), "set collector or collectors, not both") || strings.Contains(err.Error(), `tenant "a"`) {
		t.Errorf("both in defaults: %v", err)
	}
}
