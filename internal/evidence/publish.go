package evidence

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// PublishOptions adjust Publish.
type PublishOptions struct {
	// Replace lets the copy take the place of an existing file at dest, in
	// one rename: a reader of dest sees the old copy or the new one.
	Replace bool
}

// Publish writes a consistent, verified copy of the store to dest, which
// must not exist: a file other hosts may read (a shared volume) while this
// store stays where it is written. See PublishCopy.
func (s *Store) Publish(ctx context.Context, dest string) error {
	_, err := s.PublishCopy(ctx, dest, PublishOptions{})
	return err
}

// sidecars are the files SQLite keeps beside a database. A -wal or -journal
// left beside dest would be read into the copy by its first reader (a hot
// journal is rolled back into it, a WAL replayed over it), and a -shm means
// someone has dest open in WAL mode.
var sidecars = []string{"-wal", "-shm", "-journal"}

// PublishCopy writes a consistent copy of the store to dest and returns the
// copy's verification report. The copy is made with SQLite's VACUUM INTO,
// which reads one snapshot of the store (a snapshot may be writing it
// meanwhile), under a temporary name in dest's directory so that no reader
// of dest ever sees a partial file. The copy is in rollback-journal mode,
// never WAL: readers on a shared or network file system need no -shm and
// write nothing beside it. It is synced, verified (a copy that does not
// verify is deleted and never appears under dest), renamed into place, and
// the directory synced, so that dest survives a crash of this host once
// PublishCopy returns.
func (s *Store) PublishCopy(ctx context.Context, dest string, opts PublishOptions) (*VerifyReport, error) {
	if err := s.checkDest(dest, opts.Replace); err != nil {
		return nil, err
	}
	dir := filepath.Dir(dest)
	tmp, err := claimTemp(dir, filepath.Base(dest))
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", dest, err)
	}
	keep := false
	defer func() {
		if !keep {
			removeWithSidecars(tmp)
		}
	}()
	// VACUUM INTO writes into the empty file we created with mode 0600, so
	// the copy is as private as the store.
	if _, err := s.db.ExecContext(ctx, "VACUUM INTO ?", tmp); err != nil {
		return nil, fmt.Errorf("publish %s: copy %s: %w", dest, s.path, err)
	}
	if err := setRollbackJournal(ctx, tmp); err != nil {
		return nil, fmt.Errorf("publish %s: %w", dest, err)
	}
	// SQLite does not sync what VACUUM INTO writes.
	if err := syncPath(tmp); err != nil {
		return nil, fmt.Errorf("publish %s: %w", dest, err)
	}
	rep, err := verifyCopy(ctx, tmp)
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", dest, err)
	}
	if err := s.checkDest(dest, opts.Replace); err != nil {
		return nil, err
	}
	if opts.Replace {
		err = os.Rename(tmp, dest)
	} else {
		err = linkNoReplace(tmp, dest)
	}
	if err != nil {
		return nil, fmt.Errorf("publish %s: %w", dest, err)
	}
	keep = true
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("publish %s: sync directory: %w", dest, err)
	}
	return rep, nil
}

// checkDest refuses a dest that is the store itself, exists (unless
// replace), is not a regular file, or has SQLite files beside it.
func (s *Store) checkDest(dest string, replace bool) error {
	if err := checkName("publish", dest); err != nil {
		return err
	}
	fi, err := os.Lstat(dest)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("publish %s: it exists and is not a regular file", dest)
	case err == nil:
		if src, serr := os.Stat(s.path); serr == nil && os.SameFile(src, fi) {
			return fmt.Errorf("publish %s: it is the evidence store itself", dest)
		}
		if !replace {
			return fmt.Errorf("publish %s: it already exists (--force replaces it)", dest)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("publish %s: %w", dest, err)
	}
	return checkSidecars("publish", dest)
}

// checkName refuses an empty dest, and one named like a SQLite file kept
// beside a database (store.db-wal): the database's next reader or writer
// would take the copy for its own log, or overwrite it (publish --force
// onto a crashed store's -wal replaced the only copy of its last captures).
func checkName(verb, dest string) error {
	if dest == "" {
		return fmt.Errorf("%s: the destination is empty", verb)
	}
	for _, suffix := range sidecars {
		// Folded: on a file system that ignores case (macOS's), -WAL is
		// the same file as -wal.
		if strings.HasSuffix(strings.ToLower(dest), suffix) {
			return fmt.Errorf("%s %s: a name ending in %s is that of a file SQLite keeps beside a database, which that database's next reader or writer would take for its own: choose another name", verb, dest, suffix)
		}
	}
	return nil
}

// checkSidecars refuses a dest with SQLite files beside it: the first
// reader of a store written there would read them together with it.
func checkSidecars(verb, dest string) error {
	for _, suffix := range sidecars {
		if _, err := os.Lstat(dest + suffix); err == nil {
			return fmt.Errorf("%s %s: %s exists beside it: a process has it open, or one that did was not closed cleanly; a store written there would be read together with it", verb, dest, dest+suffix)
		}
	}
	return nil
}

// claimTemp creates an empty, private file with an unguessable name in dir.
func claimTemp(dir, base string) (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.publish-%d-%s", base, os.Getpid(), hex.EncodeToString(b[:])))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", err
	}
	return tmp, f.Close()
}

// setRollbackJournal makes sure the copy is in rollback-journal (DELETE)
// mode. VACUUM INTO writes one already; this keeps it so should that ever
// change. Exclusive locking comes first, so that even a copy in WAL mode is
// opened without a -shm file.
func setRollbackJournal(ctx context.Context, path string) error {
	q := url.Values{}
	q.Add("_pragma", "locking_mode(EXCLUSIVE)")
	q.Add("_pragma", "journal_mode(DELETE)")
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?"+q.Encode())
	if err != nil {
		return err
	}
	var mode string
	err = db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("set the copy's journal mode: %w", err)
	}
	if mode != "delete" {
		return fmt.Errorf("the copy is in journal mode %q, not delete", mode)
	}
	wal, err := IsWAL(path)
	if err != nil {
		return err
	}
	if wal {
		return errors.New("the copy's header still says WAL")
	}
	return nil
}

// IsWAL reports whether the SQLite database file at path is in WAL mode,
// from its header (bytes 18 and 19 are 2 for WAL, 1 for a rollback
// journal), without opening it with SQLite.
func IsWAL(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	var h [20]byte
	if _, err := f.ReadAt(h[:], 0); err != nil {
		return false, fmt.Errorf("%s: not an SQLite database: %w", path, err)
	}
	if string(h[:16]) != "SQLite format 3\x00" {
		return false, fmt.Errorf("%s: not an SQLite database", path)
	}
	return h[18] == 2 || h[19] == 2, nil
}

// CheckFile reports, from the file's header alone and without opening it
// with SQLite (which would leave a -wal and -shm beside it), whether Open
// could take the file at path as a store: empty (a new store), or an
// SQLite database whose schema version this backfill understands. A WAL
// still holding a newer version is not seen.
func CheckFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	var h [100]byte
	n, err := f.ReadAt(h[:], 0)
	if n == 0 && errors.Is(err, io.EOF) {
		return nil
	}
	if n < len(h) || string(h[:16]) != "SQLite format 3\x00" {
		return fmt.Errorf("%s: not an SQLite database, so not an evidence store", path)
	}
	v := int(binary.BigEndian.Uint32(h[60:64]))
	if v > len(migrations) {
		return fmt.Errorf("%s: schema version %d is newer than this backfill understands (%d): upgrade backfill", path, v, len(migrations))
	}
	if v == 0 && headerPages(h, f) > 1+int64(binary.BigEndian.Uint32(h[36:40])) {
		// Pages beyond the first that are not free hold tables: Open
		// refuses such a file (someone else's database), so say so now.
		return fmt.Errorf("%s: not a backfill evidence store (it has tables but no schema version)", path)
	}
	return nil
}

// headerPages is the database's size in pages: the header's count when it
// is current (its version-valid-for number is the change counter), else
// the file's size over the page size.
func headerPages(h [100]byte, f *os.File) int64 {
	if binary.BigEndian.Uint32(h[92:96]) == binary.BigEndian.Uint32(h[24:28]) {
		if n := binary.BigEndian.Uint32(h[28:32]); n > 0 {
			return int64(n)
		}
	}
	pageSize := int64(binary.BigEndian.Uint16(h[16:18]))
	if pageSize == 1 {
		pageSize = 65536
	}
	fi, err := f.Stat()
	if err != nil || pageSize < 512 {
		return 0
	}
	return fi.Size() / pageSize
}

// verifyCopy opens the copy read-only and verifies it; a copy that does not
// verify is an error naming the first problem.
func verifyCopy(ctx context.Context, path string) (*VerifyReport, error) {
	c, err := OpenReadOnly(ctx, path)
	if err != nil {
		return nil, fmt.Errorf("open the copy: %w", err)
	}
	defer c.Close()
	rep, err := c.Verify(ctx)
	if err != nil {
		return nil, fmt.Errorf("verify the copy: %w", err)
	}
	if !rep.OK() {
		return nil, fmt.Errorf("the copy does not verify (%d problems): %s", len(rep.Problems), rep.Problems[0])
	}
	return rep, nil
}

// linkNoReplace gives tmp the name dest unless dest exists, then drops the
// name tmp: a hard link, unlike a rename, fails on an existing dest, so a
// copy published meanwhile by someone else is never replaced. Where the file
// system has no hard links, an exclusive create claims dest first and a
// rename fills it.
func linkNoReplace(tmp, dest string) error {
	err := os.Link(tmp, dest)
	if err == nil {
		os.Remove(tmp) // dest is in place; a leftover second name is harmless
		return nil
	}
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("it was created meanwhile: %w", err)
	}
	f, cerr := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if cerr != nil {
		return cerr
	}
	f.Close()
	if err := os.Rename(tmp, dest); err != nil {
		os.Remove(dest) // the placeholder made above, nothing else
		return err
	}
	return nil
}

// syncDir fsyncs a directory, so that a name just linked or renamed in it
// survives a crash. Some file systems (FUSE, CIFS) cannot sync a directory
// and say so with EINVAL or ENOTSUP: there, what the file system gives is
// all there is, and the file is in place already.
func syncDir(dir string) error {
	err := syncPath(dir)
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// syncPath fsyncs a file or directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func removeWithSidecars(path string) {
	os.Remove(path)
	for _, suffix := range sidecars {
		os.Remove(path + suffix)
	}
}
