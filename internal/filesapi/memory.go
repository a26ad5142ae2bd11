package filesapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MemoryWorkspace is one row a MemoryPlatform knows (its lookup has no
// status filter) and where its /configs/config.yaml can be read from. A nil
// pointer means that place has no copy.
type MemoryWorkspace struct {
	Name       string
	InstanceID string  // "i-…" reads over EIC and stops there
	EIC        *string // the instance's config (InstanceID "i-…")
	Container  *string // the running container's config; nil: not running (or no config in it)
	Running    bool    // the container is running (Container may still be nil: cat fails, the read falls through)
	Mirror     *string // the host mirror's config; nil: no mirror
	MirrorDir  bool    // the mirror directory exists (a nil Mirror then answers 404 "file not found in workspace /configs")
}

// MemoryPlatform is the files API of one tenant's workspace server with its
// workspaces held in memory, for tests that set up each place a config can
// be read from (EIC, container, host mirror, template folder) without
// laying out directories. It answers ListFiles and ReadFile of
// config.yaml with Platform's fallback chain, source header, org header
// rules, error bodies and fixed-window rate limit, and counts what it
// served. Two answers differ from Platform's: every token refusal says
// "missing workspace auth token", and X-RateLimit-Reset is rounded up.
type MemoryPlatform struct {
	// Org, when set, is the org the tenant guard requires in HeaderOrg
	// (hosted servers); empty ignores the header (self-hosted).
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
	AfterRead func(s *MemoryPlatform, id string)

	mu         sync.Mutex
	workspaces map[string]*MemoryWorkspace
	limiter    *RateLimiter
	requests   int
	throttled  int
	byPath     map[string]int
}

// Put adds or replaces a workspace.
func (s *MemoryPlatform) Put(id string, w MemoryWorkspace) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.workspaces == nil {
		s.workspaces = map[string]*MemoryWorkspace{}
	}
	s.workspaces[id] = &w
}

// Update changes a workspace in place (call it from AfterRead, or between
// requests).
func (s *MemoryPlatform) Update(id string, f func(w *MemoryWorkspace)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.workspaces[id]; w != nil {
		f(w)
	}
}

// Stats returns the requests answered, those answered 429, and requests
// per path.
func (s *MemoryPlatform) Stats() (requests, throttled int, byPath map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := map[string]int{}
	for k, v := range s.byPath {
		m[k] = v
	}
	return s.requests, s.throttled, m
}

// Ptr is a convenience for MemoryWorkspace's fields.
func Ptr(s string) *string { return &s }

// Handler routes the two files API paths.
func (s *MemoryPlatform) Handler() http.Handler {
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

// admit counts the request and applies the rate limit (Platform's
// RateLimiter: a fixed window per key from the key's first request), with
// its headers on every answer; rejected requests count too.
func (s *MemoryPlatform) admit(w http.ResponseWriter, r *http.Request) bool {
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
	if s.limiter == nil {
		win := s.Window
		if win <= 0 {
			win = time.Minute
		}
		s.limiter = NewRateLimiter(s.Limit, win)
	}
	l := s.limiter
	s.mu.Unlock()
	remaining, reset, ok := l.Take(rateKey(r))
	if !ok {
		s.mu.Lock()
		s.throttled++
		s.mu.Unlock()
	}
	secs := int(reset / time.Second) // Retry-After is truncated, as the platform's: it can be 0
	w.Header().Set("X-RateLimit-Limit", strconv.Itoa(s.Limit))
	w.Header().Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	w.Header().Set("X-RateLimit-Reset", strconv.Itoa(int((reset+time.Second-1)/time.Second)))
	if !ok {
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		writeJSONLine(w, http.StatusTooManyRequests, map[string]any{"error": ErrRateLimited, "retry_after": secs})
		return false
	}
	return true
}

// guard is the tenant guard, then WorkspaceAuth.
func (s *MemoryPlatform) guard(w http.ResponseWriter, r *http.Request) bool {
	if s.Org != "" {
		switch org := r.Header.Get(HeaderOrg); {
		case org == "":
			writeJSONLine(w, http.StatusBadRequest, map[string]string{"error": "missing tenant routing header",
				"code": CodeOrgHeaderRequired, "required_header": HeaderOrg, "detail": "this server is multi-tenant"})
			return false
		case org != s.Org:
			w.WriteHeader(http.StatusNotFound) // bare: no body
			return false
		}
	}
	if s.Token != "" && r.Header.Get("Authorization") != "Bearer "+s.Token {
		writeErrorLine(w, http.StatusUnauthorized, "missing workspace auth token")
		return false
	}
	return true
}

func (s *MemoryPlatform) lookup(w http.ResponseWriter, r *http.Request) (string, MemoryWorkspace, bool) {
	if root := r.URL.Query().Get("root"); root != "" && root != "/configs" {
		writeErrorLine(w, http.StatusBadRequest, "root must be one of: "+strings.Join(roots, ", "))
		return "", MemoryWorkspace{}, false
	}
	id := r.PathValue("id")
	s.mu.Lock()
	ws := s.workspaces[id]
	var cp MemoryWorkspace
	if ws != nil {
		cp = *ws
	}
	s.mu.Unlock()
	if ws == nil {
		writeErrorLine(w, http.StatusNotFound, ErrWorkspaceNotFound)
		return "", MemoryWorkspace{}, false
	}
	return id, cp, true
}

// templateFor resolves the template folder for a workspace name as
// ResolveTemplateDir does: the name normalised, the name lower-cased with
// dashes for spaces, or the first template (ws-* skipped) whose config
// names it.
func (s *MemoryPlatform) templateFor(name string) (*string, bool) {
	if c, ok := s.Templates[NormalizeName(name)]; ok {
		return c, true
	}
	if c, ok := s.Templates[ContainerName(name)]; ok {
		return c, true
	}
	names := make([]string, 0, len(s.Templates))
	for n := range s.Templates {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if c := s.Templates[n]; c != nil && !strings.HasPrefix(n, "ws-") && NamedIn(*c, name) {
			return c, true
		}
	}
	return nil, false
}

func entries(config *string) []ListEntry {
	if config == nil {
		return []ListEntry{}
	}
	return []ListEntry{{Path: "config.yaml", Size: int64(len(*config))}}
}

// list is ListFiles of root=/configs.
func (s *MemoryPlatform) list(w http.ResponseWriter, r *http.Request) {
	_, ws, ok := s.lookup(w, r)
	if !ok {
		return
	}
	src, files := SourceNone, []ListEntry{}
	switch {
	case isEC2(ws.InstanceID):
		src, files = SourceEIC, entries(ws.EIC)
	case ws.Running:
		src, files = SourceContainer, entries(ws.Container)
	case ws.MirrorDir || ws.Mirror != nil:
		src, files = SourceHostMirror, entries(ws.Mirror)
	default:
		s.mu.Lock()
		c, found := s.templateFor(ws.Name)
		s.mu.Unlock()
		if found {
			src, files = SourceTemplateDir, entries(c)
		}
	}
	w.Header().Set(HeaderSource, src)
	writeJSONLine(w, http.StatusOK, files)
}

// read is ReadFile of config.yaml: the first place that has it, with no
// header saying which.
func (s *MemoryPlatform) read(w http.ResponseWriter, r *http.Request) {
	id, ws, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if r.PathValue("path") != "config.yaml" {
		writeErrorLine(w, http.StatusNotFound, ErrFileNotFound)
		return
	}
	defer func() {
		if s.AfterRead != nil {
			s.AfterRead(s, id)
		}
	}()
	answer := func(c string) {
		writeJSONLine(w, http.StatusOK, map[string]any{"path": "config.yaml", "content": c, "size": len(c)})
	}
	if isEC2(ws.InstanceID) {
		if ws.EIC == nil {
			writeErrorLine(w, http.StatusNotFound, ErrNotOnWorkspace)
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
			writeErrorLine(w, http.StatusNotFound, ErrNotInMirror)
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
		writeErrorLine(w, http.StatusNotFound, ErrNoTemplate)
	case c == nil:
		writeErrorLine(w, http.StatusNotFound, ErrFileNotFound)
	default:
		answer(*c)
	}
}

// writeJSONLine writes v as json.Encoder does, newline included: the bytes
// tests of MemoryPlatform have always seen.
func writeJSONLine(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErrorLine(w http.ResponseWriter, code int, msg string) {
	writeJSONLine(w, code, map[string]string{"error": msg})
}
