package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"backfill/internal/secret"
)

const secretToken = "tok_9fQx2LmZ7wPa"

// assertNoSecret fails if the token appears anywhere in the result.
func assertNoSecret(t *testing.T, r Result) {
	t.Helper()
	if dump := fmt.Sprintf("%+v %s", r, r.Content); strings.Contains(dump, secretToken) {
		t.Fatalf("secret leaked into result: %s", dump)
	}
}

// TestSecretsNeverReported passes the raw spec with ${TOKEN} and the
// expanded spec with the real value, against servers and commands that echo
// the token back wherever they can.
func TestSecretsNeverReported(t *testing.T) {
	var gotAuth, gotQuery string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotQuery = r.Header.Get("Authorization"), r.URL.Query().Get("token")
		w.Header().Set("X-Molecule-Files-Source", "echo "+r.Header.Get("Authorization"))
		w.Header().Set("ETag", r.URL.Query().Get("token"))
		switch r.URL.Path {
		case "/ok":
			_, _ = w.Write([]byte("name: ws\n"))
		case "/redirect":
			http.Redirect(w, r, "/elsewhere?token="+secretToken, http.StatusFound)
		case "/json":
			_, _ = w.Write([]byte(`{"other":"` + secretToken + `"}`))
		default:
			http.Error(w, "denied for "+secretToken, http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()

	for _, path := range []string{"/ok", "/redirect", "/json", "/fail"} {
		t.Run("http"+path, func(t *testing.T) {
			raw := Spec{Method: "http", URL: srv.URL + path + "?token=${TOKEN}",
				Headers: map[string]string{"Authorization": "Bearer ${TOKEN}"}}
			spec := Spec{Method: "http", URL: srv.URL + path + "?token=" + secretToken,
				Headers: map[string]string{"Authorization": "Bearer " + secretToken}}
			if path == "/json" {
				raw.JSONField, spec.JSONField = "content", "content"
			}
			r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
			assertNoSecret(t, r)
			if gotAuth != "Bearer "+secretToken || gotQuery != secretToken {
				t.Fatalf("server saw auth %q token %q: the expanded spec was not used", gotAuth, gotQuery)
			}
			if want := "GET " + srv.URL + path + "?token=${TOKEN} (headers: Authorization)"; !strings.HasPrefix(r.Target, want) {
				t.Fatalf("target = %q, want prefix %q", r.Target, want)
			}
			if path != "/ok" && r.Outcome != Failed {
				t.Fatalf("outcome %s", r.Outcome)
			}
		})
	}

	t.Run("http connection refused", func(t *testing.T) {
		dead := httptest.NewServer(http.NotFoundHandler())
		url := dead.URL
		dead.Close()
		raw := Spec{Method: "http", URL: url + "/x?token=${TOKEN}"}
		spec := Spec{Method: "http", URL: url + "/x?token=" + secretToken}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Failed, true, "request failed")
		assertNoSecret(t, r)
	})

	t.Run("exec", func(t *testing.T) {
		script := writeScript(t, "echo-args.sh", `echo "called with $*" >&2; exit 1`)
		raw := Spec{Method: "exec", Argv: []string{script, "--token=${TOKEN}", "{instance_id}"}}
		spec := Spec{Method: "exec", Argv: []string{script, "--token=" + secretToken, "{instance_id}"}}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Failed, true, "exit code 1: called with --token=[REDACTED] ws-abc")
		assertNoSecret(t, r)
		if want := "exec: " + script + " --token=${TOKEN} ws-abc"; r.Target != want {
			t.Fatalf("target = %q, want %q", r.Target, want)
		}
	})

	t.Run("exec not found", func(t *testing.T) {
		raw := Spec{Method: "exec", Argv: []string{"${TOOL}"}}
		spec := Spec{Method: "exec", Argv: []string{"/nonexistent/" + secretToken}}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Failed, false, "")
		assertNoSecret(t, r)
	})

	t.Run("file", func(t *testing.T) {
		raw := Spec{Method: "file", Path: "/nonexistent/${DIR}/{workspace_id}/config.yaml"}
		spec := Spec{Method: "file", Path: "/nonexistent/" + secretToken + "/{workspace_id}/config.yaml"}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Failed, false, "root directory: no such file or directory")
		assertNoSecret(t, r)
		if want := "file: /nonexistent/${DIR}/" + testWS + "/config.yaml"; r.Target != want {
			t.Fatalf("target = %q, want %q", r.Target, want)
		}
	})
}

// TestHeaderValueWithPlaceholderScrubbed covers a header whose value is only
// known per capture.
func TestHeaderValueWithPlaceholderScrubbed(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Molecule-Files-Source", r.Header.Get("X-Sig"))
		w.WriteHeader(http.StatusBadGateway)
	}))
	defer srv.Close()
	raw := Spec{Method: "http", URL: srv.URL + "/", Headers: map[string]string{"X-Sig": "${KEY}:{tenant}"}}
	spec := Spec{Method: "http", URL: srv.URL + "/", Headers: map[string]string{"X-Sig": "k3y:{tenant}"}}
	r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, true, "HTTP 502")
	if v := r.Provenance["header.X-Molecule-Files-Source"]; v != secret.Redacted {
		t.Fatalf("echoed header value reported as %q", v)
	}
}

// TestSecretsAcrossACutNeverLeaveTheirStart: text the tool cuts short (an
// error body's head, a quoted error message, a stderr line in a reason) is
// scrubbed before it is cut, so a secret the server or command echoes across
// the cut leaves no prefix behind.
func TestSecretsAcrossACutNeverLeaveTheirStart(t *testing.T) {
	tok := "tok-SECRET-0123456789abcdefghijklmnopqrstuvwxyz"
	for _, at := range []int{bodyHeadBytes, 200} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			pre := `{"error":"invalid workspace auth token: got `
			pad := strings.Repeat("x", at-len(pre)-len("Bearer ")-20)
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(pre + pad + r.Header.Get("Authorization") + `"}`))
		}))
		h := map[string]string{"Authorization": "Bearer " + tok, "X-Molecule-Org-Id": orgID}
		for _, c := range []*Collector{filesAPI(t, srv.URL, h),
			same(t, Spec{Method: MethodHTTP, URL: srv.URL + "/workspaces/{workspace_id}/files/config.yaml", Headers: h})} {
			res := c.Collect(timeoutCtx(t, 10*time.Second), testValues)
			if dump := fmt.Sprintf("%+v", res); strings.Contains(dump, tok[:12]) || res.Provenance["body_head"] == "" {
				t.Errorf("%s, cut at %d: the token's start is in the result: %s", c.Method(), at, dump)
			}
		}
		srv.Close()
	}
	pw := "dockerpw-SECRET-0123456789abcdefghijklmnop"
	script := writeScript(t, "fake-docker", `printf '%s' "error during connect: $(printf 'y%.0s' $(seq 1 155)) tcp://u:$DOCKER_PW@host" >&2; exit 1`)
	spec := Spec{Method: methodExec, Argv: []string{script, "{workspace_id}"}, Env: []string{"DOCKER_PW"},
		Environ: []string{"PATH=/usr/bin:/bin", "DOCKER_PW=" + pw}}
	raw := spec
	raw.Environ = nil
	res := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
	if dump := fmt.Sprintf("%+v", res); strings.Contains(dump, pw[:10]) || !strings.Contains(res.Reason, "exit code 1") {
		t.Errorf("exec: the password's start is in the result: %s", dump)
	}
}

// TestStderrCutThroughASecretLeavesNoPrefix: stderr is scanned up to
// stderrScanBytes; a secret that scan cuts through, or that ends right at
// the cut, leaves no part of itself in the reason or the provenance (this
// one begins and ends with the same letter, as TrimCut's matching cares).
func TestStderrCutThroughASecretLeavesNoPrefix(t *testing.T) {
	pw := "dockerpw-SECRET-0123456789abcd"
	script := writeScript(t, "fake-docker", `printf "%${1}s\n" x >&2
printf 'Error: No such container: ws-abc (docker host tcp://u:%s@host)\n' "$DOCKER_PW" >&2
printf 'more output after the cut\n' >&2; exit 1`)
	before := len("Error: No such container: ws-abc (docker host tcp://u:")
	for name, end := range map[string]int{"through": stderrScanBytes + 12, "at its end": stderrScanBytes, "one past": stderrScanBytes + 1} {
		pad := end - len(pw) - before - 1 // the padding line's newline
		spec := Spec{Method: methodExec, Argv: []string{script, strconv.Itoa(pad), "{workspace_id}"}, Env: []string{"DOCKER_PW"},
			Environ: []string{"PATH=/usr/bin:/bin", "DOCKER_PW=" + pw}}
		raw := spec
		raw.Environ = nil
		res := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		if dump := fmt.Sprintf("%+v", res); strings.Contains(dump, pw[:9]) || !strings.Contains(res.Reason, "No such container") {
			t.Errorf("%s: part of the password is in the result: %s", name, res.Reason)
		}
	}
}
