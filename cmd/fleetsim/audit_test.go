package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"backfill/internal/cli"
	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// auditDoc is what this test reads of `backfill audit --json`.
type auditDoc struct {
	SchemaVersion int    `json:"schema_version"`
	Reason        string `json:"reason"`
	AuditID       int64  `json:"audit_id"`
	TemplateEmpty int    `json:"template_empty"`
	WithEvidence  int    `json:"with_evidence"`
	Appeared      int    `json:"appeared"`
	Captured      int    `json:"captured"`
	TenantsFailed []struct {
		Tenant, Reason string
	} `json:"tenants_failed"`
	Without      []auditEntry `json:"without_evidence_workspaces"`
	AppearedList []auditEntry `json:"appeared_workspaces"`
}

type auditEntry struct {
	Tenant      string `json:"tenant"`
	WorkspaceID string `json:"workspace_id"`
	Outcome     string `json:"outcome"`
	Reason      string `json:"reason"`
}

func entryKeys(es []auditEntry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Tenant+"/"+e.WorkspaceID)
	}
	sort.Strings(out)
	return out
}

// evidenceCounts counts each workspace's captures from an evidence source
// (container, eic, host-mirror, exec, file), read straight from the store.
func evidenceCounts(t *testing.T, path string) map[string]int {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT tenant, workspace_id, count(*) FROM captures WHERE outcome = 'captured'
  AND source IN ('container', 'eic', 'host-mirror', 'exec', 'file') GROUP BY 1, 2`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var tenant, id string
		var n int
		if err := rows.Scan(&tenant, &id, &n); err != nil {
			t.Fatal(err)
		}
		out[tenant+"/"+id] = n
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAuditFindsWorkspacesCreatedBetweenAudits runs the standing audit
// twice against the platform-faithful fleet. The first captures every
// workspace with an empty template that an evidence source answers for and
// names the others, exactly the ones the answer key says no source the
// tool may count can read. Between the two audits the platform creates
// workspaces with an empty template on every kind of tenant (and one with a
// template): the second audit captures exactly those, reports exactly
// those as appeared since the first, and still names the same ones
// without evidence.
func TestAuditFindsWorkspacesCreatedBetweenAudits(t *testing.T) {
	admin := pgtest.NewDB(t)
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "fleet")
	f, err := startFleet(ctx, options{Dir: dir, Tenants: 3, Workspaces: 40, Seed: defaultSeed, PG: admin,
		RateLimit: filesapi.DefaultRateLimit, RateWindow: time.Minute}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	lookup, err := fleetEnv(dir, noEnv)
	if err != nil {
		t.Fatal(err)
	}
	inv := filepath.Join(dir, fileInventory)
	skipUntilFilesAPI(t, inv, lookup)
	ev := filepath.Join(t.TempDir(), "evidence.db")
	audit := func(what string) auditDoc {
		t.Helper()
		code, out, errs := backfill(t, lookup, "--evidence", ev, "audit", "--inventory", inv, "--json")
		var doc auditDoc
		if err := json.Unmarshal([]byte(out), &doc); err != nil || doc.SchemaVersion != 1 {
			t.Fatalf("%s: exit %d, not the audit document: %v\n%s\n%s", what, code, err, out, errs)
		}
		// Some workspaces have no evidence anywhere: exit 3, every time.
		if code != cli.ExitPartial || len(doc.TenantsFailed) != 0 {
			t.Fatalf("%s: exit %d, tenants failed %+v, want 3 with every tenant listed\n%s", what, code, doc.TenantsFailed, errs)
		}
		return doc
	}

	// What the design says: every live row with template = '', and which
	// of them an evidence source answers for. A row the files API server
	// deletes once its config is read is gone by the read's second
	// listing: no evidence, and not listed again. (One set to removed is
	// still known to its server, so it is captured.)
	var empty, noEvidence, stillListed []string
	for _, tn := range f.spec.Tenants {
		for _, w := range tn.Workspaces {
			if w.Status == "removed" || w.Template != "" {
				continue
			}
			key := tn.Name + "/" + w.ID
			empty = append(empty, key)
			deleted := w.After == afterDelete && isFilesAPI(tn)
			if !isEvidence(tn.readFrom(w)) || deleted {
				noEvidence = append(noEvidence, key)
				if w.After == "" {
					stillListed = append(stillListed, key)
				}
			}
		}
	}
	sort.Strings(empty)
	sort.Strings(noEvidence)
	sort.Strings(stillListed)
	if len(noEvidence) == 0 || len(noEvidence) == len(empty) {
		t.Fatalf("the fleet has %d workspaces with template = '', %d without evidence: the test needs both", len(empty), len(noEvidence))
	}

	first := audit("first audit")
	if got := entryKeys(first.Without); !slices.Equal(got, noEvidence) {
		t.Fatalf("first audit: without evidence %v\nwant %v", got, noEvidence)
	}
	if first.TemplateEmpty != len(empty) || first.Appeared != len(empty) || first.WithEvidence != len(empty)-len(noEvidence) {
		t.Fatalf("first audit: %+v; %d with template = ''", first, len(empty))
	}
	before := evidenceCounts(t, ev)
	for k := range before {
		if _, ok := slices.BinarySearch(empty, k); !ok {
			t.Errorf("the audit captured %s, which has a template", k)
		}
	}

	// The platform imports, on every tenant, two workspaces with
	// template = '' and one with a template.
	var added []string
	for i, tn := range f.spec.Tenants {
		for j, template := range []string{"", "", seoAgent} {
			id := fmt.Sprintf("0a0d17ed-%04x-4%03x-8000-%012x", i, j, 7)
			w := &workspaceSpec{ID: id, Name: fmt.Sprintf("imported-%d-%d", i, j), Runtime: "claude-code", Kind: "workspace",
				Status: "online", Template: template, Live: catalogConfig(seoAgent), LiveDesc: seoAgent}
			if tn.hosted() {
				w.InstanceID = "mol-ws-" + slug(w.Name) + fmt.Sprintf("-%06x", i*16+j)
			}
			if err := f.createWorkspace(ctx, tn.Name, w); err != nil {
				t.Fatal(err)
			}
			if template == "" {
				added = append(added, tn.Name+"/"+id)
			}
		}
	}
	sort.Strings(added)

	second := audit("second audit")
	if got := entryKeys(second.AppearedList); !slices.Equal(got, added) {
		t.Fatalf("second audit: appeared %v\nwant exactly %v", got, added)
	}
	if second.Appeared != len(added) || second.Captured != len(added) {
		t.Fatalf("second audit: appeared %d, captured %d, want %d each", second.Appeared, second.Captured, len(added))
	}
	after := evidenceCounts(t, ev)
	var capturedNow []string
	for k, n := range after {
		if n != before[k] {
			capturedNow = append(capturedNow, k)
		}
	}
	sort.Strings(capturedNow)
	if !slices.Equal(capturedNow, added) {
		t.Fatalf("second audit captured %v\nwant exactly %v", capturedNow, added)
	}
	if got := entryKeys(second.Without); !slices.Equal(got, stillListed) {
		t.Fatalf("second audit: without evidence %v\nwant %v", got, stillListed)
	}
	if code, out, errs := backfill(t, lookup, "--evidence", ev, "verify"); code != 0 {
		t.Fatalf("verify: %d\n%s%s", code, out, errs)
	}
}
