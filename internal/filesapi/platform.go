package filesapi

// Platform is the files API as the platform's workspace server really
// answers it, for the rehearsal fleet and for tests that must meet the
// platform's ways of misleading a client: ReadFile never says where its
// answer came from and falls back to the template folder named like the
// workspace; only ListFiles names its source; a hosted server's tenant
// guard answers a wrong org with a bare 404; every request, refused or
// not, counts against a per-org fixed-window rate limit.
//
// Platform is written from the behaviour the platform documents and shows,
// not from its code.

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Header and value names of the platform's files API.
const (
	// HeaderSource is set on ListFiles' 200s only, never on ReadFile.
	HeaderSource = "X-Molecule-Files-Source"
	// HeaderOrg routes a request to its tenant on hosted servers.
	HeaderOrg = "X-Molecule-Org-Id"

	SourceEIC         = "eic"
	SourceContainer   = "container"
	SourceHostMirror  = "host-mirror"
	SourceTemplateDir = "template-dir"
	SourceNone        = "none"

	// CodeOrgHeaderRequired is the code of the 400 a hosted server gives a
	// request without HeaderOrg.
	CodeOrgHeaderRequired = "TENANT_ORG_HEADER_REQUIRED"

	// MaxContainerRead is where a read through a container is cut, silently.
	MaxContainerRead = 5 << 20

	// DefaultRateLimit is the platform's limit per org per minute.
	DefaultRateLimit = 600
)

// Error bodies the platform sends; clients tell 404s apart only by these.
const (
	ErrWorkspaceNotFound = "workspace not found"
	ErrNoTemplate        = "file not found (container offline, no template)"
	ErrNotOnWorkspace    = "file not found on workspace"
	ErrNotInMirror       = "file not found in workspace /configs"
	ErrFileNotFound      = "file not found"
	ErrRateLimited       = "rate limit exceeded"
)

// Roots the platform accepts in ?root=, in the order its error lists them.
var roots = []string{"/configs", "/workspace", "/home", "/plugins", "/agent-home"}

// Workspace is what the server's lookup reads of a row. The lookup has no
// status filter: a removed row is still served.
type Workspace struct {
	Name       string
	InstanceID string // "" for NULL
}

// Host is where a workspace server finds a workspace's files.
type Host interface {
	// Workspace returns the row with this id, whatever its status.
	Workspace(id string) (Workspace, bool)
	// Instance returns the /configs directory of the EC2 instance
	// instanceID as read over EC2 Instance Connect; ok is false when the
	// instance cannot be reached (it was terminated on hibernation).
	Instance(instanceID string) (configs string, ok bool)
	// Container returns the /configs directory of the RUNNING container
	// called name on the server's own Docker host; ok is false when there is
	// none, or it is stopped.
	Container(name string) (configs string, ok bool)
}

// Platform serves GET /workspaces/{id}/files (ListFiles) and
// GET /workspaces/{id}/files/{path...} (ReadFile) for root=/configs.
type Platform struct {
	Host Host
	// StateDir holds the host mirror, StateDir/<id>/configs: the bundle of
	// each workspace's last provision. "" when the server keeps none, as
	// self-hosted servers do.
	StateDir string
	// TemplateDirs are searched in order for the folder named like the
	// workspace: the template cache, then CONFIGS_DIR.
	TemplateDirs []string
	// OrgID, when set, is the hosted tenant guard's org: X-Molecule-Org-Id
	// must be present and equal to it. "" is a self-hosted server, which
	// ignores the header.
	OrgID string
	// Token is required as "Authorization: Bearer <Token>".
	Token string
	// Limiter is the per-org rate limit; nil is the platform's dev mode (no
	// limiting, X-RateLimit-Limit: unlimited).
	Limiter *RateLimiter
	// Latency is added to every request, as a remote server would.
	Latency time.Duration
	// ErrorRate is the fraction of requests a proxy in front of the server
	// answers 503, before the server (and its rate limit) sees them.
	ErrorRate float64
	// AfterRead, when set, runs after a successful ReadFile and before its
	// response is written; an error turns the response into a 500. The
	// simulator uses it to retire a workspace the moment it was read.
	AfterRead func(ctx context.Context, id string) error
}

// ListEntry is one element of ListFiles' bare JSON array.
type ListEntry struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
	Dir  bool   `json:"dir"`
}

// Handler returns the server: the proxy's 503s, then the rate limit (which
// counts every request that reaches the server, refused or not), then the
// tenant guard, then the routes and their token check.
func (p *Platform) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /workspaces/{id}/files", p.listFiles)
	mux.HandleFunc("GET /workspaces/{id}/files/{path...}", p.readFile)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.Latency > 0 {
			t := time.NewTimer(p.Latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if p.ErrorRate > 0 && rand.Float64() < p.ErrorRate {
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "upstream unavailable"})
			return
		}
		if !p.Limiter.serve(w, r) {
			return
		}
		if p.OrgID != "" {
			switch org := r.Header.Get(HeaderOrg); {
			case org == "":
				writeJSON(w, http.StatusBadRequest, map[string]any{
					"error": "missing tenant routing header", "code": CodeOrgHeaderRequired,
					"required_header": HeaderOrg, "detail": "requests to this tenant must name its org in " + HeaderOrg,
				})
				return
			case org != p.OrgID:
				// The platform hides whether the org exists: nothing but
				// the status, the same one an unknown workspace gets.
				w.WriteHeader(http.StatusNotFound)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// authorized is the workspace auth check.
func (p *Platform) authorized(w http.ResponseWriter, r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	switch {
	case auth == "":
		writeError(w, http.StatusUnauthorized, "missing workspace auth token")
		return false
	case auth != "Bearer "+p.Token:
		writeError(w, http.StatusUnauthorized, "invalid workspace auth token")
		return false
	}
	return true
}

// root validates ?root=; only /configs has anything to serve here.
func root(w http.ResponseWriter, r *http.Request) bool {
	rt := r.URL.Query().Get("root")
	if rt == "" {
		rt = "/configs"
	}
	switch {
	case rt == "/configs":
		return true
	case rt == "/agent-home":
		writeError(w, http.StatusNotImplemented, "root /agent-home is not implemented")
	case contains(roots, rt):
		writeError(w, http.StatusNotImplemented, "this simulated server serves only root=/configs")
	default:
		writeError(w, http.StatusBadRequest, "root must be one of: "+strings.Join(roots, ", "))
	}
	return false
}

// cleanRel accepts a relative path that stays below the root.
func cleanRel(p string) (string, bool) {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || path.Clean(p) != p || p == "." ||
		p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return filepath.FromSlash(p), true
}

func (p *Platform) readFile(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(w, r) || !root(w, r) {
		return
	}
	rel, ok := cleanRel(r.PathValue("path"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid path")
		return
	}
	id := r.PathValue("id")
	ws, ok := p.Host.Workspace(id)
	if !ok {
		writeError(w, http.StatusNotFound, ErrWorkspaceNotFound)
		return
	}
	content, status, msg := p.read(id, ws, rel)
	if status != http.StatusOK {
		writeError(w, status, msg)
		return
	}
	if p.AfterRead != nil {
		if err := p.AfterRead(r.Context(), id); err != nil {
			writeError(w, http.StatusInternalServerError, "internal error")
			return
		}
	}
	// size is the content's byte length before JSON encoding, which
	// replaces invalid UTF-8 with U+FFFD: no answer is byte-exact then.
	writeJSON(w, http.StatusOK, map[string]any{"path": r.PathValue("path"), "content": content, "size": len(content)})
}

// read is ReadFile's chain: EC2 (final), running container, host mirror,
// template folder. It sets no source anywhere.
func (p *Platform) read(id string, ws Workspace, rel string) (string, int, string) {
	if isEC2(ws.InstanceID) {
		dir, ok := p.Host.Instance(ws.InstanceID)
		if !ok {
			return "", http.StatusInternalServerError, "failed to read file: ec2 instance connect: instance " + ws.InstanceID + " is not running"
		}
		b, err := os.ReadFile(filepath.Join(dir, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", http.StatusNotFound, ErrNotOnWorkspace
		case err != nil:
			return "", http.StatusInternalServerError, "failed to read file: " + err.Error()
		}
		return string(b), http.StatusOK, ""
	}
	if dir, ok := p.findContainer(id, ws); ok {
		// cat in the container: a failure (no such file) falls through
		// silently; output is cut at 5 MiB and trimmed of white space.
		if b, err := readCapped(filepath.Join(dir, rel), MaxContainerRead); err == nil {
			return strings.TrimSpace(string(b)), http.StatusOK, ""
		}
	}
	if dir, ok := p.mirror(id); ok {
		b, err := os.ReadFile(filepath.Join(dir, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return "", http.StatusNotFound, ErrNotInMirror
		case err != nil:
			return "", http.StatusInternalServerError, "failed to read file: " + err.Error()
		}
		return string(b), http.StatusOK, ""
	}
	dir, ok := ResolveTemplateDir(p.TemplateDirs, ws.Name)
	if !ok {
		return "", http.StatusNotFound, ErrNoTemplate
	}
	b, err := os.ReadFile(filepath.Join(dir, rel))
	if err != nil {
		return "", http.StatusNotFound, ErrFileNotFound
	}
	return string(b), http.StatusOK, ""
}

func (p *Platform) listFiles(w http.ResponseWriter, r *http.Request) {
	if !p.authorized(w, r) || !root(w, r) {
		return
	}
	q := r.URL.Query()
	depth := 1
	if d := q.Get("depth"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 5 {
			writeError(w, http.StatusBadRequest, "depth must be between 1 and 5")
			return
		}
		depth = n
	}
	sub := ""
	if s := strings.Trim(q.Get("path"), "/"); s != "" {
		rel, ok := cleanRel(s)
		if !ok {
			writeError(w, http.StatusBadRequest, "invalid path")
			return
		}
		sub = rel
	}
	id := r.PathValue("id")
	ws, ok := p.Host.Workspace(id)
	if !ok {
		writeError(w, http.StatusNotFound, ErrWorkspaceNotFound)
		return
	}
	list := func(dir, source string) bool {
		// The host-side walk skips symbolic links; a shell's find and stat
		// in a container or on an instance list them.
		entries, err := listDir(dir, sub, depth, source == SourceHostMirror || source == SourceTemplateDir)
		if errors.Is(err, fs.ErrNotExist) && sub != "" {
			writeError(w, http.StatusNotFound, "path not found")
			return true
		}
		if err != nil {
			return false
		}
		w.Header().Set(HeaderSource, source)
		writeJSON(w, http.StatusOK, entries)
		return true
	}
	if isEC2(ws.InstanceID) {
		dir, ok := p.Host.Instance(ws.InstanceID)
		if !ok || !list(dir, SourceEIC) {
			writeError(w, http.StatusInternalServerError, "failed to list files: ec2 instance connect: instance "+ws.InstanceID+" is not running")
		}
		return
	}
	// A container listing proves nothing about ReadFile, whose cat may
	// fail and fall through without a word.
	if dir, ok := p.findContainer(id, ws); ok && list(dir, SourceContainer) {
		return
	}
	if dir, ok := p.mirror(id); ok && list(dir, SourceHostMirror) {
		return
	}
	if dir, ok := ResolveTemplateDir(p.TemplateDirs, ws.Name); ok && list(dir, SourceTemplateDir) {
		return
	}
	if sub != "" {
		writeError(w, http.StatusNotFound, "path not found")
		return
	}
	w.Header().Set(HeaderSource, SourceNone)
	writeJSON(w, http.StatusOK, []ListEntry{})
}

// findContainer is the first running container of the workspace's own
// (ws-<id>), then one named like the workspace. It never uses instance_id,
// so a hosted server does not find the containers it names there and
// answers from the host mirror.
func (p *Platform) findContainer(id string, ws Workspace) (string, bool) {
	names := []string{"ws-" + id}
	if n := ContainerName(ws.Name); plainName(n) {
		names = append(names, n)
	}
	for _, n := range names {
		if dir, ok := p.Host.Container(n); ok {
			return dir, true
		}
	}
	return "", false
}

func (p *Platform) mirror(id string) (string, bool) {
	if p.StateDir == "" || !plainName(id) {
		return "", false
	}
	dir := filepath.Join(p.StateDir, id, "configs")
	fi, err := os.Stat(dir)
	return dir, err == nil && fi.IsDir()
}

func isEC2(instanceID string) bool { return len(instanceID) > 2 && strings.HasPrefix(instanceID, "i-") }

// NormalizeName is the template folder name the platform derives from a
// workspace name (normalizeName, template_import.go): ASCII letters lower
// case, spaces and dashes as dashes, digits and underscores kept, anything
// else (dots, slashes, white space but the space, letters outside ASCII)
// dropped, not trimmed; "unnamed" when nothing is left.
func NormalizeName(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r == ' ' || r == '-':
			b.WriteByte('-')
		case 'A' <= r && r <= 'Z':
			b.WriteRune(r - 'A' + 'a')
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '_':
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return "unnamed"
	}
	return b.String()
}

// ContainerName is the container name the platform's findContainer tries
// for a workspace name when its own container is not running: SQL's
// LOWER(REPLACE(name, ' ', '-')), not trimmed.
func ContainerName(name string) string {
	return strings.ToLower(strings.ReplaceAll(name, " ", "-"))
}

// plainName accepts one path element that names nothing above it.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/\\\x00")
}

// ResolveTemplateDir finds the template folder the platform answers a
// workspace called name from (resolveTemplateDir, templates.go), in each of
// dirs in turn: the entry named NormalizeName(name); else a folder named
// ContainerName(name); else the first folder (in name order, ws-* skipped)
// whose config.yaml's first line starting "name:" (indented or not) names
// it, case folded, unquoted never. This is the fallback that hands a client
// a template's config as if it were the workspace's.
func ResolveTemplateDir(dirs []string, name string) (string, bool) {
	return resolveTemplate(dirs, name, func(dir string) fs.FS { return os.DirFS(dir) })
}

// ResolveTemplateFS is ResolveTemplateDir over one file system of template
// folders (the simulator's embedded catalog); it returns the folder's name.
func ResolveTemplateFS(fsys fs.FS, name string) (string, bool) {
	return resolveTemplate([]string{"."}, name, func(string) fs.FS { return fsys })
}

func resolveTemplate(dirs []string, name string, open func(string) fs.FS) (string, bool) {
	norm, plain := NormalizeName(name), ContainerName(name)
	for _, d := range dirs {
		fsys := open(d)
		// norm holds only [a-z0-9_-]: never a path step or separator.
		if _, err := fs.Stat(fsys, norm); err == nil {
			return filepath.Join(d, norm), true
		}
		ents, err := fs.ReadDir(fsys, ".")
		if err != nil {
			continue
		}
		for _, e := range ents {
			if e.IsDir() && e.Name() == plain {
				return filepath.Join(d, e.Name()), true
			}
		}
		for _, e := range ents {
			if !e.IsDir() || strings.HasPrefix(e.Name(), "ws-") {
				continue
			}
			if b, err := fs.ReadFile(fsys, path.Join(e.Name(), "config.yaml")); err == nil && NamedIn(string(b), name) {
				return filepath.Join(d, e.Name()), true
			}
		}
	}
	return "", false
}

// NamedIn reports whether a template's config.yaml names a workspace
// called name the way the platform's findTemplateByName reads it: its
// first line that, trimmed, starts with "name:", the rest trimmed and
// equal to name case folded (quotes are part of the value).
func NamedIn(config, name string) bool {
	for _, line := range strings.Split(config, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "name:"); ok {
			return strings.EqualFold(strings.TrimSpace(v), name)
		}
	}
	return false
}

// readCapped reads at most max bytes of a regular file, dropping the rest
// as the platform's capped exec output does.
func readCapped(name string, max int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file") // cat of a directory fails too
	}
	return io.ReadAll(io.LimitReader(f, max))
}

// listDir lists dir/sub to depth levels, paths relative to dir, sorted.
// Symbolic links are left out when skipLinks is set, as the platform's walk
// of a host-side tree leaves them out; otherwise each is listed as its
// shell listing gives it: a directory when it leads to one (test -d
// follows it; find does not descend), else a file of the link's own size
// (stat without -L).
func listDir(dir, sub string, depth int, skipLinks bool) ([]ListEntry, error) {
	base := filepath.Join(dir, sub)
	fi, err := os.Stat(base)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fs.ErrNotExist
	}
	out := []ListEntry{}
	var walk func(rel string, level int) error
	walk = func(rel string, level int) error {
		ents, err := os.ReadDir(filepath.Join(base, rel))
		if err != nil {
			return err
		}
		for _, e := range ents {
			p := path.Join(filepath.ToSlash(sub), filepath.ToSlash(rel), e.Name())
			if e.Type()&fs.ModeSymlink != 0 {
				if skipLinks {
					continue
				}
				if st, err := os.Stat(filepath.Join(base, rel, e.Name())); err == nil && st.IsDir() {
					out = append(out, ListEntry{Path: p, Dir: true})
					continue
				}
			}
			if e.IsDir() {
				out = append(out, ListEntry{Path: p, Dir: true})
				if level < depth {
					if err := walk(filepath.Join(rel, e.Name()), level+1); err != nil {
						return err
					}
				}
				continue
			}
			info, err := e.Info()
			if err != nil {
				continue // removed while listing
			}
			out = append(out, ListEntry{Path: p, Size: info.Size()})
		}
		return nil
	}
	if err := walk("", 1); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"internal error"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// RateLimiter is the platform's rate limit: Limit requests per Window per
// key, in a fixed window that starts at the key's first request (not on a
// clock boundary). The key is the raw X-Molecule-Org-Id header, else the
// bearer token's hash, else the client's address, so an org's own users
// and a backfill share one budget.
type RateLimiter struct {
	Limit  int
	Window time.Duration
	Now    func() time.Time // time.Now when nil; tests move it by hand

	mu      sync.Mutex
	windows map[string]*rateWindow
}

type rateWindow struct {
	start time.Time
	count int
}

// NewRateLimiter returns a limiter of limit requests per window.
func NewRateLimiter(limit int, window time.Duration) *RateLimiter {
	return &RateLimiter{Limit: limit, Window: window}
}

// Take counts one request for key and reports what is left of its window,
// the time until the window resets, and whether the request is allowed.
func (l *RateLimiter) Take(key string) (remaining int, reset time.Duration, ok bool) {
	now := time.Now()
	if l.Now != nil {
		now = l.Now()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.windows == nil {
		l.windows = map[string]*rateWindow{}
	}
	win, found := l.windows[key]
	if !found || !now.Before(win.start.Add(l.Window)) {
		if len(l.windows) > 10000 {
			// Keys are whatever clients send: drop windows that ended.
			for k, v := range l.windows {
				if !now.Before(v.start.Add(l.Window)) {
					delete(l.windows, k)
				}
			}
		}
		win = &rateWindow{start: now}
		l.windows[key] = win
	}
	win.count++
	return max(0, l.Limit-win.count), win.start.Add(l.Window).Sub(now), win.count <= l.Limit
}

// serve applies the limit to r, setting the X-RateLimit headers every
// response carries, and answers 429 itself when r is over the limit.
func (l *RateLimiter) serve(w http.ResponseWriter, r *http.Request) bool {
	if l == nil {
		w.Header().Set("X-RateLimit-Limit", "unlimited")
		return true
	}
	remaining, reset, ok := l.Take(rateKey(r))
	// Whole seconds, truncated: with under a second left both say 0.
	secs := int(reset / time.Second)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(l.Limit))
	h.Set("X-RateLimit-Remaining", strconv.Itoa(remaining))
	h.Set("X-RateLimit-Reset", strconv.Itoa(secs))
	if ok {
		return true
	}
	h.Set("Retry-After", strconv.Itoa(secs))
	writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": ErrRateLimited, "retry_after": secs})
	return false
}

func rateKey(r *http.Request) string {
	if org := r.Header.Get(HeaderOrg); org != "" {
		return "org:" + org
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && tok != "" {
		sum := sha256.Sum256([]byte(tok))
		return "tok:" + hex.EncodeToString(sum[:])
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "ip:" + host
}

// ParseRateLimit reads a limit written N/min, N/s, N/h or N/<duration>
// (40/5s); "0" or "unlimited" is no limit (nil window, zero limit).
func ParseRateLimit(s string) (limit int, window time.Duration, err error) {
	s = strings.TrimSpace(s)
	if s == "0" || s == "unlimited" {
		return 0, 0, nil
	}
	n, per, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, errors.New("want N/min, N/s or N/<duration> (e.g. 600/min, 40/5s), or unlimited")
	}
	limit, err = strconv.Atoi(n)
	if err != nil || limit < 1 {
		return 0, 0, errors.New("the count before / must be a positive integer")
	}
	switch per {
	case "s", "sec", "second":
		window = time.Second
	case "min", "minute", "m":
		window = time.Minute
	case "h", "hour":
		window = time.Hour
	default:
		window, err = time.ParseDuration(per)
		if err != nil || window < time.Second {
			return 0, 0, errors.New("the window after / must be min, s, h or a duration of at least 1s")
		}
	}
	return limit, window, nil
}
