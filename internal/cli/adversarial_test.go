package cli

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/apply/plan"
	"backfill/internal/filesapi"
	"backfill/internal/fixture"
	"backfill/internal/pgtest"
)

// How an adversarial case is served to snapshot. Each is one tenant, since a
// tenant has one collector.
const (
	viaHTTP = "web"       // files API over HTTP on loopback, JSON field "content"
	viaExec = "shell"     // exec of a script, one behaviour per instance id
	viaHang = "shellhang" // the same script, snapshotted alone with a short timeout
	viaFile = "disk"      // file collector
)

// Behaviours of the HTTP server and the exec script beyond serving a file.
const (
	behStream   = "stream"   // 100 MiB, streamed
	behNoField  = "nofield"  // HTTP 200 whose JSON has no content field
	behRedirect = "redirect" // HTTP 302 to another host
	behStderr   = "stderr"   // exec: stderr only, exit 1
	behHang     = "hang"     // exec: ignores SIGTERM, never exits
)

const hundredMiB = 100 << 20

// advCase is one hostile live config or collector behaviour and the outcome
// snapshot and plan must give it.
type advCase struct {
	name     string
	via      string
	content  string // the live config.yaml served, when behave is ""
	behave   string // a behaviour instead of serving content
	outcome  string // capture outcome
	reason   string // fragment of the capture's reason (failed)
	verdict  plan.Verdict
	planWhy  string // fragment of the plan item's reason
	set      string // agree: the value written
	promptly bool   // parsing it must not take long
}

// adversarialCases is the corpus. Most hostile configs carry `name: SEO
// Agent`, so a lenient reading would turn them into a write: unknown-template
// shows the strict reading won.
func adversarialCases() []advCase {
	bomb := "name: SEO Agent\nskills: [keyword-research]\na0: &a0 [lol]\n"
	for i := 1; i < 10; i++ {
		prev := fmt.Sprintf("*a%d", i-1)
		bomb += fmt.Sprintf("a%d: &a%d [%s%s]\n", i, i, strings.Repeat(prev+", ", 9), prev)
	}
	deep := "name: SEO Agent\nskills: " + strings.Repeat("[", 10000) + strings.Repeat("]", 10000) + "\n"
	// A gzip header, NULs and bytes that are not UTF-8: a config.yaml that
	// some tool replaced with an archive.
	binary := "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03name: SEO Agent\x00\xff\xfe\xc3\x28\x00\x80\x81"
	latin1 := strings.Replace(seoConfig, "version: 1.4.0\n", "version: 1.4.0\n# r\xe9sum\xe9 drafts, saved as Latin-1\n", 1)
	bomCRLF := "\xEF\xBB\xBF" + strings.ReplaceAll(seoConfig, "\n", "\r\n")
	oddCase := "name: Keyword Bot\ntemplate: \"  SEO-Agent  \"\nruntime: claude-code\nskills:\n  - keyword-research\n"
	lookalike := strings.Replace(seoConfig, "name: SEO Agent", "name: SEO Ag\u0435nt", 1) // Cyrillic е
	dupKeys := "name: Keyword Bot\ntemplate: platform-agent\nruntime: claude-code\ntemplate: seo-agent\n"
	list := "- name: SEO Agent\n  template: seo-agent\n"

	unknown := plan.UnknownTemplate
	noEv := plan.NoEvidence
	// plan names the failed capture a workspace without evidence ended on.
	const noCapture = "no live evidence: capture "
	return []advCase{
		{name: "yaml-alias-bomb", via: viaHTTP, content: bomb, outcome: "captured",
			verdict: unknown, planWhy: "aliases expanded", promptly: true},
		{name: "nested-10000-deep", via: viaFile, content: deep, outcome: "captured",
			verdict: unknown, planWhy: "nested more than 100 levels deep", promptly: true},
		{name: "100mib-over-http", via: viaHTTP, behave: behStream, outcome: "failed", reason: "too large",
			verdict: noEv, planWhy: noCapture},
		{name: "100mib-from-exec", via: viaExec, behave: behStream, outcome: "failed", reason: "too large",
			verdict: noEv, planWhy: noCapture},
		{name: "100mib-file", via: viaFile, behave: behStream, outcome: "failed", reason: "too large",
			verdict: noEv, planWhy: noCapture},
		// NUL bytes: no YAML file holds one, a process's environment does;
		// never kept.
		{name: "binary", via: viaFile, content: binary, outcome: "failed", reason: "holds a NUL byte",
			verdict: noEv, planWhy: noCapture},
		{name: "invalid-utf8", via: viaExec, content: latin1, outcome: "captured",
			verdict: unknown, planWhy: "not valid UTF-8"},
		{name: "bom-and-crlf", via: viaHTTP, content: bomCRLF, outcome: "captured",
			verdict: plan.Agree, planWhy: "both name seo-agent", set: "seo-agent"},
		{name: "duplicate-keys", via: viaExec, content: dupKeys, outcome: "captured",
			verdict: unknown, planWhy: `mapping key "template" already defined`},
		{name: "template-odd-case-and-spaces", via: viaFile, content: oddCase, outcome: "captured",
			verdict: plan.Agree, planWhy: "both name seo-agent", set: "seo-agent"},
		{name: "lookalike-display-name", via: viaHTTP, content: lookalike, outcome: "captured",
			verdict: unknown, planWhy: "matches no template's display name"},
		{name: "empty-file", via: viaFile, content: "", outcome: "captured",
			verdict: unknown, planWhy: "empty file"},
		{name: "yaml-list", via: viaExec, content: list, outcome: "captured",
			verdict: unknown, planWhy: "a sequence, not a mapping"},
		{name: "json-without-content", via: viaHTTP, behave: behNoField, outcome: "failed", reason: `JSON body has no field "content"`,
			verdict: noEv, planWhy: noCapture},
		{name: "redirect-to-other-host", via: viaHTTP, behave: behRedirect, outcome: "failed", reason: "redirect not followed",
			verdict: noEv, planWhy: noCapture},
		{name: "stderr-only-exit-1", via: viaExec, behave: behStderr, outcome: "failed",
			reason:  "exit code 1: Error response from daemon: container is restarting",
			verdict: noEv, planWhy: noCapture},
		{name: "never-exits-ignores-sigterm", via: viaHang, behave: behHang, outcome: "failed", reason: "timeout after 500ms",
			verdict: noEv, planWhy: noCapture},
	}
}

// advFleet is the corpus laid out as tenants, their databases and their
// live configs, with the servers that observe what the collectors do.
type advFleet struct {
	dir, evidence string
	inventory     string // every tenant, for plan and apply
	mainInventory string // every tenant but the hanging one
	hangInventory string // the hanging exec tenant alone
	cp, catalog   string
	env           map[string]string
	dsns          map[string]string // tenant -> DSN
	ids           map[string]string // case -> workspace id

	streamDone    chan struct{} // closed when the 100 MiB handler returns
	streamOnce    sync.Once
	streamWritten atomic.Int64 // bytes it wrote before the client hung up
	requests      sync.Map     // case -> *atomic.Int64, requests the files API got
	otherHost     atomic.Int64 // requests the redirect target got
}

const advToken = "tok-adversarial-51e0"

func newAdvFleet(t *testing.T, cases []advCase) *advFleet {
	t.Helper()
	f := &advFleet{dir: t.TempDir(), env: map[string]string{"USER": "alice", "WEB_TOKEN": advToken},
		dsns: map[string]string{}, ids: map[string]string{}, streamDone: make(chan struct{})}
	f.evidence = filepath.Join(f.dir, "evidence.db")
	f.catalog = fixture.CatalogDir(t)
	webRoot := filepath.Join(f.dir, "web")
	execRoot := filepath.Join(f.dir, "exec")
	fileRoot := filepath.Join(f.dir, "disk")

	byTenant := map[string][]ws{}
	byID := map[string]advCase{}
	tenants := []string{viaHTTP, viaExec, viaHang, viaFile}
	for i, c := range cases {
		ti := 1 + slices.Index(tenants, c.via)
		id := uuidFor(ti, i+1)
		f.ids[c.name] = id
		byID[id] = c
		// The case name is also the instance id the exec script dispatches on.
		byTenant[c.via] = append(byTenant[c.via], ws{id: id, name: c.name, runtime: "claude-code", instance: c.name})
		f.requests.Store(c.name, new(atomic.Int64))
		switch {
		case c.behave == "" && c.via == viaHTTP:
			if err := filesapi.WriteConfig(webRoot, id, []byte(c.content)); err != nil {
				t.Fatal(err)
			}
		case c.behave == "" && (c.via == viaExec || c.via == viaHang):
			writeFile(t, filepath.Join(execRoot, c.name+".yaml"), c.content)
		case c.behave == "" && c.via == viaFile:
			writeFile(t, filepath.Join(fileRoot, id, "config.yaml"), c.content)
		case c.behave == behStream && c.via == viaFile:
			// Sparse: 100 MiB to the file system, no disk.
			p := writeFile(t, filepath.Join(fileRoot, id, "config.yaml"), "")
			if err := os.Truncate(p, hundredMiB); err != nil {
				t.Fatal(err)
			}
		}
	}

	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.otherHost.Add(1)
		io.WriteString(w, `{"content": "name: SEO Agent\n"}`)
	}))
	t.Cleanup(other.Close)
	files := &filesapi.Server{Root: webRoot, Token: advToken}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /configs/{id}/config.yaml", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		c := byID[id]
		if n, ok := f.requests.Load(c.name); ok {
			n.(*atomic.Int64).Add(1)
		}
		switch c.behave {
		case behStream:
			f.stream(w, r)
		case behNoField:
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"path": "/configs/config.yaml", "size": 15, "contents": "name: SEO Agent"}`)
		case behRedirect:
			http.Redirect(w, r, other.URL+r.URL.RequestURI(), http.StatusFound)
		default:
			files.ServeHTTP(w, r)
		}
	})
	web := httptest.NewServer(mux)
	t.Cleanup(web.Close)

	script := writeFile(t, filepath.Join(f.dir, "collect.sh"), fmt.Sprintf(`#!/bin/sh
# $1 is the workspace's instance id, which names the case.
dir=%q
case "$1" in
  100mib-from-exec) exec head -c %d /dev/zero ;;
  stderr-only-exit-1)
    echo run >> "$dir/stderr-runs"
    echo "Error response from daemon: container is restarting, wait until the container is running" >&2
    exit 1 ;;
  never-exits-ignores-sigterm)
    echo $$ > "$dir/hang.pid"
    trap '' TERM
    exec sleep 3600 ;;
  *) exec cat "$dir/exec/$1.yaml" ;;
esac
`, f.dir, hundredMiB))
	if err := os.Chmod(script, 0o755); err != nil {
		t.Fatal(err)
	}

	collectors := map[string]string{
		viaHTTP: fmt.Sprintf("    collector:\n      http:\n        url: %q\n        headers: {Authorization: \"Bearer ${WEB_TOKEN}\"}\n        json_field: content\n",
			web.URL+"/configs/{workspace_id}/config.yaml"),
		viaExec: fmt.Sprintf("    collector:\n      exec: [%q, \"{instance_id}\"]\n", script),
		viaHang: fmt.Sprintf("    collector:\n      exec: [%q, \"{instance_id}\"]\n", script),
		viaFile: fmt.Sprintf("    collector:\n      file: \"%s/{workspace_id}/config.yaml\"\n", fileRoot),
	}
	var all, others, hang, cp strings.Builder
	cp.WriteString("tenant,workspace_id,template\n")
	for _, tn := range tenants {
		dsn := pgtest.NewTenantDB(t)
		f.dsns[tn] = dsn
		insertRows(t, dsn, byTenant[tn]...)
		entry := fmt.Sprintf("  - name: %s\n    dsn: %q\n%s", tn, dsn, collectors[tn])
		all.WriteString(entry)
		if tn == viaHang {
			hang.WriteString(entry)
		} else {
			others.WriteString(entry)
		}
		fmt.Fprintf(&cp, "%s,,seo-agent\n", tn)
	}
	f.inventory = writeFile(t, filepath.Join(f.dir, "inventory.yaml"), "version: 1\ntenants:\n"+all.String())
	f.mainInventory = writeFile(t, filepath.Join(f.dir, "inventory-main.yaml"), "version: 1\ntenants:\n"+others.String())
	f.hangInventory = writeFile(t, filepath.Join(f.dir, "inventory-hang.yaml"), "version: 1\ntenants:\n"+hang.String())
	f.cp = writeFile(t, filepath.Join(f.dir, "cp.csv"), cp.String())
	return f
}

// stream answers with a JSON body 100 MiB long, stopping at the first write
// that fails because the client hung up, and records how much it wrote.
func (f *advFleet) stream(w http.ResponseWriter, r *http.Request) {
	defer f.streamOnce.Do(func() { close(f.streamDone) })
	w.Header().Set("Content-Type", "application/json")
	chunk := bytes.Repeat([]byte("a"), 32<<10)
	n, err := io.WriteString(w, `{"path": "/configs/config.yaml", "content": "`)
	written := int64(n)
	for err == nil && written < hundredMiB && r.Context().Err() == nil {
		n, err = w.Write(chunk)
		written += int64(n)
	}
	if err == nil && r.Context().Err() == nil {
		io.WriteString(w, `"}`)
	}
	f.streamWritten.Store(written)
}

// advCapture is the newest capture record of a workspace, read straight from
// the evidence store.
type advCapture struct {
	attempt          int
	outcome, reason  string
	size             int64
	content          []byte // nil when the capture has none
	started, ended   time.Time
	provenance       map[string]string
	hasContentRecord bool
}

func advReadCapture(t *testing.T, db *sql.DB, id string) advCapture {
	t.Helper()
	var c advCapture
	var digest sql.NullString
	var started, ended, prov string
	err := db.QueryRow(`SELECT attempt, outcome, reason, sha256, size, started_at, ended_at, provenance
  FROM captures WHERE workspace_id = ? ORDER BY id DESC LIMIT 1`, id).
		Scan(&c.attempt, &c.outcome, &c.reason, &digest, &c.size, &started, &ended, &prov)
	if err != nil {
		t.Fatalf("capture of %s: %v", id, err)
	}
	for _, p := range []struct {
		s  string
		to *time.Time
	}{{started, &c.started}, {ended, &c.ended}} {
		if *p.to, err = time.Parse(time.RFC3339Nano, p.s); err != nil {
			t.Fatal(err)
		}
	}
	if err := json.Unmarshal([]byte(prov), &c.provenance); err != nil {
		t.Fatal(err)
	}
	if digest.Valid {
		c.hasContentRecord = true
		if err := db.QueryRow(`SELECT bytes FROM content WHERE sha256 = ?`, digest.String).Scan(&c.content); err != nil {
			t.Fatal(err)
		}
		if digest.String != sha(string(c.content)) {
			t.Fatalf("capture of %s: stored bytes do not hash to its sha256", id)
		}
	}
	return c
}

// advDBTemplates reads every workspace's template in a tenant database.
func advDBTemplates(t *testing.T, dsn string) map[string]string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id::text, template FROM workspaces`)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rows.Next() {
		var id, tmpl string
		if err := rows.Scan(&id, &tmpl); err != nil {
			t.Fatal(err)
		}
		out[id] = tmpl
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAdversarialCorpusEndToEnd serves hostile live configs and collector
// behaviours to real snapshot runs, plans over what was captured, applies
// the plan, and checks each case got its outcome, and that the evidence
// store still verifies.
func TestAdversarialCorpusEndToEnd(t *testing.T) {
	t.Parallel()
	cases := adversarialCases()
	f := newAdvFleet(t, cases)

	// Everything but the hanging command, with the default timeout and
	// retries, so transient failures are retried.
	res := run(t, f.env, "--evidence", f.evidence, "snapshot", "--inventory", f.mainInventory, "--retries", "2")
	if res.code != 3 {
		t.Fatalf("snapshot exit %d, want 3 (some captures fail)\nstdout:\n%s\nstderr:\n%s", res.code, res.stdout, res.stderr)
	}
	// The hanging command alone, as an operator would against a stuck host.
	hang := run(t, f.env, "--evidence", f.evidence, "snapshot", "--inventory", f.hangInventory, "--timeout", "500ms", "--retries", "0")
	if hang.code != 3 || !strings.Contains(hang.stdout, "timeout after 500ms") {
		t.Fatalf("snapshot of the hanging command: exit %d\n%s\n%s", hang.code, hang.stdout, hang.stderr)
	}

	select {
	case <-f.streamDone:
	case <-time.After(30 * time.Second):
		t.Fatal("the 100 MiB handler is still writing: the client never hung up")
	}

	start := time.Now()
	pl := runAt(t, f.env, "--evidence", f.evidence, "plan", "--inventory", f.inventory, "--cp", f.cp,
		"--catalog", f.catalog, "--out", filepath.Join(f.dir, "plan.json"))
	planTime := time.Since(start)
	if pl.code != 0 {
		t.Fatalf("plan exit %d\n%s\n%s", pl.code, pl.stdout, pl.stderr)
	}
	p, err := plan.LoadPlan(filepath.Join(f.dir, "plan.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != len(cases) {
		t.Errorf("plan has %d items for %d workspaces", len(p.Items), len(cases))
	}
	items := map[string]plan.Item{}
	for _, it := range p.Items {
		items[it.WorkspaceName] = it
	}

	db, err := sql.Open("sqlite", "file:"+f.evidence+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	exported := exportJSON(t, &fleet{evidence: f.evidence})

	outcomes := map[string]int{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := f.ids[c.name]
			key := c.via + "/" + id
			rec, ok := exported[key]
			if !ok {
				t.Fatalf("export has no record of %s", key)
			}
			if rec.LatestOutcome != c.outcome || !strings.Contains(rec.LatestReason, c.reason) {
				t.Errorf("capture: %s %q, want %s with %q", rec.LatestOutcome, rec.LatestReason, c.outcome, c.reason)
			}
			got := advReadCapture(t, db, id)
			if got.outcome != rec.LatestOutcome || got.reason != rec.LatestReason {
				t.Errorf("the store's newest capture (%s %q) is not what export reports", got.outcome, got.reason)
			}
			switch c.outcome {
			case "captured":
				// Stored exactly as read, whatever the bytes are.
				if !got.hasContentRecord || !bytes.Equal(got.content, []byte(c.content)) || got.size != int64(len(c.content)) {
					t.Errorf("stored %d bytes %q, want the %d bytes served", got.size, advHead(got.content), len(c.content))
				}
				if rec.EarliestSHA256 != sha(c.content) {
					t.Errorf("export's earliest sha256 %s is not the served bytes'", rec.EarliestSHA256)
				}
			default:
				if got.hasContentRecord || got.size != 0 || rec.EarliestSHA256 != "" {
					t.Errorf("a %s capture kept content: %d bytes", c.outcome, got.size)
				}
			}
			if c.promptly {
				if d := got.ended.Sub(got.started); d > 5*time.Second { // half the 10s default timeout
					t.Errorf("capture took %v", d)
				}
			}
			f.checkBehaviour(t, c, got)

			it, ok := items[c.name]
			if !ok {
				t.Fatalf("plan has no item for %s", c.name)
			}
			outcomes[rec.LatestOutcome+", "+string(it.Verdict)]++
			if it.Verdict != c.verdict || !strings.Contains(it.Reason, c.planWhy) {
				t.Errorf("plan: %s %q, want %s with %q", it.Verdict, it.Reason, c.verdict, c.planWhy)
			}
			switch {
			case c.set != "" && (it.Action == nil || it.Action.SetTemplate != c.set):
				t.Errorf("plan action %+v, want set_template %q", it.Action, c.set)
			case c.set == "" && it.Action != nil:
				t.Errorf("plan asks for a write: %+v", it.Action)
			}
		})
	}
	// Parsing the alias bomb and the deep document happens here; a plan of
	// a few workspaces taking long would mean one of them blew up.
	if planTime > 30*time.Second {
		t.Errorf("plan took %v", planTime)
	}

	// Only the agreed rows are written, with the catalog's canonical name.
	if res := runAt(t, f.env, "--evidence", f.evidence, "approve", filepath.Join(f.dir, "plan.json"), "--cp", f.cp, "--catalog", f.catalog, "--by", "bob"); res.code != 0 {
		t.Fatalf("approve: %d %s", res.code, res.stderr)
	}
	ap := runAt(t, f.env, "--evidence", f.evidence, "apply", "--inventory", f.inventory, "--plan", filepath.Join(f.dir, "plan.json"), "--execute")
	if ap.code != 0 {
		t.Fatalf("apply exit %d\n%s\n%s", ap.code, ap.stdout, ap.stderr)
	}
	for _, c := range cases {
		if got := advDBTemplates(t, f.dsns[c.via])[f.ids[c.name]]; got != c.set {
			t.Errorf("%s: template %q in the database after apply, want %q", c.name, got, c.set)
		}
	}

	v := run(t, nil, "--evidence", f.evidence, "verify")
	if v.code != 0 || !strings.Contains(v.stdout, "verify ok") {
		t.Fatalf("verify after the corpus: %d\n%s\n%s", v.code, v.stdout, v.stderr)
	}
	t.Logf("%d adversarial cases (plan in %v): %v", len(cases), planTime.Round(time.Millisecond), outcomes)
}

// checkBehaviour checks what the servers, the script and the process table
// saw, for cases about how a collector behaves.
func (f *advFleet) checkBehaviour(t *testing.T, c advCase, got advCapture) {
	t.Helper()
	requests := func() int64 {
		n, _ := f.requests.Load(c.name)
		return n.(*atomic.Int64).Load()
	}
	switch {
	case c.via == viaHTTP && c.behave == behStream:
		// The client stops at its cap (a few MiB of JSON for a 1 MiB
		// config) and hangs up; the server gets no further than the cap
		// plus what the sockets buffer, about 10 MiB here. Half of 100 MiB
		// leaves room for hosts with larger socket buffers.
		if w := f.streamWritten.Load(); w >= hundredMiB/2 {
			t.Errorf("the server wrote %d bytes before the client hung up", w)
		} else {
			t.Logf("the server wrote %.1f MiB of 100 MiB before the client hung up", float64(w)/(1<<20))
		}
		if n := requests(); n != 1 {
			t.Errorf("%d requests; too large is not retried", n)
		}
	case c.via == viaExec && c.behave == behStream:
		// Ended by a signal while still writing (SIGKILL from the
		// collector, or SIGPIPE once it stopped reading): cut off at the
		// cap, never run to the end.
		if sig := got.provenance["signal"]; sig != syscall.SIGKILL.String() && sig != syscall.SIGPIPE.String() {
			t.Errorf("provenance %v: the command was not cut off at the cap", got.provenance)
		}
	case c.behave == behRedirect:
		if n := f.otherHost.Load(); n != 0 {
			t.Errorf("the redirect target got %d requests", n)
		}
		if n := requests(); n != 1 {
			t.Errorf("%d requests; a redirect is not retried", n)
		}
	case c.behave == behNoField:
		if n := requests(); n != 1 {
			t.Errorf("%d requests; a malformed answer is not retried", n)
		}
	case c.behave == behStderr:
		runs, err := os.ReadFile(filepath.Join(f.dir, "stderr-runs"))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(runs), "run\n"); n != 3 || got.attempt != 3 {
			t.Errorf("ran %d times, recorded attempt %d; want 3 (transient, retried twice)", n, got.attempt)
		}
		if got.provenance["exit_code"] != "1" || !strings.Contains(got.provenance["stderr_head"], "container is restarting") {
			t.Errorf("provenance %v", got.provenance)
		}
	case c.behave == behHang:
		if d := got.ended.Sub(got.started); d < 500*time.Millisecond || d > 2*time.Second {
			t.Errorf("the attempt lasted %v, want about the 500ms timeout", d)
		}
		b, err := os.ReadFile(filepath.Join(f.dir, "hang.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		// Reaped, not merely signalled: a zombie would still answer.
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("process %d that ignored SIGTERM is still there (kill 0: %v)", pid, err)
		}
	}
}

// advHead shows the start of possibly binary bytes in a failure message.
func advHead(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
