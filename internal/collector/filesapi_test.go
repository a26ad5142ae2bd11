package collector

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backfill/internal/filesapi"
	"backfill/internal/placeholder"
	"backfill/internal/source"
)

const (
	seoTemplate = "name: SEO Agent\nruntime: claude-code\nskills: [keyword-research]\n"
	orgID       = "org-7c1d9a2e"
	apiToken    = "tok-files-api-51f0"
)

func wsID(n int) string {
	return "0b7c6f1e-3a2d-4c5b-9e8f-" + strings.Repeat("0", 11) + string(rune('0'+n))
}

// platform starts a files API with the platform's shape on loopback.
func platform(t *testing.T, p *filesapi.MemoryPlatform) string {
	t.Helper()
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

func filesAPI(t *testing.T, base string, headers map[string]string) *Collector {
	t.Helper()
	return same(t, Spec{Method: MethodFilesAPI, BaseURL: base, Headers: headers})
}

func goodHeaders() map[string]string {
	return map[string]string{"Authorization": "Bearer " + apiToken, "X-Molecule-Org-Id": orgID}
}

func TestFilesAPIOutcomesBySource(t *testing.T) {
	p := &filesapi.MemoryPlatform{Org: orgID, Token: apiToken, Templates: map[string]*string{
		"seo-agent": filesapi.Ptr(seoTemplate), "empty-folder": nil}}
	live := "name: Custom\nruntime: hermes\n\n"
	cases := []struct {
		name     string
		ws       filesapi.MemoryWorkspace
		outcome  Outcome
		src      string
		content  string
		reason   string
		notFound bool
	}{
		{"running container", filesapi.MemoryWorkspace{Name: "a", Running: true, Container: &live},
			Captured, source.Container, strings.TrimSpace(live), "", false},
		{"ec2 over eic", filesapi.MemoryWorkspace{Name: "a", InstanceID: "i-0abc", EIC: &live},
			Captured, source.EIC, live, "", false},
		{"hibernated with a host mirror", filesapi.MemoryWorkspace{Name: "a", Mirror: &live},
			Captured, source.HostMirror, live, "", false},
		{"container down, name matches a template", filesapi.MemoryWorkspace{Name: "SEO Agent"},
			NotLive, source.TemplateDir, seoTemplate, "template folder", false},
		// Its listing shows no config.yaml: what the read gave is not known
		// to be any file listed (a link the agent restored after the
		// listing reads the same way), so it is not kept.
		{"container running without config.yaml falls through to the template", filesapi.MemoryWorkspace{Name: "seo-agent", Running: true},
			NotLive, source.Container, "", "listing has no config.yaml, so the read answered from a fallback; its bytes are not kept", false},
		{"container down, nothing anywhere", filesapi.MemoryWorkspace{Name: "zzz"},
			NotRunning, source.None, "", "container is not running", false},
		{"template folder without config.yaml", filesapi.MemoryWorkspace{Name: "empty-folder"},
			NotRunning, source.TemplateDir, "", `"file not found"; the listing's source is template-dir`, false},
		// Gone, but not a bare 404: the listing came back.
		{"mirror directory without the file", filesapi.MemoryWorkspace{Name: "a", MirrorDir: true},
			Gone, source.HostMirror, "", "file not found in workspace /configs", false},
		// An EC2 instance lists nothing, and 404s its read, when its sudo
		// fails too: a failure to look into, never gone.
		{"ec2 without the file", filesapi.MemoryWorkspace{Name: "a", InstanceID: "i-0abc"},
			Failed, source.EIC, "", `"file not found on workspace"; the eic listing shows no config.yaml, which is also what it answers when the instance refuses its sudo find`, false},
	}
	base := platform(t, p)
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := wsID(i)
			p.Put(id, tc.ws)
			r := filesAPI(t, base, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: id})
			if r.Outcome != tc.outcome || r.Source != tc.src || !strings.Contains(r.Reason, tc.reason) || r.NotFound != tc.notFound || r.TenantError != "" {
				t.Fatalf("got %s source=%q notFound=%v reason=%q tenant=%q; want %s source=%q reason containing %q",
					r.Outcome, r.Source, r.NotFound, r.Reason, r.TenantError, tc.outcome, tc.src, tc.reason)
			}
			if string(r.Content) != tc.content {
				t.Fatalf("content = %q, want %q", r.Content, tc.content)
			}
			if r.Outcome == Captured || r.Outcome == NotLive {
				if r.Provenance["source"] != tc.src || r.Provenance["list_source"] != tc.src || r.Provenance["relist_source"] != tc.src {
					t.Fatalf("provenance = %v", r.Provenance)
				}
				if r.Provenance["json_size"] != r.Provenance["content_size"] || r.Provenance["listed_size"] == "" {
					t.Fatalf("sizes in provenance = %v", r.Provenance)
				}
			}
		})
	}
	// The container path trims whitespace: the listed size is the file's,
	// the content shorter, and both are recorded.
	id := wsID(0)
	r := filesAPI(t, base, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: id})
	if r.Provenance["listed_size"] != "30" || r.Provenance["content_size"] != "28" {
		t.Fatalf("sizes: %v", r.Provenance)
	}
	if !strings.Contains(r.Target, "/workspaces/"+id+"/files[/config.yaml]?root=/configs (headers: Authorization, X-Molecule-Org-Id)") {
		t.Fatalf("target = %q", r.Target)
	}
}

// A source that changes between the two listings is not live, whatever
// the read gave: the container stopped under the read. Its listings
// disagree on config.yaml's size, so the bytes, not known to be either
// file, are not kept.
func TestFilesAPISourceChangedAroundTheRead(t *testing.T) {
	live := seoTemplate
	id := wsID(1)
	p := &filesapi.MemoryPlatform{Org: orgID, AfterRead: func(s *filesapi.MemoryPlatform, got string) {
		s.Update(got, func(w *filesapi.MemoryWorkspace) { w.Running = false })
	}}
	p.Put(id, filesapi.MemoryWorkspace{Name: "x", Running: true, Container: &live, Mirror: filesapi.Ptr("name: old\n")})
	r := filesAPI(t, platform(t, p), goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: id})
	if r.Outcome != NotLive || r.Source != source.Changed || !strings.Contains(r.Reason, "changed from container to host-mirror") {
		t.Fatalf("got %s %q %q", r.Outcome, r.Source, r.Reason)
	}
	if r.Content != nil || !strings.Contains(r.Reason, "its bytes are not kept") {
		t.Fatalf("bytes kept: %q (%s)", r.Content, r.Reason)
	}
}

// An answer longer than the size listed for config.yaml is another file.
func TestFilesAPIContentLongerThanListed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Molecule-Files-Source", "container")
		if strings.HasSuffix(r.URL.Path, "/files") {
			_, _ = w.Write([]byte(`[{"path":"config.yaml","size":5,"dir":false},{"path":"skills","size":0,"dir":true}]`))
			return
		}
		_, _ = w.Write([]byte(`{"path":"config.yaml","content":"name: longer\n","size":13}`))
	}))
	t.Cleanup(srv.Close)
	r := filesAPI(t, srv.URL, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: wsID(2)})
	if r.Outcome != NotLive || r.Source != source.Container || !strings.Contains(r.Reason, "13 bytes, more than the 5 listed") {
		t.Fatalf("got %s %q %q", r.Outcome, r.Source, r.Reason)
	}
}

// A wrong or missing org header is a misconfigured tenant, never gone; a
// 404 naming the workspace is gone (and marked as resting on a 404).
func TestFilesAPIMisconfiguredIsNotGone(t *testing.T) {
	p := &filesapi.MemoryPlatform{Org: orgID, Token: apiToken}
	live := "name: x\n"
	p.Put(wsID(3), filesapi.MemoryWorkspace{Name: "x", Running: true, Container: &live})
	base := platform(t, p)
	cases := []struct {
		name    string
		headers map[string]string
		id      string
		outcome Outcome
		tenant  string
		reason  string
		body    string
	}{
		{"wrong org", map[string]string{"Authorization": "Bearer " + apiToken, "X-Molecule-Org-Id": "org-someone-else"}, wsID(3),
			Failed, "collector misconfigured: check X-Molecule-Org-Id", "list: HTTP 404 Not Found with no JSON error", ""},
		{"missing org", map[string]string{"Authorization": "Bearer " + apiToken}, wsID(3),
			Failed, "collector misconfigured: check X-Molecule-Org-Id: HTTP 400 Bad Request TENANT_ORG_HEADER_REQUIRED", "list: HTTP 400", "TENANT_ORG_HEADER_REQUIRED"},
		{"unknown workspace", goodHeaders(), wsID(9), Gone, "", `list: HTTP 404 Not Found "workspace not found"`, `{"error":"workspace not found"}`},
		// The platform checks the token before the workspace: refused for
		// one, refused for all, so the tenant stops.
		{"bad token", map[string]string{"Authorization": "Bearer nope-nope", "X-Molecule-Org-Id": orgID}, wsID(3),
			Failed, "collector misconfigured: check the Authorization token", `list: HTTP 401 Unauthorized "missing workspace auth token": the files API refused the credentials`, "missing workspace auth token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := filesAPI(t, base, tc.headers).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: tc.id})
			if r.Outcome != tc.outcome || !strings.Contains(r.TenantError, tc.tenant) || (tc.tenant == "") != (r.TenantError == "") ||
				!strings.Contains(r.Reason, tc.reason) || r.Transient {
				t.Fatalf("got %s tenant=%q reason=%q transient=%v", r.Outcome, r.TenantError, r.Reason, r.Transient)
			}
			if r.NotFound != (tc.outcome == Gone) {
				t.Fatalf("NotFound = %v", r.NotFound)
			}
			if !strings.Contains(r.Provenance["body_head"], tc.body) || (tc.body == "") != (r.Provenance["body_head"] == "") {
				t.Fatalf("body_head = %q, want it to hold %q", r.Provenance["body_head"], tc.body)
			}
			if r.Provenance["failed_request"] != "list" {
				t.Fatalf("failed_request = %q", r.Provenance["failed_request"])
			}
		})
	}
}

// A 429 is reported as throttled with the wait the platform asks for: its
// Retry-After truncates to 0 within the last second of a window, and then
// X-RateLimit-Reset says how long.
func TestFilesAPIThrottled(t *testing.T) {
	p := &filesapi.MemoryPlatform{Org: orgID, Limit: 2, Window: 3 * time.Second}
	live := "name: x\n"
	p.Put(wsID(4), filesapi.MemoryWorkspace{Name: "x", Running: true, Container: &live})
	r := filesAPI(t, platform(t, p), goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: wsID(4)})
	if r.Outcome != Failed || !r.Throttled || r.RetryAfter < time.Second || r.RetryAfter > 3*time.Second || r.Provenance["failed_request"] != "relist" {
		t.Fatalf("got %s throttled=%v after=%s %q %v", r.Outcome, r.Throttled, r.RetryAfter, r.Reason, r.Provenance)
	}
	if r.Provenance["header.X-RateLimit-Remaining"] != "0" || r.Provenance["header.Retry-After"] == "" {
		t.Fatalf("rate-limit headers not kept: %v", r.Provenance)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		retry, reset string
		want         time.Duration
	}{
		{"7", "40", 7 * time.Second},
		{"0", "12", 12 * time.Second},
		{"0", "0", time.Second},
		{"", "", time.Second},
		{"", "3", 3 * time.Second},
		{"0", strconv.FormatInt(now.Add(5*time.Second).Unix(), 10), 5 * time.Second}, // an epoch
		{now.Add(9 * time.Second).Format(http.TimeFormat), "", 9 * time.Second},
		{"86400", "", maxRetryAfter},
		{"soon", "x", time.Second},
	} {
		h := http.Header{}
		if tc.retry != "" {
			h.Set("Retry-After", tc.retry)
		}
		if tc.reset != "" {
			h.Set("X-RateLimit-Reset", tc.reset)
		}
		if got := retryAfter(h, now); got != tc.want {
			t.Errorf("Retry-After %q, reset %q: %s, want %s", tc.retry, tc.reset, got, tc.want)
		}
	}
}

// The 404 (and 400) rules, for the files API and for a generic HTTP server.
func TestClassifyAnswer(t *testing.T) {
	cases := []struct {
		name     string
		code     int
		body     string
		platform bool
		outcome  Outcome
		tenant   bool
		notFound bool
		reason   string
	}{
		{"bare 404 from the platform", 404, "", true, Failed, true, false, "no JSON error"},
		{"html 404 from the platform's router", 404, "404 page not found", true, Failed, true, false, "no JSON error"},
		{"json without error from the platform", 404, `{"status":404}`, true, Failed, true, false, "no JSON error"},
		{"workspace not found", 404, `{"error":"workspace not found"}`, true, Gone, false, true, `"workspace not found"`},
		{"file not found on workspace", 404, `{"error":"file not found on workspace"}`, true, Gone, false, true, "file not found on workspace"},
		{"file not found", 404, `{"error":"file not found"}` + "\n", true, Gone, false, true, `"file not found"`},
		{"container offline", 404, `{"error":"file not found (container offline, no template)"}`, true, NotRunning, false, false, "container is not running"},
		{"org header missing", 400, `{"error":"missing tenant routing header","code":"TENANT_ORG_HEADER_REQUIRED"}`, false, Failed, true, false, "TENANT_ORG_HEADER_REQUIRED"},
		{"other 400", 400, `{"error":"invalid path"}`, true, Failed, false, false, `unexpected status ("invalid path")`},
		{"bare 404 from a generic server", 404, "not here", false, Gone, false, true, "HTTP 404 Not Found"},
		{"410", 410, "", true, Gone, false, false, "HTTP 410 Gone"},
		{"503", 503, `{"error":"x"}`, true, Failed, false, false, "HTTP 503"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := Result{Provenance: map[string]string{}}
			classifyAnswer(&r, tc.code, http.Header{}, []byte(tc.body), tc.platform, time.Now())
			if r.Outcome != tc.outcome || (r.TenantError != "") != tc.tenant || r.NotFound != tc.notFound || !strings.Contains(r.Reason, tc.reason) {
				t.Fatalf("got %s tenant=%q notFound=%v reason=%q", r.Outcome, r.TenantError, r.NotFound, r.Reason)
			}
			if tc.tenant && !strings.HasPrefix(r.TenantError, "collector misconfigured: check X-Molecule-Org-Id") {
				t.Fatalf("tenant error = %q", r.TenantError)
			}
		})
	}
}

func TestJudgeSources(t *testing.T) {
	l := func(src string, size int64) listing {
		return listing{raw: src, source: src, has: size >= 0, size: size}
	}
	x := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		first, second listing
		n             int
		outcome       Outcome
		src           string
		read          string // the read's own source header: "" none
		content       string // when not n bytes of x
	}{
		{first: l("container", 10), second: l("container", 10), n: 8, outcome: Captured, src: source.Container},
		{first: l("container", 10), second: l("container", 10), n: 10, outcome: Captured, src: source.Container},
		{first: l("container", 10), second: l("container", 10), n: 11, outcome: NotLive, src: source.Container},
		{first: l("container", -1), second: l("container", -1), n: 3, outcome: NotLive, src: source.Container},
		{first: l("eic", 4), second: l("eic", 4), n: 4, outcome: Captured, src: source.EIC},
		{first: l("eic", 0), second: l("eic", 0), n: 40, outcome: Captured, src: source.EIC},
		{first: l("container", 0), second: l("container", 0), n: 40, outcome: NotLive, src: source.Container},
		{first: l("host-mirror", 4), second: l("host-mirror", 4), n: 4, outcome: Captured, src: source.HostMirror},
		{first: l("template-dir", 40), second: l("template-dir", 40), n: 40, outcome: NotLive, src: source.TemplateDir},
		{first: l("none", -1), second: l("none", -1), n: 0, outcome: NotLive, src: source.None},
		{first: l("missing", 4), second: l("missing", 4), n: 4, outcome: NotLive, src: source.Missing},
		{first: l("unknown", 4), second: l("unknown", 4), n: 4, outcome: NotLive, src: source.Unknown},
		{first: l("container", 4), second: l("host-mirror", 4), n: 4, outcome: NotLive, src: source.Changed},
		{first: l("host-mirror", 4), second: l("container", 4), n: 4, outcome: NotLive, src: source.Changed},
		// config.yaml gone or changed around the read: a fallback may have answered.
		{first: l("container", 10), second: l("container", -1), n: 10, outcome: NotLive, src: source.Container},
		{first: l("container", 10), second: l("container", 12), n: 10, outcome: NotLive, src: source.Container},
		// The read names another source than the listings.
		{first: l("container", 10), second: l("container", 10), n: 10, outcome: NotLive, src: source.Container, read: "template-dir"},
		{first: l("container", 10), second: l("container", 10), n: 10, outcome: Captured, src: source.Container, read: "container"},
		// Much shorter than listed: more than trimming explains.
		{first: l("container", 4000), second: l("container", 4000), n: 4000 - trimSlack, outcome: Captured, src: source.Container},
		{first: l("container", 4000), second: l("container", 4000), n: 4000 - trimSlack - 1, outcome: NotLive, src: source.Container},
		{first: l("host-mirror", 4000), second: l("host-mirror", 4000), n: 400, outcome: NotLive, src: source.HostMirror},
		// Bytes that are not UTF-8 arrive as U+FFFD, three bytes for one.
		{first: l("container", 6), second: l("container", 6), outcome: Captured, src: source.Container, content: "caf\uFFFD\uFFFD!"},
		{first: l("container", 5), second: l("container", 5), outcome: NotLive, src: source.Container, content: "caf\uFFFD\uFFFD!"},
		// A read the platform cut at its exec limit.
		{first: l("container", containerReadCut+4096), second: l("container", containerReadCut+4096), n: containerReadCut, outcome: Failed, src: source.Container},
		{first: l("container", containerReadCut-100), second: l("container", containerReadCut-100), n: containerReadCut - 1000, outcome: Failed, src: source.Container},
		{first: l("host-mirror", containerReadCut+4096), second: l("host-mirror", containerReadCut+4096), n: containerReadCut + 4096, outcome: Captured, src: source.HostMirror},
	}
	for _, tc := range cases {
		rd := readAnswer{content: []byte(x(tc.n)), source: listedSource(tc.read, tc.read != "")}
		if tc.content != "" {
			rd.content = []byte(tc.content)
		}
		o, src, why := judge(tc.first, tc.second, rd)
		if o != tc.outcome || src != tc.src || (o == Captured) != (why == "") {
			t.Errorf("judge(%+v, %+v, %d bytes, read source %q) = %s %s %q; want %s %s", tc.first, tc.second, len(rd.content), tc.read, o, src, why, tc.outcome, tc.src)
		}
		if o == Captured && !source.Evidence(src) || o == NotLive && src != source.Container && source.Evidence(src) && src != source.HostMirror {
			t.Errorf("%s from %s: the evidence table disagrees", o, src)
		}
	}
	for raw, want := range map[string]string{"container": "container", " Container ": "container", "EIC": "eic", "host-mirror": "host-mirror",
		"template-dir": "template-dir", "none": "none", "": "missing", "s3": "unknown", "container:abc": "unknown"} {
		if got := listedSource(raw, raw != ""); got != want {
			t.Errorf("listedSource(%q) = %q, want %q", raw, got, want)
		}
	}
}

// Each method labels its captures with its source class.
func TestSourceLabels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a.yaml")
	if err := os.WriteFile(path, []byte("name: a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, _ := fixtureServer(t)
	for _, tc := range []struct {
		spec Spec
		want string
	}{
		{Spec{Method: methodExec, Argv: []string{"cat", path}}, source.Exec},
		{Spec{Method: methodFile, Path: path}, source.File},
		{Spec{Method: MethodHTTP, URL: srv.URL + "/workspaces/{workspace_id}/files/config.yaml?root=/configs"}, source.Unverified},
	} {
		r := same(t, tc.spec).Collect(timeoutCtx(t, 10*time.Second), testValues)
		if r.Outcome != Captured || r.Source != tc.want {
			t.Errorf("%s: %s source %q, want captured from %q (%s)", tc.spec.Method, r.Outcome, r.Source, tc.want, r.Reason)
		}
	}
}

// A generic HTTP collector applies the platform's 404 rule when it talks
// to the platform (through a proxy): its org header, or the platform's
// source header. Rate-limit headers alone are any gateway's (found by
// review: a gateway's 403 for one object stopped a whole tenant).
func TestHTTPPlatformBare404(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/limited":
			w.Header().Set("X-RateLimit-Limit", "600")
			w.WriteHeader(404)
		case "/limited-403":
			w.Header().Set("X-RateLimit-Limit", "600")
			w.WriteHeader(403)
		case "/sourced":
			w.Header().Set("X-Molecule-Files-Source", "container")
			w.WriteHeader(404)
		case "/echo":
			// A server that echoes the credentials into its error body.
			w.WriteHeader(404)
			_, _ = w.Write([]byte("no route for " + r.Header.Get("Authorization") + " " + strings.Repeat("x", 400)))
		default:
			w.WriteHeader(404)
		}
	}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		path    string
		headers map[string]string
		tenant  bool
	}{
		{"/plain", nil, false},
		{"/plain", map[string]string{"X-Molecule-Org-Id": orgID}, true},
		{"/limited", nil, false},
		{"/sourced", nil, true},
	} {
		r := same(t, Spec{Method: MethodHTTP, URL: srv.URL + tc.path, Headers: tc.headers}).Collect(timeoutCtx(t, 10*time.Second), testValues)
		if (r.TenantError != "") != tc.tenant || (r.Outcome == Gone) == tc.tenant {
			t.Errorf("%s %v: %s tenant=%q", tc.path, tc.headers, r.Outcome, r.TenantError)
		}
	}
	if r := same(t, Spec{Method: MethodHTTP, URL: srv.URL + "/limited-403"}).Collect(timeoutCtx(t, 10*time.Second), testValues); r.TenantError != "" || r.Outcome != Failed {
		t.Errorf("a gateway's 403: %s tenant=%q", r.Outcome, r.TenantError)
	}
	r := same(t, Spec{Method: MethodHTTP, URL: srv.URL + "/echo", Headers: map[string]string{"Authorization": "Bearer " + apiToken}}).
		Collect(timeoutCtx(t, 10*time.Second), testValues)
	bh := r.Provenance["body_head"]
	if strings.Contains(bh, apiToken) || !strings.Contains(bh, "no route for [REDACTED] xxx") || len(bh) > bodyHeadBytes {
		t.Fatalf("body_head = %q (%d bytes)", bh, len(bh))
	}
}

// Exec: docker's "is not running" is not-running; "No such container" is
// not-running for a workspace the platform stopped (its Docker provisioner
// removes the container of a paused or hibernated workspace) and gone for
// any other status. Neither is transient.
func TestExecNotRunning(t *testing.T) {
	docker := writeScript(t, "docker", `case "$2" in
ws-stopped) echo "Error response from daemon: container ws-stopped is not running" >&2 ;;
*) echo "Error response from daemon: No such container: $2" >&2 ;;
esac
exit 1`)
	c := same(t, Spec{Method: methodExec, Argv: []string{docker, "exec", "{container}", "cat", "/configs/config.yaml"}})
	for _, tc := range []struct {
		instance, status string
		outcome          Outcome
		reason           string
	}{
		{"ws-stopped", "online", NotRunning, "container ws-stopped is not running"},
		{"", "hibernated", NotRunning, "No such container: ws-" + testWS + " (status hibernated"},
		{"", "paused", NotRunning, "status paused"},
		{"", "hibernating", NotRunning, "status hibernating"},
		{"", "failed", NotRunning, "status failed"},
		{"", "online", Gone, "No such container: ws-" + testWS},
		{"mol-ws-x", "degraded", Gone, "No such container: mol-ws-x"},
	} {
		r := c.Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: testWS, InstanceID: tc.instance, Status: tc.status})
		if r.Outcome != tc.outcome || r.Transient || !strings.Contains(r.Reason, tc.reason) || r.Source != source.Exec {
			t.Errorf("%s/%s: %s transient=%v %q", tc.instance, tc.status, r.Outcome, r.Transient, r.Reason)
		}
	}
}

// platformHost is one workspace named "SEO Agent" whose running container
// has /configs at a directory of the test's.
type platformHost struct{ containers map[string]string }

func (h platformHost) Workspace(string) (filesapi.Workspace, bool) {
	return filesapi.Workspace{Name: "SEO Agent"}, true
}
func (h platformHost) Instance(string) (string, bool) { return "", false }
func (h platformHost) Container(name string) (string, bool) {
	d, ok := h.containers[name]
	return d, ok
}

// TestFilesAPIFallbacksAreNotEvidence: reads where the platform's files API
// answers from the template folder named like the workspace while both
// listings say container, or cuts the read, are never captured evidence;
// a live config that is not UTF-8 still is.
func TestFilesAPIFallbacksAreNotEvidence(t *testing.T) {
	tmplRoot := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tmplRoot, "seo-agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmplRoot, "seo-agent", "config.yaml"), []byte(seoTemplate), 0o644); err != nil {
		t.Fatal(err)
	}
	collect := func(t *testing.T, h http.Handler, id string) Result {
		srv := httptest.NewServer(h)
		t.Cleanup(srv.Close)
		return filesAPI(t, srv.URL, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: id})
	}
	platform := func(t *testing.T, id string, configs string) http.Handler {
		return (&filesapi.Platform{Host: platformHost{containers: map[string]string{"ws-" + id: configs}}, TemplateDirs: []string{tmplRoot}, Token: apiToken}).Handler()
	}

	t.Run("a dangling link", func(t *testing.T) {
		// The listing gives the link's own size; cat fails and the
		// template folder answers.
		id, configs := wsID(6), t.TempDir()
		if err := os.Symlink("/nonexistent/"+strings.Repeat("x", 400), filepath.Join(configs, "config.yaml")); err != nil {
			t.Fatal(err)
		}
		res := collect(t, platform(t, id, configs), id)
		if res.Outcome != NotLive || res.Source != source.Container || !strings.Contains(res.Reason, "more than trimming whitespace explains") {
			t.Fatalf("%s from %s: %s", res.Outcome, res.Source, res.Reason)
		}
	})
	t.Run("a link to a secret", func(t *testing.T) {
		// The listing gives the link's own size; cat follows it, as root.
		// Longer (a secret of 400 bytes) or far shorter (a link's text of
		// 400 and more) than the link's text, the bytes are not the file
		// listed and are not kept. (A link whose text is padded to the
		// size of its target, or within trimming of it, cannot be told from
		// the file through the API: the README says so.)
		secretDir := t.TempDir()
		for i, target := range []string{"/long", strings.Repeat("/"+strings.Repeat("d", 200), 2) + "/short"} {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(secretDir, target)), 0o755); err != nil {
				t.Fatal(err)
			}
			secret := filepath.Join(secretDir, target)
			body := "api_key: planted-secret\n"
			if i == 0 {
				body += strings.Repeat("# z\n", 100)
			}
			if err := os.WriteFile(secret, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			id, configs := wsID(20+i), t.TempDir()
			if err := os.Symlink(secret, filepath.Join(configs, "config.yaml")); err != nil {
				t.Fatal(err)
			}
			res := collect(t, platform(t, id, configs), id)
			if res.Outcome != NotLive || res.Content != nil || !strings.Contains(res.Reason, "its bytes are not kept") {
				t.Fatalf("link to %s: %s from %s, %d bytes kept: %s", target, res.Outcome, res.Source, len(res.Content), res.Reason)
			}
		}
	})
	t.Run("listings of links, as the platform lists them", func(t *testing.T) {
		// The platform's host-side walk leaves links out; a container's
		// find and stat list a link to a directory as a directory.
		id, state := wsID(8), t.TempDir()
		mirror := filepath.Join(state, id, "configs")
		if err := os.MkdirAll(filepath.Join(mirror, "real"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(mirror, "real", "config.yaml"), []byte(seoTemplate), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, l := range [][2]string{{"real/config.yaml", "config.yaml"}, {"real", "linked-dir"}} {
			if err := os.Symlink(filepath.Join(mirror, l[0]), filepath.Join(mirror, l[1])); err != nil {
				t.Fatal(err)
			}
		}
		list := func(p *filesapi.Platform) (string, string) {
			srv := httptest.NewServer(p.Handler())
			t.Cleanup(srv.Close)
			req, _ := http.NewRequest("GET", srv.URL+"/workspaces/"+id+"/files?root=/configs", nil)
			for k, v := range goodHeaders() {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.Header.Get(filesapi.HeaderSource), string(b)
		}
		src, body := list(&filesapi.Platform{Host: platformHost{}, StateDir: state, Token: apiToken})
		if src != filesapi.SourceHostMirror || strings.Contains(body, `"config.yaml"`) || strings.Contains(body, "linked-dir") || !strings.Contains(body, `"real"`) {
			t.Fatalf("host mirror listing (%s): %s", src, body)
		}
		src, body = list(&filesapi.Platform{Host: platformHost{containers: map[string]string{"ws-" + id: mirror}}, Token: apiToken})
		if src != filesapi.SourceContainer || !strings.Contains(body, `"path":"linked-dir","size":0,"dir":true`) || !strings.Contains(body, `"path":"config.yaml"`) {
			t.Fatalf("container listing (%s): %s", src, body)
		}
		// And the read of the host mirror's linked config.yaml is not
		// captured: its listing has no config.yaml.
		res := collect(t, (&filesapi.Platform{Host: platformHost{}, StateDir: state, Token: apiToken}).Handler(), id)
		if res.Outcome != NotLive || !strings.Contains(res.Reason, "listing has no config.yaml") || res.Content != nil {
			t.Fatalf("%s from %s: %s", res.Outcome, res.Source, res.Reason)
		}
	})
	t.Run("config.yaml gone after the first listing", func(t *testing.T) {
		live := strings.Repeat("# the workspace's own config\n", 40) + "name: Custom\nruntime: hermes\n"
		p := &filesapi.MemoryPlatform{Org: orgID, Token: apiToken, Templates: map[string]*string{"seo-agent": filesapi.Ptr(seoTemplate)}}
		id := wsID(1)
		p.Put(id, filesapi.MemoryWorkspace{Name: "seo-agent", Running: true, Container: &live})
		var lists atomic.Int32
		h := p.Handler()
		res := collect(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(w, r)
			if strings.HasSuffix(r.URL.Path, "/files") && lists.Add(1) == 1 {
				p.Update(id, func(w *filesapi.MemoryWorkspace) { w.Container = nil })
			}
		}), id)
		if res.Outcome != NotLive || !strings.Contains(res.Reason, "made after the read has no config.yaml") {
			t.Fatalf("%s from %s: %s", res.Outcome, res.Source, res.Reason)
		}
	})
	t.Run("the read names the template folder", func(t *testing.T) {
		res := collect(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/files") {
				w.Header().Set("X-Molecule-Files-Source", "container")
				w.Write([]byte(`[{"path":"config.yaml","size":15,"dir":false}]`))
				return
			}
			w.Header().Set("X-Molecule-Files-Source", "template-dir")
			w.Write([]byte(`{"path":"config.yaml","content":"name: SEO Agent","size":15}`))
		}), wsID(2))
		if res.Outcome != NotLive || !strings.Contains(res.Reason, "the read itself names source template-dir") {
			t.Fatalf("%s from %s: %s", res.Outcome, res.Source, res.Reason)
		}
	})
	t.Run("a read cut at the platform's limit", func(t *testing.T) {
		listed := filesapi.MaxContainerRead + 4096
		content := strings.Repeat("a", filesapi.MaxContainerRead)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Molecule-Files-Source", "container")
			if strings.HasSuffix(r.URL.Path, "/files") {
				fmt.Fprintf(w, `[{"path":"config.yaml","size":%d,"dir":false}]`, listed)
				return
			}
			fmt.Fprintf(w, `{"path":"config.yaml","content":%q,"size":%d}`, content, len(content))
		}))
		t.Cleanup(srv.Close)
		spec := Spec{Method: MethodFilesAPI, BaseURL: srv.URL, Headers: goodHeaders()}
		res := mustNew(t, spec, spec, 8<<20, nil).Collect(timeoutCtx(t, 20*time.Second), placeholder.Values{WorkspaceID: wsID(3)})
		if res.Outcome != Failed || res.Transient || res.Content != nil || !strings.Contains(res.Reason, "cuts a read through a container") {
			t.Fatalf("%s (transient %v, %d bytes): %s", res.Outcome, res.Transient, len(res.Content), res.Reason)
		}
	})
	t.Run("a live config that is not UTF-8", func(t *testing.T) {
		id, configs := wsID(7), t.TempDir()
		if err := os.WriteFile(filepath.Join(configs, "config.yaml"), []byte("name: Caf\xe9 Agent\nruntime: hermes\ndescription: r\xe9sum\xe9s\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		res := collect(t, platform(t, id, configs), id)
		if res.Outcome != Captured || res.Source != source.Container {
			t.Fatalf("%s from %s: %s", res.Outcome, res.Source, res.Reason)
		}
	})
}

// namedHost is platformHost with each workspace's own name.
type namedHost struct {
	platformHost
	names map[string]string
}

func (h namedHost) Workspace(id string) (filesapi.Workspace, bool) {
	n, ok := h.names[id]
	return filesapi.Workspace{Name: n}, ok
}

// Found by review: when a workspace's own container is not running, the
// platform's files API tries a container named like the workspace, and
// both listings and the read say container. A workspace named like another
// workspace's container (ws-<its id>) was captured from it: the other
// workspace's config stored as this one's evidence. Such a name makes the
// answer not live, its bytes not kept; other names are captured as before.
func TestFilesAPIWorkspaceNamedLikeAnotherContainer(t *testing.T) {
	victim, attacker, plain := wsID(4), wsID(5), wsID(7)
	victimConfigs, plainConfigs := t.TempDir(), t.TempDir()
	const victimConfig = "name: Victim Private Agent\nprompt: victim-only\n"
	for dir, body := range map[string]string{victimConfigs: victimConfig, plainConfigs: seoTemplate} {
		if err := os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	host := namedHost{
		platformHost: platformHost{containers: map[string]string{"ws-" + victim: victimConfigs, "ws-" + plain: plainConfigs}},
		names:        map[string]string{victim: "Victim", attacker: "WS-" + strings.ToUpper(victim), plain: "SEO Agent"},
	}
	srv := httptest.NewServer((&filesapi.Platform{Host: host, Token: apiToken}).Handler())
	t.Cleanup(srv.Close)
	c := filesAPI(t, srv.URL, goodHeaders())
	res := c.Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: attacker, Name: "WS-" + strings.ToUpper(victim)})
	if res.Outcome != NotLive || res.Content != nil || !strings.Contains(res.Reason, "container name for another workspace") {
		t.Fatalf("workspace named like ws-%s: %s from %s, %d bytes: %s", victim, res.Outcome, res.Source, len(res.Content), res.Reason)
	}
	for _, tc := range []struct{ id, name string }{{plain, "SEO Agent"}, {victim, "Victim"}} {
		res := c.Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: tc.id, Name: tc.name})
		if res.Outcome != Captured || res.Source != source.Container {
			t.Errorf("%s (%s): %s from %s: %s", tc.id, tc.name, res.Outcome, res.Source, res.Reason)
		}
	}
}

// Found by the next review: a name with white space around it, which the
// platform trims elsewhere, got past the check. Every spelling of another
// workspace's container name is caught; this workspace's own, and other
// names, are not.
func TestNamedLikeOthersContainer(t *testing.T) {
	own, other := wsID(5), wsID(4)
	for _, tc := range []struct {
		name    string
		flagged bool
	}{
		{"ws-" + other, true},
		{"WS-" + strings.ToUpper(other), true},
		{" ws-" + other, true},
		{"ws-" + other + " ", true},
		{"ws-" + other + "\u00a0", true},
		{"\tWS-" + other, true},
		{"wsdesk-" + other, true},
		{"ws-9f1e2d3c-4b5", true}, // the legacy ws-<12 characters> of another id
		{"ws-" + own, false},
		{"SEO Agent", false},
		{"ws agent", false},
		// Docker takes a name of hex digits for a prefix of a container's
		// id: an agent sees its container's first 12 as its hostname.
		{"3f9a1c2b7d4e", true},
		{"DEADBEEF", true},
		{"42", true},
		{"cafe agent", false},
		{"0x42", false},
	} {
		if got := namedLikeOthersContainer(tc.name, own) != ""; got != tc.flagged {
			t.Errorf("%q: flagged %v, want %v", tc.name, got, tc.flagged)
		}
	}
}

// listingServer answers listings with listing and source, and reads with
// content (or status and its JSON error when status is not 200).
func listingServer(t *testing.T, src, listing string, status int, content string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "600")
		if strings.HasSuffix(r.URL.Path, "/files") {
			w.Header().Set("X-Molecule-Files-Source", src)
			_, _ = w.Write([]byte(listing))
			return
		}
		w.WriteHeader(status)
		if status != http.StatusOK {
			_ = json.NewEncoder(w).Encode(map[string]any{"error": content})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"path": "config.yaml", "content": content, "size": len(content)})
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// Found by review: the container and EC2 listings are lines of a shell
// loop over find, so a /configs file named "a\nconfig.yaml" forges a line
// "config.yaml" sized by whatever that path stats to in the exec's working
// directory. With config.yaml a link to a 3,000-byte secret and a
// 3,000-byte file there, the first entry matched the read and the secret
// was captured. A listing naming config.yaml twice is no evidence, its
// bytes not kept; only the exact relative path the platform lists counts.
func TestFilesAPIListingNamingConfigTwiceIsNotLive(t *testing.T) {
	secret := "api_key: sk-live-" + strings.Repeat("s", 3000-len("api_key: sk-live-"))
	for _, tc := range []struct{ name, listing string }{
		{"forged first", `[{"path":"a","size":0,"dir":false},{"path":"config.yaml","size":3000,"dir":false},{"path":"config.yaml","size":15,"dir":false}]`},
		{"forged last", `[{"path":"config.yaml","size":15,"dir":false},{"path":"config.yaml","size":3000,"dir":false}]`},
		{"forged as a directory", `[{"path":"config.yaml","size":0,"dir":true},{"path":"config.yaml","size":3000,"dir":false}]`},
	} {
		base := listingServer(t, "container", tc.listing, http.StatusOK, secret)
		r := filesAPI(t, base, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: wsID(3), Name: "x"})
		if r.Outcome != NotLive || r.Content != nil || !strings.Contains(r.Reason, "names config.yaml more than once") {
			t.Errorf("%s: %s from %s, %d bytes kept: %s", tc.name, r.Outcome, r.Source, len(r.Content), r.Reason)
		}
	}
	// Spellings the platform never lists are not config.yaml.
	for _, p := range []string{"./config.yaml", "/configs/config.yaml", "/config.yaml"} {
		base := listingServer(t, "container", `[{"path":"`+p+`","size":12,"dir":false}]`, http.StatusOK, "name: other\n")
		r := filesAPI(t, base, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: wsID(4), Name: "x"})
		if r.Outcome != NotLive || !strings.Contains(r.Reason, "listing has no config.yaml") {
			t.Errorf("listed as %q: %s: %s", p, r.Outcome, r.Reason)
		}
	}
}

// Found by review: the platform answers a read's 404 "file not found" for
// more than the file's absence (over EC2 Instance Connect any read that
// fails without output; a container stopped between listing and read falls
// through to a mirror without it). After a listing that showed config.yaml
// it is a failure, retried, never gone: gone lets --allow-gone pass it.
func TestFilesAPIReadNotFoundAfterAListingShowingTheFileFails(t *testing.T) {
	for _, tc := range []struct{ src, msg string }{{"eic", "file not found on workspace"}, {"container", "file not found in workspace /configs"}} {
		base := listingServer(t, tc.src, `[{"path":"config.yaml","size":120,"dir":false}]`, http.StatusNotFound, tc.msg)
		r := filesAPI(t, base, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: wsID(6), Name: "x"})
		if r.Outcome != Failed || !r.Transient || r.NotFound || !strings.Contains(r.Reason, "listing just made shows config.yaml (120 bytes)") {
			t.Errorf("%s: %s transient=%v notFound=%v: %s", tc.src, r.Outcome, r.Transient, r.NotFound, r.Reason)
		}
	}
}

// Found by review: the platform reads an EC2 workspace's files by its
// instance_id, so two live rows naming one instance each got that
// instance's config, captured. Through files_api such a row's capture
// fails; a shared instance_id that is not an EC2 id (a container name)
// does not change what the files API reads, and an EC2 id of the row's
// own is read as ever. The http collector, which may not point at the
// files API, reads what its URL names: by workspace id, a shared
// instance is nothing to it ({instance_id} and {container} refuse one).
func TestSharedEC2InstanceFailsFilesAPIAndHTTP(t *testing.T) {
	live := "name: Custom\nruntime: hermes\n"
	p := &filesapi.MemoryPlatform{Org: orgID, Token: apiToken}
	base := platform(t, p)
	const inst = "i-0123456789abcdef0"
	p.Put(wsID(1), filesapi.MemoryWorkspace{Name: "a", InstanceID: inst, EIC: &live})
	p.Put(wsID(2), filesapi.MemoryWorkspace{Name: "b", InstanceID: "mol-ws-b-1a2b", Running: true, Container: &live})
	viaHTTP := same(t, Spec{Method: MethodHTTP, URL: base + "/workspaces/{workspace_id}/files/config.yaml?root=/configs", JSONField: "content", Headers: goodHeaders()})
	for _, tc := range []struct {
		name string
		v    placeholder.Values
		want Outcome
	}{
		{"shared EC2 instance", placeholder.Values{WorkspaceID: wsID(1), InstanceID: inst, InstanceShared: true}, Failed},
		{"own EC2 instance", placeholder.Values{WorkspaceID: wsID(1), InstanceID: inst}, Captured},
		{"shared container name", placeholder.Values{WorkspaceID: wsID(2), InstanceID: "mol-ws-b-1a2b", InstanceShared: true}, Captured},
	} {
		for _, c := range []*Collector{filesAPI(t, base, goodHeaders()), viaHTTP} {
			r := c.Collect(timeoutCtx(t, 10*time.Second), tc.v)
			want := tc.want
			if c == viaHTTP {
				want = Captured
			}
			if r.Outcome != want || (want == Failed && (!strings.Contains(r.Reason, "instance_id "+inst+" is named by more than one live workspace") || r.Content != nil)) {
				t.Errorf("%s through %s: %s: %s", tc.name, c.spec.Method, r.Outcome, r.Reason)
			}
		}
	}
}

// A 403 from the platform (an org token of another org) stops the tenant
// as a 401 does: the token is checked before the workspace.
func TestFilesAPIForbiddenIsATenantError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-RateLimit-Limit", "600")
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"error":"org token not authorized for this workspace's org"}`))
	}))
	t.Cleanup(srv.Close)
	r := filesAPI(t, srv.URL, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: wsID(7)})
	if r.Outcome != Failed || !strings.HasPrefix(r.TenantError, "collector misconfigured: check the Authorization token") || r.Transient {
		t.Fatalf("%s tenant=%q: %s", r.Outcome, r.TenantError, r.Reason)
	}
}
