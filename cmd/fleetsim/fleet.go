package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"backfill/internal/filesapi"
	"backfill/internal/pgtest"
)

// options are fleetsim's flags.
type options struct {
	Dir        string
	Tenants    int
	Workspaces int
	Seed       uint64
	PG         string // existing server to create databases on; "" starts a private cluster
	Latency    time.Duration
	ErrorRate  float64
	WaveAfter  time.Duration // 0: no restart wave
	WaveRate   float64       // overwrites per second
	// RateLimit requests per RateWindow per org on each files API server;
	// 0 is no limit (the platform's dev mode).
	RateLimit  int
	RateWindow time.Duration
	// FilesAPIRate is the inventory's files_api rate (requests a second
	// per tenant); 0 leaves it to backfill's default.
	FilesAPIRate int
}

// Files fleetsim writes into DIR.
const (
	fileReady     = "ready"
	fileEnv       = "env"
	fileInventory = "inventory.yaml"
	fileCP        = "cp.csv"
	fileKey       = "answer-key.json"
	dirCatalog    = "catalog"
	fileWaveLog   = "restart-wave.log"
	fileWaveDone  = "restart-wave.done"
)

// fleet is a running simulated fleet.
type fleet struct {
	opts  options
	spec  *fleetSpec
	log   *log.Logger
	db    dbServer
	dir   string            // opts.Dir, absolute
	dsns  map[string]string // tenant -> DSN
	creds map[string]creds  // tenant -> files API token and org id
	hosts map[string]*tenantHost

	servers []*http.Server
	urls    map[string]string // tenant -> files API base URL

	stopWave context.CancelFunc
	waveDone chan struct{}
	closed   bool
}

// startFleet builds the fleet and returns once DIR/ready is written. On
// error everything started so far is stopped again.
func startFleet(ctx context.Context, o options, logw io.Writer) (_ *fleet, err error) {
	spec, err := design(o.Tenants, o.Workspaces, o.Seed)
	if err != nil {
		return nil, err
	}
	if err := emptyDir(o.Dir); err != nil {
		return nil, err
	}
	// Absolute: the inventory, the env file's PATH and bin/docker name
	// paths under DIR that must work from any directory.
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	f := &fleet{opts: o, spec: spec, log: log.New(logw, "fleetsim: ", 0), dir: dir, dsns: map[string]string{},
		creds: map[string]creds{}, hosts: map[string]*tenantHost{}, urls: map[string]string{}}
	defer func() {
		if err != nil {
			f.Close()
		}
	}()
	for _, t := range spec.Tenants {
		f.creds[t.Name] = newCreds()
	}

	// Through typed locals: a nil *pgServer in the interface would not be nil.
	if o.PG != "" {
		s, err := newPGServer(ctx, o.PG)
		if err != nil {
			return nil, err
		}
		f.db = s
	} else {
		s, err := newClusterServer()
		if err != nil {
			return nil, err
		}
		f.db = s
	}
	for _, t := range spec.Tenants {
		dsn, err := f.db.create(ctx, t.Name)
		if err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
		f.dsns[t.Name] = dsn
		if err := insertRows(ctx, dsn, t.Workspaces); err != nil {
			return nil, fmt.Errorf("tenant %s: %w", t.Name, err)
		}
	}
	if err := writeCatalog(filepath.Join(dir, dirCatalog), filepath.Join(dir, fileManifest)); err != nil {
		return nil, err
	}
	if err := writeHosts(dir, spec); err != nil {
		return nil, err
	}
	for _, t := range spec.Tenants {
		if err := f.serve(t); err != nil {
			return nil, err
		}
	}

	// PATH first: bin/docker must be the docker that backfill's exec
	// collector finds (it takes PATH from this environment).
	envNames := []string{"PATH"}
	envValues := map[string]string{"PATH": filepath.Join(dir, dirBin) + string(filepath.ListSeparator) + basePath()}
	for _, t := range spec.Tenants {
		envNames = append(envNames, t.DSNEnv, t.TokenEnv, t.OrgEnv)
		envValues[t.DSNEnv] = f.dsns[t.Name]
		envValues[t.TokenEnv] = f.creds[t.Name].token
		envValues[t.OrgEnv] = f.creds[t.Name].org
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{fileEnv, envFile(envNames, envValues), 0o600},
		{fileInventory, spec.inventory(f.urls, dir, o.FilesAPIRate), 0o644},
		{fileCP, spec.cpCSV(), 0o644},
		{fileKey, spec.key().marshal(), 0o644},
	}
	for _, fl := range files {
		if err := writeAtomic(filepath.Join(o.Dir, fl.name), fl.data, fl.mode); err != nil {
			return nil, err
		}
	}
	if o.WaveAfter > 0 {
		f.startWave(o.WaveAfter, o.WaveRate)
	}
	ready := fmt.Appendf(nil, "pid %d\n", os.Getpid())
	if err := writeAtomic(filepath.Join(o.Dir, fileReady), ready, 0o644); err != nil {
		return nil, err
	}
	return f, nil
}

// creds are a tenant's files API token and org id.
type creds struct{ token, org string }

func newCreds() creds {
	b := make([]byte, 32)
	rand.Read(b)
	b[22] = b[22]&0x0f | 0x40 // the org id is a version 4 UUID
	b[24] = b[24]&0x3f | 0x80
	o := b[16:]
	return creds{
		token: "fleet-" + hex.EncodeToString(b[:16]),
		org:   fmt.Sprintf("%x-%x-%x-%x-%x", o[0:4], o[4:6], o[6:8], o[8:10], o[10:16]),
	}
}

// basePath is the PATH the env file puts after DIR/bin: fleetsim's own, or
// the usual system directories when it has none.
func basePath() string {
	if p := os.Getenv("PATH"); p != "" {
		return p
	}
	return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
}

// Close stops the restart wave and the files API servers, drops the
// databases (or the whole private cluster) and removes DIR/ready, so
// nothing polls a dead fleet as ready. The other files stay for a look.
func (f *fleet) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	var errs []error
	if f.stopWave != nil {
		f.stopWave()
		<-f.waveDone
	}
	for _, s := range f.servers {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.Shutdown(ctx); err != nil {
			s.Close()
		}
		cancel()
	}
	if f.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		errs = append(errs, f.db.close(ctx))
		cancel()
	}
	if err := os.Remove(filepath.Join(f.opts.Dir, fileReady)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// emptyDir creates dir, or accepts it when it exists and is empty: files
// of an earlier fleet would mix two answer keys.
func emptyDir(dir string) error {
	if dir == "" {
		return errors.New("--dir is required")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	if len(ents) > 0 {
		return fmt.Errorf("--dir %s is not empty; give a new or empty directory", dir)
	}
	return nil
}

// writeAtomic writes a file whole or not at all, so a script polling for it
// never reads half of it.
func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// writeCatalog writes the template cache to dst and the manifest to
// manifest: like the platform's cache, the folder holds templates only.
func writeCatalog(dst, manifest string) error {
	return fs.WalkDir(templateFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out := filepath.Join(dst, filepath.FromSlash(p))
		if p == fileManifest {
			out = manifest
		}
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := fs.ReadFile(templateFS, p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
}

// insertRows writes a tenant's rows in one transaction, parents first (the
// concierge comes first in each tenant).
func insertRows(ctx context.Context, dsn string, rows []*workspaceSpec) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.Background())
	for _, w := range rows {
		var parent *string
		if w.ParentID != "" {
			parent = &w.ParentID
		}
		var instance *string
		if w.InstanceID != "" {
			instance = &w.InstanceID
		}
		q := `INSERT INTO workspaces (id, name, runtime, template, status, kind, instance_id, parent_id)
  VALUES ($1, $2, $3, $4, $5::workspace_status, $6, $7, $8)`
		args := []any{w.ID, w.Name, w.Runtime, w.Template, w.Status, w.Kind, instance, parent}
		if w.RuntimeDefaulted {
			q = `INSERT INTO workspaces (id, name, template, status, kind, instance_id, parent_id)
  VALUES ($1, $2, $3, $4::workspace_status, $5, $6, $7)`
			args = append(args[:2], args[3:]...)
		}
		if _, err := tx.Exec(ctx, q, args...); err != nil {
			return fmt.Errorf("insert workspace %s: %w", w.ID, err)
		}
	}
	return tx.Commit(ctx)
}

// createWorkspace adds a workspace to the running fleet, as the platform's
// org and bundle imports still do (with an empty template unless w says
// otherwise): its row in the tenant's database, its files where the
// tenant's hosts keep them, and the row known to the tenant's server. The
// answer key, written at start, does not know it. Not safe to call from
// two goroutines at once.
func (f *fleet) createWorkspace(ctx context.Context, tenant string, w *workspaceSpec) error {
	var t *tenantSpec
	for _, tn := range f.spec.Tenants {
		if tn.Name == tenant {
			t = tn
		}
	}
	if t == nil {
		return fmt.Errorf("no tenant %q in the fleet", tenant)
	}
	// Files first: a row the database lists before its config exists
	// would be read as missing by a capture racing the creation.
	if err := writeWorkspace(f.dir, t, w); err != nil {
		return fmt.Errorf("tenant %s: workspace %s: %w", tenant, w.ID, err)
	}
	f.hosts[tenant].add(w)
	if err := insertRows(ctx, f.dsns[tenant], []*workspaceSpec{w}); err != nil {
		return fmt.Errorf("tenant %s: %w", tenant, err)
	}
	t.Workspaces = append(t.Workspaces, w)
	return nil
}

// serve starts a tenant's files API on its own loopback port, as each
// tenant runs its own workspace server.
func (f *fleet) serve(t *tenantSpec) error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	host := newTenantHost(f.dir, t)
	f.hosts[t.Name] = host
	api := f.platform(t, host)
	after := map[string]string{}
	for _, w := range t.Workspaces {
		if w.After != "" {
			after[w.ID] = w.After
		}
	}
	if len(after) > 0 {
		ac := &afterCapture{dsn: f.dsns[t.Name], tenant: t.Name, actions: after, host: host, log: f.log}
		api.AfterRead = ac.run
	}
	srv := &http.Server{Handler: api.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: f.log}
	f.servers = append(f.servers, srv)
	f.urls[t.Name] = "http://" + ln.Addr().String()
	go srv.Serve(ln)
	return nil
}

// platform is a tenant's files API server without its listener: hosted
// servers guard the org and keep host mirrors; self-hosted ones do neither.
func (f *fleet) platform(t *tenantSpec, host *tenantHost) *filesapi.Platform {
	p := &filesapi.Platform{
		Host:         host,
		TemplateDirs: []string{filepath.Join(f.dir, dirCatalog)},
		Token:        f.creds[t.Name].token,
		Latency:      f.opts.Latency,
		ErrorRate:    f.opts.ErrorRate,
	}
	if t.hosted() {
		p.OrgID = f.creds[t.Name].org
		p.StateDir = filepath.Join(f.dir, dirHosted, t.Name, "state")
	}
	if f.opts.RateLimit > 0 {
		p.Limiter = filesapi.NewRateLimiter(f.opts.RateLimit, f.opts.RateWindow)
	}
	return p
}

// afterCapture removes or deletes a workspace's row once its config has
// been read, before the response leaves: when snapshot has the capture,
// the row is already gone, so plan finds it removed whatever the timing.
type afterCapture struct {
	dsn     string
	tenant  string
	actions map[string]string // workspace id -> afterRemove or afterDelete
	host    *tenantHost
	log     *log.Logger

	mu   sync.Mutex
	done map[string]bool
}

// run is the files API's AfterRead hook.
func (h *afterCapture) run(ctx context.Context, id string) error {
	act, ok := h.actions[id]
	if !ok {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.done[id] {
		return nil
	}
	if err := h.apply(ctx, id, act); err != nil {
		h.log.Printf("tenant %s: workspace %s: %s after capture: %v", h.tenant, id, act, err)
		return err
	}
	if h.done == nil {
		h.done = map[string]bool{}
	}
	h.done[id] = true
	what := "set to status removed"
	if act == afterDelete {
		what = "deleted"
		h.host.forget(id)
	}
	h.log.Printf("tenant %s: workspace %s read, then its row %s (gone between snapshot and plan)", h.tenant, id, what)
	return nil
}

func (h *afterCapture) apply(ctx context.Context, id, act string) error {
	conn, err := pgx.Connect(ctx, h.dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	q := `UPDATE workspaces SET status = 'removed', updated_at = now() WHERE id = $1`
	if act == afterDelete {
		q = `DELETE FROM workspaces WHERE id = $1`
	}
	_, err = conn.Exec(ctx, q, id)
	return err
}

// waveTarget is one live config the restart wave overwrites.
type waveTarget struct {
	tenant string
	w      *workspaceSpec
	stores []string // the directories it is written to
}

// waveOrder is the restart wave's order: custom configs first, then the
// runtime defaults, each group shuffled by the seed so that restarts hit
// tenants interleaved. Workspaces without a live config anything can read,
// or about to be removed, are not restarted.
func (s *fleetSpec) waveOrder(dir string) []waveTarget {
	var custom, defaults []waveTarget
	for _, t := range s.Tenants {
		for _, w := range t.Workspaces {
			stores := t.stores(dir, w)
			if w.Live == nil || w.After != "" || len(stores) == 0 {
				continue
			}
			wt := waveTarget{t.Name, w, stores}
			if w.custom() {
				custom = append(custom, wt)
			} else {
				defaults = append(defaults, wt)
			}
		}
	}
	rng := mrand.New(mrand.NewPCG(s.Seed, 0x77617665))
	rng.Shuffle(len(custom), func(i, j int) { custom[i], custom[j] = custom[j], custom[i] })
	rng.Shuffle(len(defaults), func(i, j int) { defaults[i], defaults[j] = defaults[j], defaults[i] })
	return append(custom, defaults...)
}

// startWave overwrites live configs with their runtime's default, as
// platform restarts do, starting after delay at rate per second. Each
// overwrite is a line in DIR/restart-wave.log; DIR/restart-wave.done
// appears when all are done.
func (f *fleet) startWave(delay time.Duration, rate float64) {
	ctx, cancel := context.WithCancel(context.Background())
	f.stopWave, f.waveDone = cancel, make(chan struct{})
	targets := f.spec.waveOrder(f.dir)
	go func() {
		defer close(f.waveDone)
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		f.log.Printf("restart wave: started: %d live configs, %g a second, custom ones first", len(targets), rate)
		logf, err := os.OpenFile(filepath.Join(f.dir, fileWaveLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			f.log.Printf("restart wave: %v", err)
			return
		}
		defer logf.Close()
		// The ticker only paces; how many are due is computed from the
		// elapsed time, so a rate above the tick rate writes in batches.
		tick := max(time.Duration(float64(time.Second)/rate), time.Millisecond)
		ticker := time.NewTicker(tick)
		defer ticker.Stop()
		start, done := time.Now(), 0
		for done < len(targets) {
			due := min(len(targets), int(math.Floor(time.Since(start).Seconds()*rate))+1)
			for ; done < due; done++ {
				t := targets[done]
				for _, s := range t.stores {
					if err := writeAtomic(filepath.Join(s, "config.yaml"), t.w.restartConfig(), 0o644); err != nil {
						f.log.Printf("restart wave: %v", err)
						return
					}
				}
				kind, to := "default", defaultTemplate(t.w.Runtime)
				if t.w.custom() {
					kind = "custom"
				}
				if t.w.Kind == "platform" {
					to = "concierge-" + t.w.Runtime
				}
				fmt.Fprintf(logf, "%s %s %s %s -> %s\n", time.Now().UTC().Format(time.RFC3339Nano), t.tenant, t.w.ID, kind, to)
			}
			if done == len(targets) {
				break
			}
			select {
			case <-ctx.Done():
				f.log.Printf("restart wave: stopped after %d of %d", done, len(targets))
				return
			case <-ticker.C:
			}
		}
		f.log.Printf("restart wave: done, %d live configs overwritten with their runtime default", len(targets))
		if err := writeAtomic(filepath.Join(f.dir, fileWaveDone), fmt.Appendf(nil, "%d\n", len(targets)), 0o644); err != nil {
			f.log.Printf("restart wave: %v", err)
		}
	}()
}

// dbServer is where the tenant databases live.
type dbServer interface {
	// create makes a tenant database with the tenant schema and returns its DSN.
	create(ctx context.Context, tenant string) (string, error)
	// close drops what create made.
	close(ctx context.Context) error
	// String describes the server without secrets.
	String() string
}

// dbIdent turns a tenant slug into a database name part.
func dbIdent(tenant string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return '_'
	}, tenant)
}

// clusterServer is a private throwaway cluster; closing it removes it whole.
type clusterServer struct{ c *pgtest.Cluster }

func newClusterServer() (*clusterServer, error) {
	c, err := pgtest.Start()
	if err != nil {
		return nil, err
	}
	return &clusterServer{c}, nil
}

func (s *clusterServer) create(ctx context.Context, tenant string) (string, error) {
	return s.c.CreateDB(ctx, "tenant_"+dbIdent(tenant), true)
}

func (s *clusterServer) close(context.Context) error { s.c.Close(); return nil }

func (s *clusterServer) String() string {
	return "private PostgreSQL cluster in " + s.c.Dir()
}

// pgServer is an existing server: databases fleetsim_<run>_<tenant> are
// created there and dropped on close.
type pgServer struct {
	admin   string
	u       *url.URL
	prefix  string
	created []string
}

func newPGServer(ctx context.Context, dsn string) (*pgServer, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return nil, errors.New("--pg must be a postgres:// URL")
	}
	run := make([]byte, 4)
	rand.Read(run)
	s := &pgServer{admin: dsn, u: u, prefix: "fleetsim_" + hex.EncodeToString(run) + "_"}
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("--pg %s: %w", s, err)
	}
	conn.Close(context.Background())
	return s, nil
}

func (s *pgServer) dsn(db string) string {
	v := *s.u
	v.Path, v.RawPath = "/"+db, ""
	q := v.Query()
	q.Del("dbname") // would override the path
	v.RawQuery = q.Encode()
	return v.String()
}

func (s *pgServer) create(ctx context.Context, tenant string) (string, error) {
	name := s.prefix + dbIdent(tenant)
	admin, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return "", err
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" TEMPLATE template0"); err != nil {
		return "", err
	}
	s.created = append(s.created, name)
	dsn := s.dsn(name)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	// Without arguments Exec runs the whole multi-statement script.
	if _, err := conn.Exec(ctx, pgtest.TenantSchema); err != nil {
		return "", fmt.Errorf("applying tenant schema: %w", err)
	}
	return dsn, nil
}

func (s *pgServer) close(ctx context.Context) error {
	if len(s.created) == 0 {
		return nil
	}
	admin, err := pgx.Connect(ctx, s.admin)
	if err != nil {
		return fmt.Errorf("dropping fleet databases: %w", err)
	}
	defer admin.Close(context.Background())
	var errs []error
	for _, name := range s.created {
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			errs = append(errs, fmt.Errorf("dropping %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

func (s *pgServer) String() string {
	v := *s.u
	if v.User != nil {
		v.User = url.User(v.User.Username()) // never print the password
	}
	return v.String() + " (databases " + s.prefix + "*)"
}
