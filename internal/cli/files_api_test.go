package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
	"backfill/internal/pgtest"
)

const (
	filesOrg   = "org-4f1e7b20-a5c3"
	filesToken = "tok-files-7d02c9e4"
)

// platformFleet is tenants whose workspaces are served by stand-ins for the
// platform's files API (internal/filesapi.MemoryPlatform) on loopback, with real
// tenant databases.
type platformFleet struct {
	dir  string
	env  map[string]string
	ids  map[string]string // workspace name -> id
	dsns map[string]string
	yaml strings.Builder
}

func newPlatformFleet(t *testing.T) *platformFleet {
	f := &platformFleet{dir: t.TempDir(), env: map[string]string{"USER": "alice", "FILES_TOKEN": filesToken, "FILES_ORG": filesOrg},
		ids: map[string]string{}, dsns: map[string]string{}}
	writeCatalog(t, filepath.Join(f.dir, "catalog"))
	return f
}

// tenant adds a tenant database with rows; collectorYAML is its collector
// (indented under the tenant entry).
func (f *platformFleet) tenant(t *testing.T, name string, n int, collectorYAML string, rows ...ws) {
	t.Helper()
	dsn := pgtest.NewTenantDB(t)
	f.dsns[name] = dsn
	for i := range rows {
		rows[i].id = uuidFor(n, i+1)
		f.ids[rows[i].name] = rows[i].id
	}
	insertRows(t, dsn, rows...)
	fmt.Fprintf(&f.yaml, "  - name: %s\n    dsn: %q\n%s", name, dsn, collectorYAML)
}

func (f *platformFleet) write(t *testing.T, cp string) {
	t.Helper()
	writeFile(t, filepath.Join(f.dir, "inventory.yaml"), "version: 1\ntenants:\n"+f.yaml.String())
	writeFile(t, filepath.Join(f.dir, "cp.csv"), "tenant,workspace_id,template\n"+cp)
}

func (f *platformFleet) run(t *testing.T, args ...string) result {
	t.Helper()
	t.Chdir(f.dir)
	return runAt(t, f.env, append([]string{"--evidence", "evidence.db"}, args...)...)
}

func (f *platformFleet) captures(t *testing.T) []*evidence.Capture {
	t.Helper()
	s, err := evidence.OpenReadOnly(context.Background(), filepath.Join(f.dir, "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var out []*evidence.Capture
	if err := s.Captures(context.Background(), func(c *evidence.Capture) error { out = append(out, c); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func (f *platformFleet) plan(t *testing.T) (*plan.Plan, result) {
	t.Helper()
	res := f.run(t, "plan", "--inventory", "inventory.yaml", "--cp", "cp.csv", "--catalog", "catalog", "--out", "plan.json", "--report", "report.md")
	p, err := plan.LoadPlan(filepath.Join(f.dir, "plan.json"))
	if err != nil {
		t.Fatalf("plan: %v\n%s%s", err, res.stdout, res.stderr)
	}
	return p, res
}

func item(t *testing.T, p *plan.Plan, id string) plan.Item {
	t.Helper()
	for _, it := range p.Items {
		if it.WorkspaceID == id {
			return it
		}
	}
	t.Fatalf("no plan item for %s", id)
	return plan.Item{}
}

func filesAPIYAML(url string, org bool) string {
	h := `Authorization: "Bearer ${FILES_TOKEN}"`
	if org {
		h += `, X-Molecule-Org-Id: "${FILES_ORG}"`
	}
	return fmt.Sprintf("    collector:\n      files_api: {base_url: %q, headers: {%s}}\n", url, h)
}

// A workspace whose container is down and whose name matches a template is
// answered from that template's folder: its capture is not-live, kept with
// its bytes, and the plan never makes it agree, naming why. A running
// workspace beside it is captured from its container and agreed, and one
// hibernated with a host mirror is captured from the mirror, labelled.
func TestContainerDownTemplateNamedWorkspaceIsNeverAgree(t *testing.T) {
	seoTemplate := fixture.Template("seo-agent")
	seoLive := readLive(t, "custom-seo-agent.yaml")
	p := &filesapi.MemoryPlatform{Org: filesOrg, Token: filesToken, Templates: map[string]*string{"seo-agent": filesapi.Ptr(string(seoTemplate))}}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	f := newPlatformFleet(t)
	f.tenant(t, "acme", 1, filesAPIYAML(srv.URL, true),
		ws{name: "SEO Agent", status: "offline"}, ws{name: "seo-running"}, ws{name: "seo-hibernated", status: "hibernated"})
	p.Put(f.ids["SEO Agent"], filesapi.MemoryWorkspace{Name: "SEO Agent"}) // no container, no mirror: the template folder answers
	p.Put(f.ids["seo-running"], filesapi.MemoryWorkspace{Name: "seo-running", Running: true, Container: &seoLive})
	p.Put(f.ids["seo-hibernated"], filesapi.MemoryWorkspace{Name: "seo-hibernated", Mirror: &seoLive})
	f.write(t, "acme,,seo-agent\n")

	res := f.run(t, "snapshot", "--inventory", "inventory.yaml")
	if res.code != 3 || !strings.Contains(res.stdout, "captured now 2,") || !strings.Contains(res.stdout, "not live 1,") ||
		!strings.Contains(res.stdout, "not-live acme/"+f.ids["SEO Agent"]+": not live: the files API answered from the template folder") {
		t.Fatalf("snapshot exit %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, c := range f.captures(t) {
		if c.WorkspaceID != f.ids["SEO Agent"] {
			continue
		}
		if c.Outcome != evidence.NotLive || c.Source != "template-dir" || c.SHA256 != sha(string(seoTemplate)) || c.Provenance["list_source"] != "template-dir" {
			t.Fatalf("the template folder's answer: %s source %q sha %s %v", c.Outcome, c.Source, c.SHA256, c.Provenance)
		}
	}
	st := f.run(t, "status")
	if !strings.Contains(st.stdout, "NOT LIVE") {
		t.Fatalf("status:\n%s", st.stdout)
	}

	pl, res := f.plan(t)
	down := item(t, pl, f.ids["SEO Agent"])
	if down.Verdict != plan.NoEvidence || down.Action != nil || !strings.Contains(down.Reason, "no live evidence: capture") ||
		!strings.Contains(down.Reason, "(not-live, source template-dir)") {
		t.Fatalf("container-down workspace: %s %q\n%s", down.Verdict, down.Reason, res.stderr)
	}
	running := item(t, pl, f.ids["seo-running"])
	if running.Verdict != plan.Agree || running.Evidence.Source != "container" {
		t.Fatalf("running workspace: %s %+v %q", running.Verdict, running.Evidence, running.Reason)
	}
	mirror := item(t, pl, f.ids["seo-hibernated"])
	if mirror.Verdict != plan.Agree || mirror.Evidence.Source != "host-mirror" {
		t.Fatalf("hibernated workspace: %s %+v %q", mirror.Verdict, mirror.Evidence, mirror.Reason)
	}
	report, err := os.ReadFile(filepath.Join(f.dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| container | 1 |", "| host-mirror | 1 |", "1 writes rest on host-mirror captures"} {
		if !strings.Contains(string(report), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

// A tenant whose org header is wrong (bare 404) or missing (400
// TENANT_ORG_HEADER_REQUIRED) is stopped with the tenant-level error,
// named in the summary (exit 3), and none of its workspaces is recorded
// gone; a correctly configured tenant beside them is captured, and its
// deleted workspace is gone.
func TestMisconfiguredOrgHeaderStopsTheTenant(t *testing.T) {
	live := "name: Hermes Agent\nruntime: hermes\n"
	f := newPlatformFleet(t)
	servers := map[string]*filesapi.MemoryPlatform{}
	for i, tc := range []struct {
		tenant, org string
		header      bool
	}{{"wrong-org", "org-someone-else", true}, {"no-org", filesOrg, false}, {"good", filesOrg, true}} {
		p := &filesapi.MemoryPlatform{Org: tc.org, Token: filesToken}
		srv := httptest.NewServer(p.Handler())
		t.Cleanup(srv.Close)
		servers[tc.tenant] = p
		var rows []ws
		for j := 0; j < 8; j++ {
			rows = append(rows, ws{name: fmt.Sprintf("%s-%d", tc.tenant, j), runtime: "hermes"})
		}
		f.tenant(t, tc.tenant, i+1, filesAPIYAML(srv.URL, tc.header), rows...)
		for j := 0; j < 8; j++ {
			if tc.tenant == "good" && j == 7 {
				continue // deleted on the server since the listing: gone
			}
			name := fmt.Sprintf("%s-%d", tc.tenant, j)
			p.Put(f.ids[name], filesapi.MemoryWorkspace{Name: name, Running: true, Container: &live})
		}
	}
	f.write(t, "")
	res := f.run(t, "snapshot", "--inventory", "inventory.yaml", "--concurrency", "4")
	if res.code != 3 {
		t.Fatalf("snapshot exit %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	for _, want := range []string{
		"(0 not listed, 2 stopped)",
		"tenant wrong-org stopped: collector misconfigured: check X-Molecule-Org-Id (and the URL): HTTP 404 Not Found with no JSON error",
		"tenant no-org stopped: collector misconfigured: check X-Molecule-Org-Id: HTTP 400 Bad Request TENANT_ORG_HEADER_REQUIRED",
		"captured now 7,", "gone 1,",
		"gone good/" + f.ids["good-7"],
		"not attempted wrong-org/", "tenant stopped before this workspace was attempted",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("summary lacks %q:\n%s", want, res.stdout)
		}
	}
	for _, c := range f.captures(t) {
		if c.Tenant != "good" && c.Outcome == evidence.Gone {
			t.Errorf("capture %d of %s recorded gone: %s", c.ID, c.Tenant, c.Reason)
		}
		if c.Tenant == "no-org" && (c.Outcome != evidence.Failed || !strings.Contains(c.Provenance["body_head"], `"code":"TENANT_ORG_HEADER_REQUIRED"`)) {
			t.Errorf("capture %d: %s %v", c.ID, c.Outcome, c.Provenance)
		}
		if c.Tenant == "wrong-org" && (c.Outcome != evidence.Failed || c.Provenance["http_status"] != "404" || c.Provenance["body_head"] != "") {
			t.Errorf("capture %d: %s %v", c.ID, c.Outcome, c.Provenance)
		}
	}
	var recs []exportRecord
	exp := f.run(t, "export")
	if err := json.Unmarshal([]byte(exp.stdout), &recs); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Tenant != "good" && r.LatestOutcome == "gone" {
			t.Errorf("export: %s/%s gone", r.Tenant, r.WorkspaceID)
		}
	}
	// Each stopped tenant was asked only until its first answers said so.
	for _, tenant := range []string{"wrong-org", "no-org"} {
		if n, _, _ := servers[tenant].Stats(); n > 8 {
			t.Errorf("%s: %d requests after its collector was known misconfigured", tenant, n)
		}
	}
}

// A hibernated workspace's container was removed by the platform: docker
// says "No such container", which for a hibernated row is not-running, not
// gone, and the chain's next collector reads its config volume on the
// host. "is not running" is not-running whatever the status. For a live
// row, "No such container" is gone, and with no volume either, stays so.
func TestHibernatedCapturedFromHostMirrorThroughChain(t *testing.T) {
	seoLive := readLive(t, "custom-seo-agent.yaml")
	f := newPlatformFleet(t)
	bin := filepath.Join(f.dir, "bin")
	volumes := filepath.Join(f.dir, "volumes")
	running := filepath.Join(f.dir, "running")
	// A stand-in docker: running containers have their config under
	// $running/<name>; a known stopped one says so; any other is absent.
	writeFile(t, filepath.Join(bin, "docker"), fmt.Sprintf(`#!/bin/sh
# docker exec <container> cat /configs/config.yaml
if [ -f %[1]q/"$2" ]; then exec cat %[1]q/"$2"; fi
if [ "$2" = "mol-ws-paused-1" ]; then echo "Error response from daemon: container $2 is not running" >&2; exit 1; fi
echo "Error response from daemon: No such container: $2" >&2
exit 1
`, running))
	if err := os.Chmod(filepath.Join(bin, "docker"), 0o755); err != nil {
		t.Fatal(err)
	}
	f.env["PATH"] = bin + ":/usr/bin:/bin"
	chain := fmt.Sprintf(`    collectors:
      - exec: ["docker", "exec", "{container}", "cat", "/configs/config.yaml"]
      - file: {path: "%s/ws-{workspace_id}-configs/_data/config.yaml", root: %q}
`, volumes, volumes)
	f.tenant(t, "acme", 1, chain,
		ws{name: "hibernated", status: "hibernated"},
		ws{name: "awake"},
		ws{name: "paused-hosted", status: "paused", instance: "mol-ws-paused-1"},
		ws{name: "vanished"})
	for _, name := range []string{"hibernated", "paused-hosted"} {
		writeFile(t, filepath.Join(volumes, "ws-"+f.ids[name]+"-configs", "_data", "config.yaml"), seoLive)
	}
	writeFile(t, filepath.Join(running, "ws-"+f.ids["awake"]), seoLive)
	f.write(t, "acme,,seo-agent\n")

	res := f.run(t, "snapshot", "--inventory", "inventory.yaml", "--retries", "3")
	if res.code != 3 || !strings.Contains(res.stdout, "captured now 3,") || !strings.Contains(res.stdout, "gone 1,") {
		t.Fatalf("snapshot exit %d:\n%s%s", res.code, res.stdout, res.stderr)
	}
	byWS := map[string][]*evidence.Capture{}
	for _, c := range f.captures(t) {
		byWS[c.WorkspaceID] = append(byWS[c.WorkspaceID], c)
	}
	type step struct{ method, outcome, source, reason string }
	for name, want := range map[string][]step{
		"hibernated": {{"exec", "not-running", "exec", "No such container: ws-" + f.ids["hibernated"] + " (status hibernated"},
			{"file", "captured", "file", ""}},
		"paused-hosted": {{"exec", "not-running", "exec", "container mol-ws-paused-1 is not running"}, {"file", "captured", "file", ""}},
		"awake":         {{"exec", "captured", "exec", ""}},
		"vanished":      {{"exec", "gone", "exec", "No such container: ws-" + f.ids["vanished"]}, {"file", "gone", "file", "no such file"}},
	} {
		got := byWS[f.ids[name]]
		if len(got) != len(want) {
			t.Errorf("%s: %d capture rows, want %d", name, len(got), len(want))
			continue
		}
		for i, w := range want {
			c := got[i]
			if c.Method != w.method || c.Outcome != w.outcome || c.Source != w.source || !strings.Contains(c.Reason, w.reason) || c.Attempt != 1 {
				t.Errorf("%s row %d: %s %s source %s attempt %d %q; want %+v", name, i, c.Method, c.Outcome, c.Source, c.Attempt, c.Reason, w)
			}
		}
	}

	pl, _ := f.plan(t)
	for _, name := range []string{"hibernated", "paused-hosted"} {
		it := item(t, pl, f.ids[name])
		if it.Verdict != plan.Agree || it.Evidence.Source != "file" || it.Action.SetTemplate != "seo-agent" {
			t.Errorf("%s: %s %+v %q", name, it.Verdict, it.Evidence, it.Reason)
		}
	}
	// A re-run skips what has evidence and tries the rest again.
	again := f.run(t, "snapshot", "--inventory", "inventory.yaml")
	if again.code != 3 || !strings.Contains(again.stdout, "captured earlier 3") {
		t.Fatalf("re-run:\n%s%s", again.stdout, again.stderr)
	}
	if v := f.run(t, "verify"); v.code != 0 {
		t.Fatalf("verify: %s%s", v.stdout, v.stderr)
	}
}

// Found by review: the platform reads an EC2 workspace's files by its
// instance_id, so two live rows naming one instance both got that
// instance's config, captured from source eic. Both captures now fail,
// as they do through {instance_id} and {container}, and the snapshot
// says so (exit 3).
func TestASharedEC2InstanceFailsThroughFilesAPI(t *testing.T) {
	live := readLive(t, "custom-seo-agent.yaml")
	p, srv := memoryPlatform(t)
	f := newPlatformFleet(t)
	const inst = "i-0123456789abcdef0"
	f.tenant(t, "acme", 94, filesAPIYAML(srv.URL, true),
		ws{name: "victim", instance: inst}, ws{name: "copier", instance: inst}, ws{name: "own", instance: "i-0fedcba9876543210"})
	p.Put(f.ids["victim"], filesapi.MemoryWorkspace{Name: "victim", InstanceID: inst, EIC: &live})
	p.Put(f.ids["copier"], filesapi.MemoryWorkspace{Name: "copier", InstanceID: inst, EIC: &live})
	p.Put(f.ids["own"], filesapi.MemoryWorkspace{Name: "own", InstanceID: "i-0fedcba9876543210", EIC: &live})
	f.write(t, "")
	// Preflight says what the snapshot will do: the tenant's collector
	// works (its own instance's sample), no sample reads the shared
	// instance as evidence, and a note names it (found by review).
	pf := f.run(t, "preflight", "--inventory", "inventory.yaml")
	if pf.code != 0 || !strings.Contains(pf.stdout, "passed over sample") || !strings.Contains(pf.stdout, "2 live workspaces share an instance_id with another ("+inst+")") {
		t.Errorf("preflight: %d\n%s%s", pf.code, pf.stdout, pf.stderr)
	}
	res := f.run(t, "snapshot", "--inventory", "inventory.yaml", "--retries", "0")
	if res.code != 3 {
		t.Errorf("snapshot exit %d, want 3\n%s%s", res.code, res.stdout, res.stderr)
	}
	got := map[string]string{}
	for _, c := range f.captures(t) {
		got[c.WorkspaceID] = c.Outcome
		if c.Outcome == evidence.Failed && (!strings.Contains(c.Reason, "is named by more than one live workspace") || c.Content != nil) {
			t.Errorf("%s: %s", c.WorkspaceID, c.Reason)
		}
	}
	if got[f.ids["victim"]] != evidence.Failed || got[f.ids["copier"]] != evidence.Failed || got[f.ids["own"]] != evidence.Captured {
		t.Errorf("outcomes %v", got)
	}
}

// Found by review: a listing that came back (200, with its source) shows
// the tenant's org header and URL are right, so a read's 404 after it is
// no bare 404 of a misconfigured tenant: five workspaces whose host mirror
// lacks config.yaml, listed first, stopped a healthy tenant and left its
// running containers unread.
func TestAListingThatCameBackVerifiesTheTenant(t *testing.T) {
	live := readLive(t, "custom-seo-agent.yaml")
	p, srv := memoryPlatform(t)
	f := newPlatformFleet(t)
	var rows []ws
	for i := range 5 {
		rows = append(rows, ws{name: fmt.Sprintf("nocfg%d", i)})
	}
	for i := range 5 {
		rows = append(rows, ws{name: fmt.Sprintf("ok%d", i), template: "seo-agent"})
	}
	f.tenant(t, "acme", 5, filesAPIYAML(srv.URL, true), rows...)
	for _, r := range rows {
		if strings.HasPrefix(r.name, "nocfg") {
			p.Put(f.ids[r.name], filesapi.MemoryWorkspace{Name: r.name, MirrorDir: true})
		} else {
			p.Put(f.ids[r.name], filesapi.MemoryWorkspace{Name: r.name, Running: true, Container: &live})
		}
	}
	f.write(t, "")
	res := f.run(t, "snapshot", "--inventory", "inventory.yaml", "--capture-concurrency", "1")
	if strings.Contains(res.stdout+res.stderr, "check X-Molecule-Org-Id") {
		t.Fatalf("tenant stopped as misconfigured although every listing came back\n%s%s", res.stdout, res.stderr)
	}
	got := map[string]int{}
	for _, c := range f.captures(t) {
		got[c.Outcome]++
	}
	if got["captured"] != 5 || got["gone"] != 5 {
		t.Errorf("outcomes %v, want 5 captured and 5 gone\n%s", got, res.stdout)
	}
}

// Found by review: a 401 from the files API stopped the whole tenant, so
// the chain's next collector (a volume holding the same configs) was never
// tried. A collector refused for the tenant is left out for its other
// workspaces, and the chain goes on; only a chain with nothing left stops
// the tenant.
func TestACollectorRefusedForTheTenantLeavesTheChainsOthers(t *testing.T) {
	live := readLive(t, "custom-seo-agent.yaml")
	p, srv := memoryPlatform(t)
	f := newPlatformFleet(t)
	chain, vol := expiredTokenThenVolume(t, f, srv.URL)
	var rows []ws
	for i := range 6 {
		rows = append(rows, ws{name: fmt.Sprintf("w%d", i)})
	}
	f.tenant(t, "acme", 1, chain, rows...)
	f.tenant(t, "solo", 2, filesAPIYAML(srv.URL, true), ws{name: "s0"}, ws{name: "s1"})
	for _, r := range append(slices.Clone(rows), ws{name: "s0"}, ws{name: "s1"}) {
		p.Put(f.ids[r.name], filesapi.MemoryWorkspace{Name: r.name, Running: true, Container: &live})
		writeFile(t, filepath.Join(vol, f.ids[r.name], "config.yaml"), live)
	}
	f.write(t, "")
	res := f.run(t, "snapshot", "--inventory", "inventory.yaml", "--capture-concurrency", "1", "--json")
	byMethod := map[string]int{}
	for _, c := range f.captures(t) {
		if c.Tenant == "acme" {
			byMethod[c.Method+" "+c.Outcome]++
		}
	}
	if byMethod["file captured"] != 6 || byMethod["files_api failed"] != 1 {
		t.Errorf("acme's captures %v: want all 6 by file after one refused files_api attempt\n%s%s", byMethod, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, "collector left out for the tenant's other workspaces") || !strings.Contains(res.stdout, `"collectors_left_out"`) {
		t.Errorf("no word that acme's files_api was left out: %s%s", res.stdout, res.stderr)
	}
	// solo has no other collector: stopped, named, exit 3.
	if res.code != 3 || !strings.Contains(res.stdout, `"tenant": "solo"`) || !strings.Contains(res.stdout, "check the Authorization token") {
		t.Errorf("solo not stopped: %d\n%s", res.code, res.stdout)
	}
}

// Found by review: with the files API refusing an expired token and the
// chain's file collector finding nothing (hosted workspaces, whose configs
// only their instances hold), every workspace was recorded gone and
// `--allow-gone` exited 0. A workspace is gone only when no collector of
// its chain failed or was left out; the run names the collector left out.
func TestALeftOutCollectorNeverLetsAWorkspacePassForGone(t *testing.T) {
	_, srv := memoryPlatform(t)
	f := newPlatformFleet(t)
	chain, _ := expiredTokenThenVolume(t, f, srv.URL)
	f.tenant(t, "acme", 1, chain, ws{name: "w0"}, ws{name: "w1"}, ws{name: "w2"})
	f.write(t, "")
	for _, cmd := range [][]string{{"snapshot", "--inventory", "inventory.yaml", "--allow-gone", "--json", "--capture-concurrency", "1"},
		{"audit", "--inventory", "inventory.yaml", "--allow-gone", "--json", "--capture-concurrency", "1"}} {
		res := f.run(t, cmd...)
		var doc struct {
			Gone    int `json:"gone"`
			LeftOut []struct {
				Tenant, Method, Reason string
			} `json:"collectors_left_out"`
		}
		if err := json.Unmarshal([]byte(res.stdout), &doc); err != nil || res.code != 3 || doc.Gone != 0 || len(doc.LeftOut) != 1 ||
			doc.LeftOut[0].Method != "files_api" || !strings.Contains(doc.LeftOut[0].Reason, "check the Authorization token") {
			t.Errorf("%s: %d %v %+v\n%s%s", cmd[0], res.code, err, doc, res.stdout, res.stderr)
		}
	}
	for _, c := range f.captures(t) {
		if c.Outcome == "gone" {
			t.Errorf("%s/%s by %s recorded gone: %s", c.Tenant, c.WorkspaceID, c.Method, c.Reason)
		}
		if c.Method == "file" && !strings.Contains(c.Reason, "not taken as gone: files_api") {
			t.Errorf("%s by file: %s", c.WorkspaceID, c.Reason)
		}
	}
}

// memoryPlatform serves a files API simulation on loopback for the fleet's
// org and token.
func memoryPlatform(t *testing.T) (*filesapi.MemoryPlatform, *httptest.Server) {
	p := &filesapi.MemoryPlatform{Org: filesOrg, Token: filesToken}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return p, srv
}

// expiredTokenThenVolume is a chain of the files API at url with an
// expired token, then a file collector over an empty volume directory it
// returns.
func expiredTokenThenVolume(t *testing.T, f *platformFleet, url string) (chain, vol string) {
	f.env["FILES_TOKEN"] = "tok-expired-0000000"
	vol = filepath.Join(f.dir, "vol")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("    collectors:\n      - files_api: {base_url: %q, headers: {Authorization: \"Bearer ${FILES_TOKEN}\", X-Molecule-Org-Id: \"${FILES_ORG}\"}}\n      - file: {path: \"%s/{workspace_id}/config.yaml\", root: %q}\n",
		url, vol, vol), vol
}
