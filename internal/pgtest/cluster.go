// Package pgtest gives tests real, throwaway PostgreSQL databases: either a
// private cluster started from the system's PostgreSQL binaries or databases
// created on an existing server named by BACKFILL_TEST_DATABASE_URL.
package pgtest

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// TenantSchema is the tenant database schema (embedded tenant-schema.sql).
//
//go:embed tenant-schema.sql
var TenantSchema string

const (
	// superuser is the role initdb creates; trust auth means no password.
	superuser = "postgres"
	// port only names the socket file (.s.PGSQL.<port>); each cluster has its
	// own socket directory, so clusters never collide on it.
	port = 5432
	// readyTimeout bounds server startup, including crash recovery after a
	// killed server.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds a fast shutdown before the server is killed.
	stopTimeout = 60 * time.Second
)

// Cluster is a throwaway PostgreSQL server started from the system's binaries.
type Cluster struct {
	dir      string // temp dir: holds data/, the socket and the log
	dataDir  string
	logPath  string
	postgres string
	cred     *syscall.Credential // nil unless we must drop root
	srv      *server

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been reaped
	exitErr error         // cmd.Wait's result, valid once exited is closed
	closed  bool
}

// Start initialises and starts a cluster in a fresh temp dir under /tmp,
// reachable only through a unix socket in that dir, with trust auth for the
// superuser "postgres". Settings favour speed over durability (fsync=off).
// When running as root the server runs as the "postgres" OS user, because
// initdb and postgres refuse to run as root.
func Start() (*Cluster, error) {
	bin, err := findBinDir()
	if err != nil {
		return nil, err
	}
	// A short dir under /tmp, not os.TempDir(): unix socket paths are limited
	// to ~107 bytes and TMPDIR may be long.
	dir, err := os.MkdirTemp("/tmp", "bfpg")
	if err != nil {
		return nil, fmt.Errorf("pgtest: creating cluster dir: %w", err)
	}
	c := &Cluster{
		dir:      dir,
		dataDir:  filepath.Join(dir, "data"),
		logPath:  filepath.Join(dir, "postgres.log"),
		postgres: filepath.Join(bin, "postgres"),
	}
	c.srv = &server{admin: c.DSN("postgres"), dsn: c.DSN}
	if err := c.init(filepath.Join(bin, "initdb")); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := c.Restart(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// init runs initdb, first arranging to run as the postgres user if we are root.
func (c *Cluster) init(initdb string) error {
	if os.Geteuid() == 0 {
		cred, err := postgresCredential()
		if err != nil {
			return err
		}
		if err := os.Chown(c.dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return fmt.Errorf("pgtest: chown %s to postgres: %w", c.dir, err)
		}
		c.cred = cred
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(initdb,
		"-D", c.dataDir,
		"-U", superuser,
		"--auth=trust",
		"--encoding=UTF8",
		"--locale=C", // independent of whatever locales the machine has
		"--no-sync",  // the cluster is thrown away; skip the fsyncs
	)
	c.prepare(cmd, logf)
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("pgtest: running %s: %w", initdb, err)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("pgtest: initdb failed: %w\n%s", err, c.logTail())
	}
	return nil
}

// prepare sets up cmd to run in the cluster dir, as the right user, writing to
// out, and to die with the test binary.
func (c *Cluster) prepare(cmd *exec.Cmd, out io.Writer) {
	cmd.Dir = c.dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: c.cred,
		// A test binary that crashes or is killed must not leak a server.
		Pdeathsig: syscall.SIGKILL,
	}
}

// DSN returns a pgx-compatible URL for database db on this cluster.
func (c *Cluster) DSN(db string) string {
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable",
		superuser, pathEscape(db), c.dir, port)
}

// Dir returns the cluster's temp dir, which holds the data directory, the
// unix socket and the server log (postgres.log).
func (c *Cluster) Dir() string { return c.dir }

// CreateDB creates a fresh database, empty or with TenantSchema when tenant is
// true, and returns its DSN.
func (c *Cluster) CreateDB(ctx context.Context, name string, tenant bool) (string, error) {
	return c.srv.createDB(ctx, name, tenant)
}

// Stop stops the server with a fast shutdown and waits for it to exit. It is
// a no-op when the server is not running.
func (c *Cluster) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopLocked()
}

func (c *Cluster) stopLocked() error {
	if c.cmd == nil {
		return nil
	}
	defer func() { c.cmd = nil }()
	select {
	case <-c.exited:
		return fmt.Errorf("pgtest: server had already exited: %v\n%s", c.exitErr, c.logTail())
	default:
	}
	// SIGINT is PostgreSQL's "fast" shutdown: abort sessions, then exit cleanly.
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("pgtest: signalling server: %w", err)
	}
	select {
	case <-c.exited:
		return nil
	case <-time.After(stopTimeout):
		c.cmd.Process.Kill()
		<-c.exited
		return fmt.Errorf("pgtest: server ignored fast shutdown for %v; killed it\n%s", stopTimeout, c.logTail())
	}
}

// PhysicalCopy stops c, copies its data directory whole (as a cold
// backup, a volume snapshot or a cloud "restore to a new instance" does),
// starts c again and starts the copy as a cluster of its own, in its own
// directory. The copy has c's system identifier and every OID of c: only
// where it runs tells it apart.
func (c *Cluster) PhysicalCopy() (*Cluster, error) {
	if err := c.Stop(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("/tmp", "bfpg")
	if err != nil {
		c.Restart()
		return nil, fmt.Errorf("pgtest: creating cluster dir: %w", err)
	}
	cp := &Cluster{dir: dir, dataDir: filepath.Join(dir, "data"), logPath: filepath.Join(dir, "postgres.log"), postgres: c.postgres, cred: c.cred}
	cp.srv = &server{admin: cp.DSN("postgres"), dsn: cp.DSN}
	// cp -a keeps the owner and the 0700 mode postgres insists on.
	out, err := exec.Command("cp", "-a", c.dataDir, cp.dataDir).CombinedOutput()
	if err == nil && c.cred != nil {
		err = os.Chown(dir, int(c.cred.Uid), int(c.cred.Gid))
	}
	if rerr := c.Restart(); err == nil {
		err = rerr
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: copying %s: %v %s", c.dataDir, err, out)
	}
	if err := cp.Restart(); err != nil {
		cp.Close()
		return nil, err
	}
	return cp, nil
}

// Restart starts the server again on the same data dir and socket, so DSNs
// handed out earlier work again. It waits until the server accepts
// connections.
func (c *Cluster) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("pgtest: cluster is closed")
	}
	if c.cmd != nil {
		return errors.New("pgtest: server is already running")
	}
	logf, err := os.OpenFile(c.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	// The child holds its own copy of the descriptor.
	defer logf.Close()
	cmd := exec.Command(c.postgres,
		"-D", c.dataDir,
		"-k", c.dir,
		"-p", strconv.Itoa(port),
		"-c", "listen_addresses=",
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "max_connections=400",
		// Autovacuum forks a worker into each database in turn, a minute
		// shared by all of them: a cluster of hundreds of databases (the
		// bench's fleets) forks several a second, a tenth of this machine's
		// two cores and more where fork is dear, taken from what is measured.
		// Nothing here needs a table vacuumed.
		"-c", "autovacuum=off",
		// Many clusters may run at once (one per test package); keep each small.
		"-c", "shared_buffers=32MB",
	)
	c.prepare(cmd, logf)
	if err := spawn(cmd); err != nil {
		return fmt.Errorf("pgtest: starting %s: %w", c.postgres, err)
	}
	exited := make(chan struct{})
	c.cmd, c.exited = cmd, exited
	go func() {
		// No lock: Restart holds c.mu while waiting on exited. Closing the
		// channel publishes exitErr to readers.
		c.exitErr = cmd.Wait()
		close(exited)
	}()
	if err := c.waitReady(exited); err != nil {
		c.cmd.Process.Kill()
		<-exited
		c.cmd = nil
		return err
	}
	return nil
}

// waitReady polls with real connections until one succeeds, the server
// exits, or the deadline passes.
func (c *Cluster) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during startup\n%s", c.logTail())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		conn, err := pgx.Connect(ctx, c.DSN("postgres"))
		if err == nil {
			conn.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		lastErr = err
		select {
		case <-exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("pgtest: postgres not ready after %v: %v\n%s", readyTimeout, lastErr, c.logTail())
}

// Close stops the server and removes the cluster's dir. Errors are reported
// on stderr: Close runs in cleanup paths that cannot act on them.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if err := c.stopLocked(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: removing %s: %v\n", c.dir, err)
	}
}

// logTail returns the end of the server log, for error messages.
func (c *Cluster) logTail() string {
	const maxBytes, maxLines = 4096, 20
	f, err := os.Open(c.logPath)
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > maxBytes {
		f.Seek(st.Size()-maxBytes, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return "server log " + c.logPath + " (tail):\n" + strings.Join(lines, "\n")
}

// postgresCredential returns the identity of the postgres OS user.
func postgresCredential() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("pgtest: running as root needs a postgres OS user to run the server: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: postgres gid %q: %w", u.Gid, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// findBinDir returns the directory holding initdb and postgres: PATH first,
// then the newest /usr/lib/postgresql/<version>/bin (Debian's layout, which
// is not on PATH).
func findBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		dir := filepath.Dir(p)
		if isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return pgVersion(dirs[i]) > pgVersion(dirs[j]) })
	for _, dir := range dirs {
		if isExecutable(filepath.Join(dir, "initdb")) && isExecutable(filepath.Join(dir, "postgres")) {
			return dir, nil
		}
	}
	return "", errors.New("pgtest: no PostgreSQL server binaries (initdb, postgres) on PATH or in /usr/lib/postgresql/*/bin")
}

// pgVersion extracts the major version from /usr/lib/postgresql/<v>/bin so
// that 15 sorts above 9.6.
func pgVersion(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

var (
	spawnOnce sync.Once
	spawnReq  chan func()
)

// spawn starts cmd from one dedicated OS thread that lives as long as the
// process. Linux sends Pdeathsig when the thread that forked the child exits,
// not the process; an ordinary goroutine's thread can be retired by unrelated
// code that locks it, which would kill a healthy server.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReq = make(chan func())
		go func() {
			runtime.LockOSThread() // never unlocked: the thread must not exit
			for f := range spawnReq {
				f()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReq <- func() { errc <- cmd.Start() }
	return <-errc
}
