package collector

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"backfill/internal/placeholder"
)

const testWS = "0b7c6f1e-3a2d-4c5b-9e8f-1a2b3c4d5e6f"

var testValues = placeholder.Values{Tenant: "acme", WorkspaceID: testWS, InstanceID: "ws-abc"}

func mustNew(t *testing.T, spec, raw Spec, maxBytes int64, client *http.Client) *Collector {
	t.Helper()
	c, err := New(spec, raw, maxBytes, client)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// same builds a collector whose raw spec is the spec itself (no ${VAR}).
func same(t *testing.T, spec Spec) *Collector {
	t.Helper()
	return mustNew(t, spec, spec, 0, nil)
}

func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// check compares the parts of a Result a test cares about.
func check(t *testing.T, r Result, outcome Outcome, transient bool, reasonHas string) {
	t.Helper()
	if r.Outcome != outcome || r.Transient != transient || !strings.Contains(r.Reason, reasonHas) {
		t.Fatalf("got outcome=%s transient=%v reason=%q; want outcome=%s transient=%v reason containing %q",
			r.Outcome, r.Transient, r.Reason, outcome, transient, reasonHas)
	}
	if outcome != Captured && r.Content != nil {
		t.Fatalf("%s result carries %d content bytes", outcome, len(r.Content))
	}
}

func TestNewValidation(t *testing.T) {
	tests := []struct {
		name    string
		spec    Spec
		raw     *Spec // nil: same as spec
		wantErr string
	}{
		{"exec ok", Spec{Method: "exec", Argv: []string{"docker", "exec", "{instance_id}", "cat", "/configs/config.yaml"}}, nil, ""},
		{"http ok", Spec{Method: "http", URL: "https://{tenant}.example.com/workspaces/{workspace_id}/files/config.yaml?root=/configs", Headers: map[string]string{"Authorization": "Bearer x"}}, nil, ""},
		{"file ok", Spec{Method: "file", Path: "/mnt/x/{workspace_id}/configs/config.yaml"}, nil, ""},
		{"no method", Spec{Argv: []string{"cat"}}, nil, "no method"},
		{"unknown method", Spec{Method: "ftp", URL: "ftp://x"}, nil, `unknown collector method "ftp"`},
		{"exec without argv", Spec{Method: "exec"}, nil, "exec collector needs argv"},
		{"http without url", Spec{Method: "http"}, nil, "http collector needs url"},
		{"file without path", Spec{Method: "file"}, nil, "file collector needs path"},
		{"two methods", Spec{Method: "exec", Argv: []string{"cat"}, Path: "/x"}, nil, "also sets path"},
		{"http with argv", Spec{Method: "http", URL: "http://h/", Argv: []string{"cat"}}, nil, "also sets argv"},
		{"file with headers", Spec{Method: "file", Path: "/x", Headers: map[string]string{"A": "b"}}, nil, "also sets headers"},
		{"unknown placeholder argv", Spec{Method: "exec", Argv: []string{"cat", "{pod}"}}, nil, "argv[1]: unknown placeholder {pod}"},
		{"unknown placeholder url", Spec{Method: "http", URL: "http://h/{workspace}"}, nil, "url: unknown placeholder {workspace}"},
		{"unknown placeholder path", Spec{Method: "file", Path: "/x/{id}"}, nil, "path: unknown placeholder {id}"},
		{"unknown placeholder header", Spec{Method: "http", URL: "http://h/", Headers: map[string]string{"X-T": "{tenent}"}}, nil, "header X-T: unknown placeholder {tenent}"},
		{"bad scheme", Spec{Method: "http", URL: "file:///etc/passwd"}, nil, "scheme must be http or https"},
		{"no host", Spec{Method: "http", URL: "http:///x"}, nil, "no host"},
		{"unparsable url", Spec{Method: "http", URL: "http://h/%zz"}, nil, `url http://h/%zz: invalid URL escape`},
		{"path with dotdot", Spec{Method: "file", Path: "/mnt/{tenant}/../etc/passwd"}, nil, `".." element`},
		{"bad header name", Spec{Method: "http", URL: "http://h/", Headers: map[string]string{"Bad Name": "v"}}, nil, "not a valid token"},
		{"header value newline", Spec{Method: "http", URL: "http://h/", Headers: map[string]string{"A": "v\r\nX-Evil: 1"}}, nil, "line break"},
		{"raw method differs", Spec{Method: "file", Path: "/x"}, &Spec{Method: "exec", Argv: []string{"cat"}}, "unexpanded spec has method"},
		{"raw argv differs", Spec{Method: "exec", Argv: []string{"cat", "x"}}, &Spec{Method: "exec", Argv: []string{"cat"}}, "argv length"},
		{"raw headers differ", Spec{Method: "http", URL: "http://h/", Headers: map[string]string{"A": "1"}}, &Spec{Method: "http", URL: "http://h/"}, "header names"},
		{"raw with env refs ok", Spec{Method: "http", URL: "https://h/x", Headers: map[string]string{"Authorization": "Bearer s3cr3t"}},
			&Spec{Method: "http", URL: "${BASE}/x", Headers: map[string]string{"Authorization": "Bearer ${TOKEN}"}}, ""},
		{"exec env ok", Spec{Method: "exec", Argv: []string{"cat"}, Env: []string{"DOCKER_HOST"}, Environ: []string{"PATH=/bin", "DOCKER_HOST=x"}},
			&Spec{Method: "exec", Argv: []string{"cat"}, Env: []string{"DOCKER_HOST"}}, ""},
		{"exec env bad name", Spec{Method: "exec", Argv: []string{"cat"}, Env: []string{"A-B"}}, nil, `env: "A-B" is not a variable name`},
		{"exec environ not an assignment", Spec{Method: "exec", Argv: []string{"cat"}, Environ: []string{"secret-value"}},
			&Spec{Method: "exec", Argv: []string{"cat"}}, "environ[0]: not NAME=value"},
		{"raw env differs", Spec{Method: "exec", Argv: []string{"cat"}, Env: []string{"A"}}, &Spec{Method: "exec", Argv: []string{"cat"}}, "different env list"},
		{"raw sets environ", Spec{Method: "exec", Argv: []string{"cat"}}, &Spec{Method: "exec", Argv: []string{"cat"}, Environ: []string{"A=b"}}, "unexpanded spec sets environ"},
		{"file with env", Spec{Method: "file", Path: "/x", Env: []string{"A"}}, nil, "also sets env"},
		{"file relative", Spec{Method: "file", Path: "x/{tenant}"}, nil, "file path must be absolute"},
		{"file root elsewhere", Spec{Method: "file", Path: "/x/{tenant}", Root: "/y"}, nil, "not beneath its root"},
		{"raw bad placeholder", Spec{Method: "file", Path: "/x"}, &Spec{Method: "file", Path: "/{pod}"}, "unexpanded spec: path: unknown placeholder"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.spec
			if tt.raw != nil {
				raw = *tt.raw
			}
			c, err := New(tt.spec, raw, 0, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if c.maxBytes != DefaultMaxBytes {
					t.Fatalf("maxBytes = %d, want default %d", c.maxBytes, DefaultMaxBytes)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewErrorDoesNotLeakSecret(t *testing.T) {
	const secret = "tok-Zq8v7WmK3p"
	spec := Spec{Method: "http", URL: "ftp://h/x?t=" + secret}
	raw := Spec{Method: "http", URL: "ftp://h/x?t=${TOKEN}"}
	_, err := New(spec, raw, 0, nil)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "${TOKEN}") {
		t.Fatalf("New error = %v; want an error quoting the unexpanded url only", err)
	}
}

func TestDefaultClient(t *testing.T) {
	c := same(t, Spec{Method: "http", URL: "http://h/"})
	tr, ok := c.client.Transport.(*http.Transport)
	if !ok || tr.MaxIdleConnsPerHost < 100 {
		t.Fatalf("default transport = %#v; want an *http.Transport with many idle conns per host", c.client.Transport)
	}
	if c.client.CheckRedirect == nil || c.client.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("default client follows redirects")
	}
	if c2 := same(t, Spec{Method: "http", URL: "http://h/"}); c2.client != c.client {
		t.Fatal("each collector built its own default client; connections would not be shared")
	}
}

// TestInvalidValuesRunNothing checks a bad placeholder value fails the
// capture before any process, request or file read happens.
func TestInvalidValuesRunNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	script := writeScript(t, "fixture.sh", `touch "`+marker+`"; echo ok`)
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "passwd"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, pwnedBefore := os.Stat("/tmp/pwned")

	collectors := map[string]*Collector{
		"exec": same(t, Spec{Method: "exec", Argv: []string{script, "{instance_id}"}}),
		"http": same(t, Spec{Method: "http", URL: srv.URL + "/ws/{instance_id}/config"}),
		"file": same(t, Spec{Method: "file", Path: dir + "/a/b/{instance_id}"}),
	}
	bad := []struct {
		v    placeholder.Values
		want string
	}{
		{placeholder.Values{InstanceID: "x; touch /tmp/pwned"}, `invalid instance_id "x; touch /tmp/pwned": not a plain name`},
		{placeholder.Values{InstanceID: "../../etc/passwd"}, `invalid instance_id "../../etc/passwd": not a plain name`},
		{placeholder.Values{InstanceID: ".."}, `invalid instance_id "..": a path step`},
		{placeholder.Values{InstanceID: "."}, `invalid instance_id ".": a path step`},
		{placeholder.Values{InstanceID: ""}, `invalid instance_id "": empty`},
		{placeholder.Values{InstanceID: "$(touch /tmp/pwned)"}, `invalid instance_id "$(touch /tmp/pwned)"`},
		{placeholder.Values{InstanceID: "--help"}, `invalid instance_id "--help": starts with "-"`},
	}
	for method, c := range collectors {
		for _, b := range bad {
			r := c.Collect(context.Background(), b.v)
			check(t, r, Failed, false, b.want)
			if !strings.HasPrefix(r.Reason, "invalid instance_id") {
				t.Errorf("%s: reason %q does not lead with the placeholder", method, r.Reason)
			}
			if strings.Contains(r.Target, b.v.InstanceID) && b.v.InstanceID != "" && b.v.InstanceID != "." {
				t.Errorf("%s: target %q echoes the bad value", method, r.Target)
			}
			if len(r.Provenance) != 0 {
				t.Errorf("%s: provenance %v for an attempt that ran nothing", method, r.Provenance)
			}
		}
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatalf("exec fixture ran (marker stat: %v)", err)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("server got %d requests", n)
	}
	if _, err := os.Stat("/tmp/pwned"); os.IsNotExist(pwnedBefore) && !os.IsNotExist(err) {
		t.Fatal("/tmp/pwned was created")
	}
}

func TestUnusedPlaceholdersNotChecked(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ws-abc.yaml"), []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := same(t, Spec{Method: "file", Path: dir + "/{instance_id}.yaml"})
	r := c.Collect(context.Background(), placeholder.Values{Tenant: "bad tenant; rm -rf /", InstanceID: "ws-abc"})
	check(t, r, Captured, false, "")
	if string(r.Content) != "a: 1\n" {
		t.Fatalf("content = %q", r.Content)
	}
}

func TestAlreadyExpiredContextRunsNothing(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	script := writeScript(t, "fixture.sh", `touch "`+marker+`"`)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := same(t, Spec{Method: "exec", Argv: []string{script}}).Collect(ctx, testValues)
	check(t, r, Failed, true, "canceled")
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("fixture ran under a canceled context")
	}
}

func TestEnvValues(t *testing.T) {
	tests := []struct {
		tmpl, exp string
		want      []string
	}{
		{"plain", "plain", nil},
		{"Bearer ${TOKEN}", "Bearer abc123", []string{"abc123"}},
		{"${A}", "value", []string{"value"}},
		{"${HOST}/x?t=${TOKEN}&a=1", "h.example/x?t=s3cr3t&a=1", []string{"h.example", "s3cr3t"}},
		{"${A}${B}-x", "foobar-x", []string{"foobar"}},
		{"/w/{workspace_id}?t=${T}", "/w/{workspace_id}?t=zzzz", []string{"zzzz"}},
		// Other syntax: fall back to the differing span.
		{"Bearer $TOKEN", "Bearer abc123", []string{"abc123"}},
		{"a/$X/{tenant}/$Y/b", "a/one/{tenant}/two/b", []string{"one/", "/two"}},
	}
	for _, tt := range tests {
		if got := envValues(tt.tmpl, tt.exp); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("envValues(%q, %q) = %q, want %q", tt.tmpl, tt.exp, got, tt.want)
		}
	}
}

// checkTimeout expects a transient timeout naming the budget Collect had:
// at most the context's timeout, less whatever elapsed before Collect began.
func checkTimeout(t *testing.T, r Result, timeout time.Duration) {
	t.Helper()
	check(t, r, Failed, true, "timeout after ")
	d, err := time.ParseDuration(strings.TrimPrefix(r.Reason, "timeout after "))
	if err != nil || d <= 0 || d > timeout {
		t.Fatalf("reason %q: want \"timeout after <d>\" with 0 < d <= %v", r.Reason, timeout)
	}
}
