package cli

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// oneContainerHost is one workspace, named agent, whose running container
// has /configs at dir.
type oneContainerHost struct{ id, dir string }

func (h oneContainerHost) Workspace(id string) (filesapi.Workspace, bool) {
	return filesapi.Workspace{Name: "agent"}, id == h.id
}
func (h oneContainerHost) Instance(string) (string, bool) { return "", false }
func (h oneContainerHost) Container(name string) (string, bool) {
	return h.dir, name == "ws-"+h.id
}

// Found by review: Go's default transport sends through the proxy
// HTTP_PROXY or HTTPS_PROXY names, so one variable in the environment
// handed every collector's token to that proxy and stored its answers as
// evidence. The collectors now go straight to their hosts, and through the
// environment's proxy only with --proxy-from-env, on the command line.
// The built binary runs as its own process: Go reads the proxy variables
// once a process.
func TestAProxyInTheEnvironmentIsUsedOnlyWhenAskedFor(t *testing.T) {
	bin := backfillBinary(t)
	dir := t.TempDir()
	dsn := pgtest.NewTenantDB(t)
	id := uuidFor(97, 1)
	insertRows(t, dsn, ws{id: id, name: "agent"})
	configs := filepath.Join(dir, "forged", "configs")
	writeFile(t, filepath.Join(configs, "config.yaml"), "name: Forged By Proxy\n")
	platform := (&filesapi.Platform{Host: oneContainerHost{id, configs}, Token: filesToken}).Handler()
	var seen atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Authorization"), filesToken) {
			seen.Add(1)
		}
		platform.ServeHTTP(w, r)
	}))
	t.Cleanup(proxy.Close)
	// .invalid never resolves: only a proxy can answer for it.
	inv := writeFile(t, filepath.Join(dir, "inventory.yaml"), fmt.Sprintf("version: 1\ntenants:\n  - name: acme\n    dsn: %q\n%s",
		dsn, filesAPIYAML("http://files.acme.invalid", false)))
	snapshot := func(store string, extra ...string) int {
		cmd := exec.Command(bin, append([]string{"--evidence", filepath.Join(dir, store), "snapshot", "--inventory", inv, "--retries", "0"}, extra...)...)
		cmd.Env = processEnv(map[string]string{"FILES_TOKEN": filesToken, "HTTP_PROXY": proxy.URL, "http_proxy": proxy.URL,
			"HTTPS_PROXY": proxy.URL, "https_proxy": proxy.URL, "NO_PROXY": "", "no_proxy": ""})
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &ee):
			t.Logf("%s", out)
			return ee.ExitCode()
		}
		t.Fatalf("%v\n%s", err, out)
		return -1
	}
	if code := snapshot("direct.db"); code != 3 || seen.Load() != 0 {
		t.Fatalf("without --proxy-from-env: exit %d, the proxy saw the token %d times", code, seen.Load())
	}
	if got := storedCaptures(t, filepath.Join(dir, "direct.db"))[id]; got.outcome == "captured" {
		t.Fatalf("without --proxy-from-env the proxy's answer was stored: %+v", got)
	}
	if code := snapshot("proxied.db", "--proxy-from-env"); code != 0 || seen.Load() == 0 {
		t.Fatalf("with --proxy-from-env: exit %d, the proxy saw the token %d times", code, seen.Load())
	}
}
