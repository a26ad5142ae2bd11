// Package evidence is backfill's local SQLite evidence store: every capture of
// a live config.yaml, the tenant listings behind them, plan approvals and the
// apply journal. It is append-only, enforced by triggers in the database
// itself, and every record is hash-chained so that `verify` detects any
// change made behind the tool's back.
package evidence

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is an open evidence store.
type Store struct {
	path     string
	db       *sql.DB
	lock     *os.File
	version  int  // schema version (PRAGMA user_version) the store is at
	readOnly bool // opened with OpenReadOnly
	group    groupCommit
}

// ErrLocked is returned by Lock when another process holds the store.
var ErrLocked = errors.New("evidence store is in use by another backfill process")

// Open opens the evidence store at path, creating it with mode 0600 when it
// does not exist, and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	// Create the file ourselves so that its mode is 0600 whatever the umask;
	// SQLite gives its -wal and -shm files the same mode as the database.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	f.Close()
	return open(ctx, path)
}

// OpenExisting opens an evidence store that must already exist; commands that
// only read evidence use it so that a mistyped path is an error, not a new
// empty store.
func OpenExisting(ctx context.Context, path string) (*Store, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	return open(ctx, path)
}

// OpenReadOnly opens an existing evidence store for reading only, for
// commands that must change nothing (verify, status, export). The handle is
// SQLite's mode=ro, so nothing can be written through it; the schema is not
// migrated, and a store at an older schema version reads as what it holds
// (tables and columns added since read as empty). A store on read-only
// media opens too.
func OpenReadOnly(ctx context.Context, path string) (*Store, error) {
	return openReadOnlyPath(ctx, path)
}

// openReadOnlyPath is OpenReadOnly, with pragmas for each connection.
func openReadOnlyPath(ctx context.Context, path string, pragmas ...string) (*Store, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("evidence store %s: not a regular file", path)
	}
	// Fail on an unreadable file here, with the system's reason, rather
	// than as SQLite's "unable to open".
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	f.Close()
	s, err := openReadOnly(ctx, path, false, pragmas...)
	if err == nil || !needsSharedMemory(err) {
		return s, err
	}
	// A WAL database is read through its -shm file, which SQLite could not
	// create: the directory is read-only to us. immutable=1 reads the file
	// with no -shm and no locks, which is safe only while nothing can
	// write it.
	if why := writerPossible(path); why != "" {
		return nil, fmt.Errorf("evidence store %s cannot be opened read-only: %s", path, why)
	}
	return openReadOnly(ctx, path, true, pragmas...)
}

func openReadOnly(ctx context.Context, path string, immutable bool, pragmas ...string) (*Store, error) {
	q := url.Values{}
	q.Set("mode", "ro")
	if immutable {
		q.Set("immutable", "1")
	}
	q.Add("_pragma", busyTimeout)
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	s := &Store{path: path, db: db, readOnly: true}
	v, err := s.readVersion(ctx)
	if err == nil && v == 0 {
		err = errors.New("it is empty: nothing has been recorded in it")
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	s.version = v
	return s, nil
}

// needsSharedMemory reports whether err is SQLite failing to open a WAL
// database read-only because it cannot create the -wal or -shm file.
func needsSharedMemory(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	const (
		cantOpen          = 14
		readOnlyCantInit  = 8 | 5<<8
		readOnlyDirectory = 8 | 6<<8
	)
	c := se.Code()
	return c == cantOpen || c == readOnlyCantInit || c == readOnlyDirectory
}

// writerPossible says why a backfill might be writing the store at path, or
// "" when none can be: it has no write-ahead log left to read, and its
// directory is on a read-only file system or writable by no one, so no
// writer can create one (SQLite writes a WAL database only through its -wal
// file).
func writerPossible(path string) string {
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return fmt.Sprintf("its write-ahead log %s-wal holds records that SQLite cannot read without creating %s-shm, which its directory does not allow; copy the store with its -wal file to a writable directory", path, path)
	}
	dir := filepath.Dir(path)
	const wOK = 2
	if err := syscall.Access(dir, wOK); errors.Is(err, syscall.EROFS) {
		return ""
	}
	if fi, err := os.Stat(dir); err == nil && fi.Mode().Perm()&0o222 == 0 {
		return ""
	}
	return fmt.Sprintf("SQLite must create %s-shm to read it while a backfill may be writing it, and this user may not write %s; run as a user who may, or copy the store", path, dir)
}

func (s *Store) errReadOnly() error {
	return fmt.Errorf("evidence store %s was opened read-only", s.path)
}

func open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Add("_pragma", busyTimeout)
	// A new store's page size (no effect on an existing one). At SQLite's
	// default 4 KiB a config of 2 KiB or a little more fills a page alone;
	// at 16 KiB seven share one. Measured on a snapshot of 20,000 configs
	// of 2 KiB: the store 35% smaller and the run about 10% faster.
	q.Add("_pragma", "page_size("+strconv.Itoa(pageSize)+")")
	// FULL: a capture reported as recorded survives power loss, not only a
	// process crash. Batching keeps the fsync cost per capture small.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(ON)")
	q.Set("_txlock", "immediate")
	dsn := "file:" + (&url.URL{Path: path}).EscapedPath() + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	s := &Store{path: path, db: db}
	if err := s.useWAL(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("evidence store %s: %w", path, err)
	}
	return s, nil
}

// pageSize is the page size of a store this package creates.
const pageSize = 16384

// busyWait is how long a connection waits for a lock another holds (the
// DSN's busy_timeout), and sqliteBusy SQLite's primary code for "locked".
const (
	busyWait   = 10 * time.Second
	sqliteBusy = 5
)

// busyTimeout is busyWait as the DSN's _pragma.
var busyTimeout = "busy_timeout(" + strconv.Itoa(int(busyWait.Milliseconds())) + ")"

// useWAL puts the store in write-ahead-log mode, which it keeps in its file
// header; a store already in it is left alone. It is not a _pragma of the
// DSN: the driver runs those in lexical order, journal_mode before
// page_size, and a new file's page size is fixed once it is in WAL mode.
//
// Changing the mode needs the file to itself, and SQLite answers SQLITE_BUSY
// at once rather than wait for it (seen when several backfills create one
// store together): that is tried again for as long as busy_timeout would
// wait.
func (s *Store) useWAL(ctx context.Context) error {
	var mode string
	deadline := time.Now().Add(busyWait)
	for {
		err := s.db.QueryRowContext(ctx, "PRAGMA journal_mode = WAL").Scan(&mode)
		if err == nil {
			break
		}
		var se *sqlite.Error
		if !errors.As(err, &se) || se.Code()&0xff != sqliteBusy || time.Now().After(deadline) {
			return fmt.Errorf("set write-ahead-log mode: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("set write-ahead-log mode: %w", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if mode != "wal" {
		return fmt.Errorf("it stays in journal mode %q: write-ahead-log mode could not be set", mode)
	}
	return nil
}

// Path is the store's file path.
func (s *Store) Path() string { return s.path }

// DB exposes the underlying connection pool for read-only queries in tests.
func (s *Store) DB() *sql.DB { return s.db }

// lockGrace is how long Lock waits for a lock that is being released: a
// process that just died can leave its descriptor, and so its lock, open for
// a moment in a child it was starting (between fork and exec).
const lockGrace = time.Second

// Lock takes an exclusive advisory lock on the store for the life of this
// Store, so that two snapshot or apply runs never interleave on one file.
func (s *Store) Lock() error {
	f, err := os.OpenFile(s.path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(lockGrace)
	for {
		// flock locks are independent of SQLite's own fcntl locks on Linux.
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("%s: %w", s.path, ErrLocked)
		}
		return fmt.Errorf("lock %s: %w", s.path, err)
	}
	s.lock = f
	return nil
}

// Close closes the store and releases its lock.
func (s *Store) Close() error {
	err := s.db.Close()
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return err
}
