package preflight

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"

	"backfill/internal/evidence"
)

// Sizing of the captures the snapshot will write.
const (
	// captureOverhead is a capture's record beyond its bytes: the row as
	// listed, target, provenance, hashes, index entries.
	captureOverhead = 4 << 10
	// defaultConfigSize is assumed when no tenant's sample was read;
	// configs are a few KiB, so this errs on the large side.
	defaultConfigSize = 64 << 10
	// storeReserve is kept free beyond the captures: SQLite's write-ahead
	// log between checkpoints (1,000 pages: 16 MiB in a store of 16 KiB
	// pages), the listings, the journal of a later apply.
	storeReserve = 24 << 20
	// probeBytes are written to the probe file: creating an empty file can
	// succeed on a file system with no free blocks.
	probeBytes = 4 << 10
)

// StoreResult is the evidence store's readiness.
type StoreResult struct {
	Path      string `json:"path"`
	Directory string `json:"directory"`
	// Exists: the store is there already (a snapshot adds to it); else the
	// snapshot creates it (0600).
	Exists bool `json:"exists"`
	// Writable: a probe file was created, written, synced and removed in
	// Directory, and the store, when it exists, may be written.
	Writable bool `json:"writable"`
	// InUse: another backfill process (a snapshot or apply) holds the
	// store; a snapshot would refuse it.
	InUse bool `json:"in_use"`
	// FreeBytes is what this user may still write on Directory's file
	// system; NeedBytes the estimate for capturing every live workspace
	// once (as --refresh would), from the sampled configs' sizes.
	FreeBytes uint64 `json:"free_bytes"`
	NeedBytes uint64 `json:"need_bytes"`
	// Live is the workspaces NeedBytes covers: those of the tenants listed.
	Live  int      `json:"live"`
	Ready bool     `json:"ready"`
	Why   []string `json:"why"`
}

// NeedBytes estimates the store space a snapshot of these tenants takes:
// per live workspace, twice its config's size (a chain may record more
// than one collector's answer, and the write-ahead log holds a copy until
// a checkpoint) plus a record's overhead, with a fixed reserve on top. A
// tenant whose sample was not read is sized from the largest sample read.
func NeedBytes(tenants []TenantResult) (need uint64, live int) {
	largest := 0
	for _, t := range tenants {
		if t.Sample != nil && t.Sample.Size > largest {
			largest = t.Sample.Size
		}
	}
	if largest == 0 {
		largest = defaultConfigSize
	}
	need = storeReserve
	for _, t := range tenants {
		size := largest
		if t.Sample != nil && t.Sample.Size > 0 {
			size = t.Sample.Size
		}
		need += uint64(t.Live) * uint64(2*size+captureOverhead)
		live += t.Live
	}
	return need, live
}

// checkStore checks the store's directory and file without opening the
// store: preflight writes nothing to it, and SQLite would create its -shm
// beside it even to read.
func checkStore(path string, tenants []TenantResult, free func(string) (uint64, error)) StoreResult {
	s := StoreResult{Path: path, Directory: filepath.Dir(path), Why: []string{}}
	s.NeedBytes, s.Live = NeedBytes(tenants)
	why := func(format string, args ...any) { s.Why = append(s.Why, fmt.Sprintf(format, args...)) }

	fi, err := os.Stat(path)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		why("%s is not a regular file", path)
		return s
	case err == nil:
		s.Exists = true
	case !errors.Is(err, os.ErrNotExist):
		why("%v", err)
		return s
	}
	if di, err := os.Stat(s.Directory); err != nil {
		why("directory: %v", err)
		return s
	} else if !di.IsDir() {
		why("directory %s is not a directory", s.Directory)
		return s
	}
	if err := probe(s.Directory); err != nil {
		why("directory %s is not writable: %v", s.Directory, err)
	} else {
		s.Writable = true
	}
	if s.Exists {
		const wOK = 2
		if err := syscall.Access(path, wOK); err != nil {
			s.Writable = false
			why("store %s is not writable: %v", path, err)
		}
		if busy, err := inUse(path); err != nil {
			why("store %s: %v", path, err)
		} else if busy {
			s.InUse = true
			why("store %s is in use by another backfill process (a snapshot or apply is running): wait for it or use another --evidence", path)
		}
		// What the snapshot would refuse or fail on when it opens the store:
		// a file that is not one, a newer schema (read from its header: the
		// store is not opened, which would leave a -wal and -shm), a SQLite
		// file beside it that is not a file.
		for _, suffix := range []string{"-wal", "-shm", "-journal"} {
			if fi, err := os.Lstat(path + suffix); err == nil && !fi.Mode().IsRegular() {
				why("%s is not a regular file: SQLite cannot use the store beside it", path+suffix)
			}
		}
		if err := evidence.CheckFile(path); err != nil {
			why("store %v", err)
		}
	}
	n, err := free(s.Directory)
	if err != nil {
		why("free space of %s: %v", s.Directory, err)
	} else {
		s.FreeBytes = n
		if n < s.NeedBytes {
			why("%s free in %s, about %s needed for %d live workspaces", Bytes(n), s.Directory, Bytes(s.NeedBytes), s.Live)
		}
	}
	s.Ready = len(s.Why) == 0
	return s
}

// probe creates, writes, syncs and removes a file in dir: what the
// snapshot's first write needs, shown without touching the store.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".backfill-preflight-*")
	if err != nil {
		return unwrapPath(err)
	}
	name := f.Name()
	_, werr := f.Write(make([]byte, probeBytes))
	if werr == nil {
		werr = f.Sync()
	}
	cerr := f.Close()
	rerr := os.Remove(name)
	return unwrapPath(errors.Join(werr, cerr, rerr))
}

// unwrapPath drops a *PathError's random probe name from a message.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// inUse reports whether another process holds the store's lock
// (evidence.Store.Lock, an exclusive flock), by asking for a shared one
// without waiting and letting go of it at once.
func inUse(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, unwrapPath(err)
	}
	defer f.Close()
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	return false, syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// freeSpace is the bytes an unprivileged user may still write on dir's
// file system (statfs's available blocks, not its free ones: the root
// reserve is not the snapshot's to use).
func freeSpace(dir string) (uint64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// Bytes formats a size for a person: 1.5 GiB, 12 MiB, 900 B.
func Bytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
