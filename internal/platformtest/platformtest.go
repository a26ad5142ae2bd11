// Package platformtest is a stand-in for the platform's workspace server
// files API, for backfill's own tests: it answers ListFiles and ReadFile the
// way the platform's source does (the fallback chain, the headers, the error
// bodies, the tenant guard and the fixed-window rate limiter), so that tests
// of the files_api collector run against that shape over real loopback HTTP.
// Nothing in backfill proper imports it.
package platformtest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Workspace is one row the server knows (its lookup has no status filter)
// and where its /configs/config.yaml can be read from. A nil pointer means
// that place has no copy.
type Workspace struct {
	Name       string
	InstanceID string  // "i-…" reads over EIC and stops there
	EIC        *string // the instance's config (InstanceID "i-…")
	Container  *string // the running container's config; nil: not running (or no config in it)
	Running    bool    // the container is running (Container may still be nil: cat fails, the read falls through)
	Mirror     *string // the host mirror's config; nil: no mirror
	MirrorDir  bool    // the mirror directory exists (a nil Mirror then answers 404 "file not found in workspace /configs")
}

// Server is the files API of one tenant's workspace server.
type Server struct {
	// Org, when set, is the org the tenant guard requires in
	// X-Molecule-Org-Id (hosted servers); empty ignores the header
	// (self-hosted).
	Org string
	// Token is required as "Authorization: Bearer <Token>" when set.
	Token string
	// Limit is the rate limit's requests per Window per key; 0: none.
	Limit  int
	Window time.Duration // default one minute, as the platform's
	// Templates are the template cache's folders: name -> config.yaml
	// (nil: a folder without one).
	Templates map[string]*string
	// AfterRead, when set, runs after each ReadFile is answered, before
	// the client can list again: a test changes a workspace there.
	AfterRead func(s *Server, id string)

	mu         sync.Mutex
	workspaces map[string]*Workspace
	windows    map[string]*window
	requests   int
	throttled  int
	byPath     map[string]int
}

type window struct {
	start time.Time
	count int
}

// Put adds or replaces a workspace.
func (s *Server) Put(id string, w Workspace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workspaces == nil {
		s.workspaces = map[string]*Workspace{}
	}
	s.workspaces[id] = &w
}

// Update changes a workspace in place (call it from AfterRead, or between
// requests).
func (s *Server) Update(id string, f func(w *Workspace)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workspaces[id]; w != nil {
		f(w)
	}
}

// Stats returns the requests answered, those answered 429, and requests
// per path.
func (s *Server) Stats() (requests, throttled int, byPath map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for k, v := range s.byPath {
		m[k] = v
	}
	return s.requests, s.throttled, m
}

// Ptr is a convenience for Workspace's fields.
func Ptr(s string) *string { return &s }

// Handler routes the two files API paths.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /workspaces/{id}/files", s.list)
	mux.HandleFunc("GET /workspaces/{id}/files/{path...}", s.read)
	// The global middleware (rate limit) runs before routing decides
	// anything, as the platform's does.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.admit(w, r) {
			return
		}
		if !s.guard(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

type errBody struct {
	Error string `json:"error"`
}

// admit is the rate limiter: a fixed window per key starting at the key's
// first request; headers on every answer; rejected requests count.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) bool {
	s.mu.Lock()
	s.requests++
	if s.byPath == nil {
		s.byPath = map[string]int{}
	}
	s.byPath[r.URL.Path]++
	if s.Limit <= 0 {
		s.mu.Unlock()
		return true
	}
	win := s.Window
	if win <= 0 {
		win = time.Minute
	}
	key := "ip:" + strings.Split(r.RemoteAddr, ":")[0]
	if org := r.Header.Get("X-Molecule-Org-Id"); org != "" {
		key = "org:" + org
	} else if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		sum := sha256.Sum256([]byte(tok))
		key = "tok:" + hex.EncodeToString(sum[:])
	}
	if s.windows == nil {
		s.windows = map[string]*window{}
	}
	now := time.Now()
	wd := s.windows[key]
	if wd == nil || now.Sub(wd.start) >= win {
		wd = &window{start: now}
		s.windows[key] = wd
	}
	wd.count++
	reset := wd.start.Add(win).Sub(now)
	remaining := max(s.Limit-wd.count, 0)
	over := wd.count > s.Limit
	if over {
		s.throttled++
	}
	s.mu.Unlock()
	secs := int(reset / time.Second) // Retry-After is truncated, as the platform's: it can be 0
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.Limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.Itoa(int((reset+time.Second-1)/time.Second)))
	if over {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": "rate limit exceeded", "retry_after": secs})
		return false
	}
	return true
}

// guard is the tenant guard, then WorkspaceAuth.
func (s *Server) guard(w http.ResponseWriter, r *http.Request) bool {
	if s.Org != "" {
		switch org := r.Header.Get("X-Molecule-Org-Id"); {
		case org == "":
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "missing tenant routing header",
				"code": "TENANT_ORG_HEADER_REQUIRED", "required_header": "X-Molecule-Org-Id", "detail": "this server is multi-tenant"})
			return false
		case org != s.Org:
			w.WriteHeader(http.StatusNotFound) // bare: no body
			return false
		}
	}
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		writeJSON(w, http.StatusUnauthorized, errBody{"missing workspace auth token"})
		return false
	}
	return true
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (string, Workspace, bool) {
	if root := r.URL.Query().Get("root"); root != "" && root != "/configs" {
		writeJSON(w, http.StatusBadRequest, errBody{"root must be one of: /configs, /workspace, /home, /plugins, /agent-home"})
		return "", Workspace{}, false
	}
	id := r.PathValue("id")
	s.mu.Lock()
	ws := s.workspaces[id]
	var cp Workspace
	if ws != nil {
		cp = *ws
	}
	s.mu.Unlock()
	if ws == nil {
		writeJSON(w, http.StatusNotFound, errBody{"workspace not found"})
		return "", Workspace{}, false
	}
	return id, cp, true
}

// templateFor resolves the template folder for a workspace name: the name
// normalised, or a template whose config's first name: line matches.
func (s *Server) templateFor(name string) (*string, bool) {
	norm := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(name)), " ", "-")
	if c, ok := s.Templates[norm]; ok {
		return c, true
	}
	names := make([]string, 0, len(s.Templates))
	for n := range s.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := s.Templates[n]
		if c == nil {
			continue
		}
		for _, line := range strings.Split(*c, "\n") {
			if v, ok := strings.CutPrefix(line, "name:"); ok {
				if strings.EqualFold(strings.Trim(strings.TrimSpace(v), `"'`), strings.TrimSpace(name)) {
					return c, true
				}
				break
			}
		}
	}
	return nil, false
}

type entry struct {
	Path string `json:"path"`
	Size int    `json:"size"`
	Dir  bool   `json:"dir"`
}

func entries(config *string) []entry {
	if config == nil {
		return []entry{}
	}
	return []entry{{Path: "config.yaml", Size: len(*config)}}
}

// list is ListFiles of root=/configs.
func (s *Server) list(w http.ResponseWriter, r *http.Request) {
	_, ws, ok := s.lookup(w, r)
	if !ok {
		return
	}
	src, files := "none", []entry{}
	switch {
	case strings.HasPrefix(ws.InstanceID, "i-") && len(ws.InstanceID) > 2:
		src, files = "eic", entries(ws.EIC)
	case ws.Running:
		src, files = "container", entries(ws.Container)
	case ws.MirrorDir || ws.Mirror != nil:
		src, files = "host-mirror", entries(ws.Mirror)
	default:
		s.mu.Lock()
		c, found := s.templateFor(ws.Name)
		s.mu.Unlock()
		if found {
			src, files = "template-dir", entries(c)
		}
	}
	w.Header().Set("X-Molecule-Files-Source", src)
	writeJSON(w, http.StatusOK, files)
}

// read is ReadFile of config.yaml: the first place that has it, with no
// header saying which.
func (s *Server) read(w http.ResponseWriter, r *http.Request) {
	id, ws, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if r.PathValue("path") != "config.yaml" {
		writeJSON(w, http.StatusNotFound, errBody{"file not found"})
		return
	}
	defer func() {
		if s.AfterRead != nil {
			s.AfterRead(s, id)
		}
	}()
	answer := func(c string) {
		writeJSON(w, http.StatusOK, map[string]any{"path": "config.yaml", "content": c, "size": len(c)})
	}
	if strings.HasPrefix(ws.InstanceID, "i-") && len(ws.InstanceID) > 2 {
		if ws.EIC == nil {
			writeJSON(w, http.StatusNotFound, errBody{"file not found on workspace"})
			return
		}
		answer(*ws.EIC)
		return
	}
	if ws.Running && ws.Container != nil {
		answer(strings.TrimSpace(*ws.Container))
		return
	}
	if ws.MirrorDir || ws.Mirror != nil {
		if ws.Mirror == nil {
			writeJSON(w, http.StatusNotFound, errBody{"file not found in workspace /configs"})
			return
		}
		answer(*ws.Mirror)
		return
	}
	s.mu.Lock()
	c, found := s.templateFor(ws.Name)
	s.mu.Unlock()
	switch {
	case !found:
		writeJSON(w, http.StatusNotFound, errBody{"file not found (container offline, no template)"})
	case c == nil:
		writeJSON(w, http.StatusNotFound, errBody{"file not found"})
	default:
		answer(*c)
	}
}
