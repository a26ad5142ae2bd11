// Package filesapi is the stand-in for the platform's workspace server
// files API: backfill's tests and the rehearsal fleet serve workspace
// config files over loopback HTTP with it. Nothing in backfill proper
// imports it, and it does not import testing (fleetsim runs it).
//
// Three servers, from the most faithful to the plainest:
//
//   - Platform (platform.go) answers as the platform does from files on
//     disk found through a Host: the fallback chain, X-Molecule-Files-Source
//     on listings only, the tenant guard and the per-org rate limit. The
//     rehearsal fleet (cmd/fleetsim) runs it.
//   - MemoryPlatform (memory.go) gives the same chain, headers, guard and
//     rate limit from workspaces held in memory, and counts requests, for
//     tests of the files_api collector that set each place up by hand.
//   - Server (below) is a plain one for tests and benchmarks that only need
//     bytes served: GET /configs/{id}/config.yaml (a plain config endpoint,
//     what backfill's generic http collector is for) and the files API's
//     read path, GET /workspaces/{id}/files/config.yaml?root=/configs, both
//     answer {"path","content","size"} from Root/<id>/config.yaml with an
//     X-Molecule-Files-Source: container header (which the real ReadFile
//     never sends), and require a bearer token.
package filesapi

import (
	"encoding/json"
	"errors"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Server answers files API requests from Root/<workspace_id>/config.yaml.
type Server struct {
	Root      string
	Token     string        // required as "Authorization: Bearer <Token>"
	Latency   time.Duration // added to every request, as a remote host would
	ErrorRate float64       // fraction of requests answered 503, for retries
}

var workspaceID = regexp.MustCompile(`^[0-9a-fA-F-]{36}$`)

// Response is the files API's JSON body.
type Response struct {
	Path    string `json:"path"`
	Content string `json:"content"`
	Size    int    `json:"size"`
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.Latency > 0 {
		t := time.NewTimer(s.Latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+s.Token {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if s.ErrorRate > 0 && rand.Float64() < s.ErrorRate {
		http.Error(w, `{"error":"upstream unavailable"}`, http.StatusServiceUnavailable)
		return
	}
	id := r.PathValue("id")
	// The files API's path names its root; the plain one has none.
	filesAPI := strings.HasPrefix(r.URL.Path, "/workspaces/")
	if !workspaceID.MatchString(id) || (filesAPI && r.URL.Query().Get("root") != "/configs") {
		http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
		return
	}
	b, err := os.ReadFile(filepath.Join(s.Root, id, "config.yaml"))
	if errors.Is(err, fs.ErrNotExist) {
		http.Error(w, `{"error":"not found"}`, http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, `{"error":"read failed"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Molecule-Files-Source", "container")
	json.NewEncoder(w).Encode(Response{Path: "/configs/config.yaml", Content: string(b), Size: len(b)})
}

// Handler returns a mux routing the files API's read path and the plain
// config path to s.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /workspaces/{id}/files/config.yaml", s)
	mux.Handle("GET /configs/{id}/config.yaml", s)
	return mux
}

// WriteConfig replaces a workspace's config atomically (write, then rename),
// as a restart does, so a concurrent reader sees the old bytes or the new
// ones, never a mix.
func WriteConfig(root, id string, content []byte) error {
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(content); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, "config.yaml"))
}
