package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"backfill/apply/plan"
	"backfill/internal/evidence"
	"backfill/internal/fixture"
	"backfill/internal/pgtest"
	"backfill/internal/tenantdb"
	"backfill/internal/workspace"
)

var update = flag.Bool("update", false, "rewrite golden files")

// planClock is the fixed time every plan test runs at.
var planClock = time.Date(2026, 11, 27, 15, 0, 0, 0, time.UTC)

func runAt(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	code := Run(context.Background(), append([]string{"backfill"}, args...), Env{
		Stdout: &out, Stderr: &errb,
		LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok },
		Now:       func() time.Time { return planClock },
	})
	return result{code, out.String(), errb.String()}
}

// planFixture is a fleet in real PostgreSQL with evidence written with fixed
// times, so that its plan is byte-for-byte reproducible. Each workspace is
// built to reach one verdict.
type planFixture struct {
	dir      string
	env      map[string]string
	want     map[string]plan.Verdict // workspace name -> verdict
	dsns     map[string]string       // tenant -> DSN
	ids      map[string]string       // workspace name -> id
	clusters map[string]*pgtest.Cluster
}

// writeCatalog writes the fixture catalog into dst.
func writeCatalog(t *testing.T, dst string) {
	t.Helper()
	if err := fixture.WriteCatalog(dst); err != nil {
		t.Fatal(err)
	}
}

func readLive(t *testing.T, name string) string {
	t.Helper()
	return string(fixture.Live(name))
}

// newPlanFixture builds the fleet; tenants named in separate get a cluster
// of their own, so that a test can stop one tenant's server.
func newPlanFixture(t *testing.T, separate ...string) *planFixture {
	t.Helper()
	seo := readLive(t, "custom-seo-agent.yaml")
	restarted := readLive(t, "runtime-default-after-restart.yaml")
	stubSEO := readLive(t, "stub-named-like-a-template.yaml")
	// The platform-agent template as a concierge runs it, with a user's edit.
	concierge := "name: Org Concierge\ndescription: routes requests\nversion: 2.1.0\ntier: 3\nruntime: claude-code\nruntime_config:\n  model: sonnet\n  timeout: 0\nprompt_files:\n  - prompts/concierge.md\nplugins:\n  - molecule-hitl\ntemplate_schema_version: 1\n"
	unknown := "name: Research\ntemplate: research-agent\nruntime: claude-code\n"

	f := &planFixture{dir: t.TempDir(), env: map[string]string{"USER": "alice"}, want: map[string]plan.Verdict{},
		dsns: map[string]string{}, ids: map[string]string{}, clusters: map[string]*pgtest.Cluster{}}
	writeCatalog(t, filepath.Join(f.dir, "catalog"))

	type wsSpec struct {
		name, runtime, kind, dbNow, status string // the row as it is now ("gone": deleted)
		captures                           []string
		verdict                            plan.Verdict
	}
	tenants := []struct {
		name string
		ws   []wsSpec
	}{
		{"acme", []wsSpec{
			{name: "removed-since", status: "removed", captures: []string{seo}, verdict: plan.Removed},
			{name: "deleted-since", status: "gone", captures: []string{seo}, verdict: plan.Removed},
			{name: "set-matching", dbNow: "seo-agent", captures: []string{seo}, verdict: plan.AlreadySet},
			{name: "set-drift", dbNow: "platform-agent", captures: []string{seo}, verdict: plan.AlreadySet},
			{name: "never-captured", verdict: plan.NoEvidence},
			{name: "SEO Agent", captures: []string{stubSEO}, verdict: plan.StubEvidence},
			{name: "research", captures: []string{unknown}, verdict: plan.UnknownTemplate},
			{name: "hermes-box", runtime: "hermes", captures: []string{seo}, verdict: plan.RuntimeMismatch},
			{name: "flip-flop", captures: []string{seo, concierge}, verdict: plan.UnstableEvidence},
			{name: "plain-default", captures: []string{restarted}, verdict: plan.Default},
			{name: "two-claims", captures: []string{seo}, verdict: plan.CPAmbiguous},
			{name: "claimed-other", captures: []string{seo}, verdict: plan.Conflict},
			{name: "seo-1", captures: []string{seo}, verdict: plan.Agree},
			{name: "seo-2-restarted", captures: []string{seo, restarted}, verdict: plan.Agree},
		}},
		{"concierge", []wsSpec{
			{name: "org-concierge", kind: "platform", captures: []string{concierge}, verdict: plan.Agree},
		}},
		{"nocp", []wsSpec{
			{name: "orphan", captures: []string{seo}, verdict: plan.CPMissing},
		}},
	}

	store, err := evidence.Open(context.Background(), filepath.Join(f.dir, "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	at := time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)
	var inv, cpCSV strings.Builder
	inv.WriteString("version: 1\ndefaults:\n  collector:\n    exec: [\"docker\", \"exec\", \"{instance_id}\", \"cat\", \"/configs/config.yaml\"]\ntenants:\n")
	cpCSV.WriteString("tenant,workspace_id,template\nacme,,seo-agent\nconcierge,,platform-agent\nghost,,seo-agent\n")
	var recs []evidence.Record
	for ti, tn := range tenants {
		dsn := ""
		if slices.Contains(separate, tn.name) {
			cl, err := pgtest.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(cl.Close)
			if dsn, err = cl.CreateDB(context.Background(), tn.name, true); err != nil {
				t.Fatal(err)
			}
			f.clusters[tn.name] = cl
		} else {
			dsn = pgtest.NewTenantDB(t)
		}
		f.dsns[tn.name] = dsn
		countWrites(t, dsn)
		envName := strings.ToUpper(tn.name) + "_DSN"
		f.env[envName] = dsn
		fmt.Fprintf(&inv, "  - name: %s\n    dsn: \"${%s}\"\n", tn.name, envName)
		var listed []workspace.Row
		var rows []ws
		for i, s := range tn.ws {
			id := uuidFor(ti+1, i+1)
			f.want[s.name] = s.verdict
			f.ids[s.name] = id
			r := workspace.Row{ID: id, Name: s.name, Runtime: "claude-code", Status: "online", Kind: "workspace", UpdatedAt: at}
			if s.runtime != "" {
				r.Runtime = s.runtime
			}
			if s.kind != "" {
				r.Kind = s.kind
			}
			instance := ""
			if r.Kind == "platform" {
				// A hosted workspace: the control plane keeps its container's name.
				instance = "mol-ws-concierge-1a2b"
				r.InstanceID = &instance
			}
			listed = append(listed, r)
			status := s.status
			if status != "gone" {
				rows = append(rows, ws{id: id, name: s.name, runtime: r.Runtime, template: s.dbNow, status: status, kind: r.Kind, instance: instance})
			}
			for _, content := range s.captures {
				at = at.Add(time.Second)
				recs = append(recs, &evidence.Capture{Tenant: tn.name, WorkspaceID: id, Row: r, Method: "exec",
					Target: "exec: docker exec ws cat /configs/config.yaml", StartedAt: at, EndedAt: at.Add(time.Millisecond),
					Attempt: 1, Outcome: evidence.Captured, Content: []byte(content), Provenance: map[string]string{"exit_code": "0"}})
			}
			if len(s.captures) == 0 {
				at = at.Add(time.Second)
				recs = append(recs, &evidence.Capture{Tenant: tn.name, WorkspaceID: id, Row: r, Method: "exec",
					Target: "exec: docker exec ws cat /configs/config.yaml", StartedAt: at, EndedAt: at, Attempt: 3,
					Outcome: evidence.Failed, Reason: "timeout after 10s", Provenance: map[string]string{}})
			}
			switch s.name {
			case "two-claims":
				fmt.Fprintf(&cpCSV, "acme,%s,seo-agent\nacme,%s,platform-agent\n", id, id)
			case "claimed-other":
				fmt.Fprintf(&cpCSV, "acme,%s,platform-agent\n", id)
			}
		}
		recs = append([]evidence.Record{&evidence.Listing{Tenant: tn.name, At: at, Outcome: evidence.Listed, Rows: listed}}, recs...)
		insertRows(t, dsn, rows...)
	}
	if err := store.Append(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.dir, "inventory.yaml"), inv.String())
	writeFile(t, filepath.Join(f.dir, "cp.csv"), cpCSV.String())
	return f
}

func (f *planFixture) plan(t *testing.T, extra ...string) result {
	t.Helper()
	t.Chdir(f.dir)
	return runAt(t, f.env, append([]string{"plan", "--inventory", "inventory.yaml", "--cp", "cp.csv", "--catalog", "catalog",
		"--out", "plan.json", "--report", "report.md"}, extra...)...)
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join(goldenDir, name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/cli -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; diff with: go test ./internal/cli -run %s -update && git diff %s\n--- got ---\n%s",
			name, t.Name(), path, got)
	}
}

// goldenPlan compares the plan written with the one golden plan, which
// apply/plan's format tests read too (internal/fixture).
func goldenPlan(t *testing.T, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(fixture.PlanSource(plan.FormatVersion), got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if want := fixture.Plan(plan.FormatVersion); !bytes.Equal(got, want) {
		t.Errorf("the plan differs from the golden plan; diff with: go test ./internal/cli -run %s -update && git diff %s\n--- got ---\n%s",
			t.Name(), fixture.PlanSource(plan.FormatVersion), got)
	}
}

var goldenDir, _ = filepath.Abs(filepath.Join("testdata", "golden"))

// addDownTenant adds a tenant whose database refuses connections, with one
// captured workspace: the plan must give it verdict unreachable.
func (f *planFixture) addDownTenant(t *testing.T) {
	t.Helper()
	inv, err := os.ReadFile(filepath.Join(f.dir, "inventory.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inv = append(inv, "  - name: zz-down\n    dsn: \"postgres://backfill@127.0.0.1:1/x?connect_timeout=2\"\n"...)
	writeFile(t, filepath.Join(f.dir, "inventory.yaml"), string(inv))
	store, err := evidence.OpenExisting(context.Background(), filepath.Join(f.dir, "evidence.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	at := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC)
	id := uuidFor(9, 1)
	r := workspace.Row{ID: id, Name: "down-seo", Runtime: "claude-code", Status: "online", Kind: "workspace", UpdatedAt: at}
	err = store.Append(context.Background(),
		&evidence.Listing{Tenant: "zz-down", At: at, Outcome: evidence.Listed, Rows: []workspace.Row{r}},
		&evidence.Capture{Tenant: "zz-down", WorkspaceID: id, Row: r, Method: "exec", Target: "exec: docker exec ws cat /configs/config.yaml",
			StartedAt: at, EndedAt: at.Add(time.Millisecond), Attempt: 1, Outcome: evidence.Captured,
			Content: []byte(readLive(t, "custom-seo-agent.yaml")), Provenance: map[string]string{"exit_code": "0"}})
	if err != nil {
		t.Fatal(err)
	}
	f.want["down-seo"] = plan.Unreachable
	f.ids["down-seo"] = id
}

// stableDatabases gives a plan's databases fixed values and seals it again,
// so its golden file does not depend on the test cluster; old fingerprint
// occurrences in other files are replaced with the new one by the caller.
func stableDatabases(t *testing.T, b []byte) ([]byte, *plan.Plan) {
	t.Helper()
	p, err := plan.ParsePlan(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Databases {
		if p.Databases[i].Unreachable == "" {
			p.Databases[i].Database = tenantdb.Database{SystemIdentifier: "7000000000000000001", Name: "tenant_" + p.Databases[i].Tenant, OID: 16384, TableOID: 16400}
			p.Databases[i].Target = "/tmp/bfpg:5432/tenant_" + p.Databases[i].Tenant
		}
	}
	p.Seal()
	var out bytes.Buffer
	if err := p.Encode(&out); err != nil {
		t.Fatal(err)
	}
	return out.Bytes(), p
}

func TestPlanGoldenEveryVerdict(t *testing.T) {
	f := newPlanFixture(t)
	f.addDownTenant(t)
	res := f.plan(t, "--report-full", "report-full.md", "--report-csv", "items.csv")
	if res.code != 3 || !strings.Contains(res.stdout, "tenant zz-down unreachable") {
		t.Fatalf("plan exit %d, want 3 naming zz-down\n%s\n%s", res.code, res.stdout, res.stderr)
	}
	if !strings.Contains(res.stderr, `tenant \"ghost\"`) && !strings.Contains(res.stderr, `tenant "ghost"`) {
		t.Errorf("no warning about the CP tenant missing from the inventory:\n%s", res.stderr)
	}
	planBytes, err := os.ReadFile("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	reportBytes, err := os.ReadFile("report.md")
	if err != nil {
		t.Fatal(err)
	}
	stable, sp := stableDatabases(t, planBytes)
	goldenPlan(t, stable)
	orig, _ := plan.ParsePlan(planBytes)
	golden(t, "report.md", bytes.ReplaceAll(reportBytes, []byte(orig.Fingerprint), []byte(sp.Fingerprint)))
	for _, name := range []string{"report-full.md", "items.csv"} {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		golden(t, name, bytes.ReplaceAll(b, []byte(orig.Fingerprint), []byte(sp.Fingerprint)))
	}

	p, err := plan.LoadPlan("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[plan.Verdict]bool{}
	for _, it := range p.Items {
		seen[it.Verdict] = true
		if want, ok := f.want[it.WorkspaceName]; !ok || want != it.Verdict {
			t.Errorf("%s: verdict %s (%s), want %s", it.WorkspaceName, it.Verdict, it.Reason, want)
		}
		if it.WorkspaceName == "set-drift" && !it.Drift {
			t.Errorf("set-drift is not flagged as drift")
		}
	}
	for _, v := range plan.Verdicts {
		if !seen[v] {
			t.Errorf("verdict %s does not appear in the plan", v)
		}
	}
	if len(p.Items) != len(f.want) {
		t.Errorf("%d items, want %d", len(p.Items), len(f.want))
	}

	// Same inputs, same clock: the same bytes, fingerprint included.
	if res := f.plan(t, "--out", "plan2.json", "--report", "report2.md"); res.code != 3 {
		t.Fatalf("second plan: %s", res.stderr)
	}
	again, _ := os.ReadFile("plan2.json")
	if !bytes.Equal(again, planBytes) {
		t.Error("a second plan over the same inputs differs")
	}

	show := runAt(t, nil, "show", "plan.json")
	if show.code != 0 || !strings.Contains(show.stdout, "conflict") || !strings.Contains(show.stdout, "items need a person") {
		t.Errorf("show: %d\n%s%s", show.code, show.stdout, show.stderr)
	}
	sj := runAt(t, nil, "show", "plan.json", "--json")
	var parsed showJSON
	if err := json.Unmarshal([]byte(sj.stdout), &parsed); err != nil || parsed.Fingerprint != p.Fingerprint || parsed.Writes != 3 {
		t.Errorf("show --json: %v %+v", err, parsed)
	}
}

func TestApproveRefusesEditedPlansAndSelfApproval(t *testing.T) {
	f := newPlanFixture(t)
	if res := f.plan(t); res.code != 0 {
		t.Fatalf("plan: %s", res.stderr)
	}
	orig, err := os.ReadFile("plan.json")
	if err != nil {
		t.Fatal(err)
	}
	// Every byte of one agree item, changed in turn.
	start := bytes.Index(orig, []byte(`"workspace_name": "seo-1"`))
	begin := bytes.LastIndex(orig[:start], []byte("    {\n"))
	end := begin + bytes.Index(orig[begin:], []byte("\n    }"))
	if start < 0 || begin < 0 || end <= begin {
		t.Fatal("cannot find the seo-1 item in the plan")
	}
	for i := begin; i < end; i++ {
		edited := bytes.Clone(orig)
		edited[i] ^= 0x01
		if _, err := plan.ParsePlan(edited); err == nil {
			t.Fatalf("byte %d (%q -> %q) edited, and the plan still loads", i, orig[i], edited[i])
		}
	}
	// And through the CLI, for a plausible edit: another template.
	edited := bytes.Replace(orig, []byte(`"set_template": "seo-agent"`), []byte(`"set_template": "platform-agent"`), 1)
	os.WriteFile("edited.json", edited, 0o644)
	res := runAt(t, nil, "approve", "edited.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob")
	if res.code != 1 || !strings.Contains(res.stderr, "edited") {
		t.Fatalf("approve of an edited plan: %d %s", res.code, res.stderr)
	}
	res = runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "alice")
	if res.code != 1 || !strings.Contains(res.stderr, "author") {
		t.Fatalf("self-approval: %d %s", res.code, res.stderr)
	}
	res = runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "bob")
	if res.code != 0 || !strings.Contains(res.stdout, "approved sha256:") {
		t.Fatalf("approve: %d %s %s", res.code, res.stdout, res.stderr)
	}
	res = runAt(t, nil, "approve", "plan.json", "--cp", "cp.csv", "--catalog", "catalog", "--by", "alice", "--allow-self-approval")
	if res.code != 0 {
		t.Fatalf("allowed self-approval: %d %s", res.code, res.stderr)
	}
	store, err := evidence.OpenExisting(context.Background(), "evidence.db")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p, _ := plan.LoadPlan("plan.json")
	as, err := store.Approvals(context.Background(), p.Fingerprint)
	if err != nil || len(as) != 2 || as[0].By != "bob" || as[1].By != "alice" {
		t.Fatalf("approvals: %+v %v", as, err)
	}
	if v := runAt(t, nil, "verify"); v.code != 0 {
		t.Fatalf("verify after approvals: %s", v.stdout)
	}
}

// TestPlanOverAStoreThatDoesNotVerifyWritesNothing: the store is verified
// while the plan is made, and items are spooled meanwhile; a store that
// fails verification leaves no plan file, report, CSV, spool or kept plan.
func TestPlanOverAStoreThatDoesNotVerifyWritesNothing(t *testing.T) {
	f := newPlanFixture(t)
	alterContent(t, filepath.Join(f.dir, "evidence.db"))
	before, _ := os.ReadDir(f.dir)
	res := f.plan(t, "--report-full", "report-full.md", "--report-csv", "items.csv")
	if res.code != 1 || !strings.Contains(res.stderr, "does not verify") {
		t.Fatalf("plan over an altered store: exit %d\n%s", res.code, res.stderr)
	}
	after, _ := os.ReadDir(f.dir)
	if len(after) != len(before) {
		t.Errorf("files before: %v, after: %v", before, after)
	}
	if kept := runAt(t, nil, "plans"); !strings.Contains(kept.stdout, "no plans kept") {
		t.Errorf("a plan was kept: %s%s", kept.stdout, kept.stderr)
	}
}
