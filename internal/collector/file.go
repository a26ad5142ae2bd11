package collector

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"gopkg.in/yaml.v3"

	"backfill/internal/placeholder"
	"backfill/internal/source"
	"backfill/internal/yamlnode"
)

// The file collector reads a tree an operator declared, but the files in it
// belong to workspaces: a workspace that can write its own config.yaml can
// make it a symbolic link to /proc/self/environ or to a root-only file on
// the host. So reads are confined structurally, not by checking path
// strings: the root is opened once, every directory below it is opened
// relative to its parent with O_NOFOLLOW (openat), and the file itself is
// opened with O_NOFOLLOW after checking it is a regular file. Any symbolic
// link below the root is refused, even one that points inside the root:
// telling the two apart would mean resolving links, which is the race this
// avoids. os.Root was not used because it follows links that stay inside
// the root, including a final-component link.

// pseudoRoots are the kernel's pseudo file systems: reading them yields the
// process's environment, memory or devices, never a workspace's config.
var pseudoRoots = []string{"/proc", "/sys", "/dev"}

// fileRoot returns the directory a file collector's reads stay beneath:
// root when given, else the directory part of path's text before its first
// placeholder ("/mnt/c/{workspace_id}/config.yaml" gives "/mnt/c"). Both
// must be absolute and the root must hold the path; neither may be under
// /proc, /sys or /dev. Errors never quote the values, which may hold
// expanded secrets.
func fileRoot(path, root string) (string, error) {
	if !filepath.IsAbs(path) {
		return "", errors.New("file path must be absolute")
	}
	fixed := filepath.Dir(placeholder.Prefix(path))
	if root == "" {
		root = fixed
	} else {
		if !filepath.IsAbs(root) {
			return "", errors.New("file root must be absolute")
		}
		if placeholder.Prefix(root) != root {
			return "", errors.New("file root must not contain placeholders")
		}
		if slices.Contains(strings.Split(filepath.ToSlash(root), "/"), "..") {
			return "", errors.New(`file root: contains a ".." element`)
		}
		root = filepath.Clean(root)
		if !within(root, fixed) {
			return "", errors.New("file path is not beneath its root (the root must be the directory before the first placeholder or one above it)")
		}
	}
	if pseudo(root) || pseudo(fixed) {
		return "", errors.New("file root is under /proc, /sys or /dev: only workspace config trees may be read")
	}
	return root, nil
}

// within reports whether path is dir or beneath it; both are clean.
func within(dir, path string) bool {
	if dir == "/" {
		return strings.HasPrefix(path, "/")
	}
	return path == dir || strings.HasPrefix(path, dir+"/")
}

func pseudo(path string) bool {
	for _, p := range pseudoRoots {
		if within(p, path) {
			return true
		}
	}
	return false
}

func (c *Collector) collectFile(a attempt, v placeholder.Values, r *Result) {
	vals, ok := expand(r, v, c.spec.Path)
	if !ok {
		return
	}
	if a.interrupted(r) {
		return
	}
	path := filepath.Clean(vals[0])
	// Placeholder values are plain names, so this cannot happen; checked
	// anyway because the root is the whole guarantee.
	switch {
	case !within(c.root, path):
		fail(r, false, "refused: path leaves the collector's root")
		return
	case pseudo(path):
		fail(r, false, "refused: path is under /proc, /sys or /dev")
		return
	case path == c.root:
		fail(r, false, "is a directory")
		return
	}
	rel := strings.TrimPrefix(path[len(c.root):], "/")
	// File reads ignore contexts, and a hung network mount blocks forever;
	// read in the background so the attempt still ends at its deadline.
	done := make(chan Result, 1)
	go func() {
		fr := Result{Provenance: map[string]string{}}
		c.readFile(rel, &fr)
		done <- fr
	}()
	select {
	case fr := <-done:
		r.Outcome, r.Content, r.Reason, r.Transient = fr.Outcome, fr.Content, fr.Reason, fr.Transient
		for k, val := range fr.Provenance {
			r.Provenance[k] = val
		}
	case <-a.ctx.Done():
		a.interrupted(r)
	}
}

// readFile reads rel, a clean relative path, beneath the collector's root.
func (c *Collector) readFile(rel string, r *Result) {
	// The root is the operator's: it is opened following links, and a
	// missing root is a misconfiguration (an absent mount), not a gone
	// workspace.
	dir, err := unix.Open(c.root, dirFlags, 0)
	if err != nil {
		fail(r, false, "root directory: %v", errnoOf(err))
		return
	}
	defer func() { unix.Close(dir) }()

	names := strings.Split(rel, "/")
	for i, name := range names[:len(names)-1] {
		fd, err := unix.Openat(dir, name, dirFlags|unix.O_NOFOLLOW, 0)
		if err != nil {
			notDir(r, dir, name, strings.Join(names[:i+1], "/"), err)
			return
		}
		unix.Close(dir)
		dir = fd
	}
	c.readLeaf(dir, names[len(names)-1], rel, r)
}

// notDir explains why a path step could not be opened as a directory: a
// link is refused; a file where a directory should be means the workspace's
// config is not there, as ENOTDIR always has.
func notDir(r *Result, dir int, name, shown string, err error) {
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		var st unix.Stat_t
		if unix.Fstatat(dir, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFLNK {
				fail(r, false, "refused: %s is a symbolic link", shown)
			} else {
				gone(r, "no such file")
			}
			return
		}
	}
	fileError(r, "open", err)
}

// readLeaf opens name in dir only if it is a regular file, and reads it.
func (c *Collector) readLeaf(dir int, name, shown string, r *Result) {
	var lst unix.Stat_t
	if err := unix.Fstatat(dir, name, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		fileError(r, "stat", err)
		return
	}
	if why := notRegular(uint32(lst.Mode), shown); why != "" {
		fail(r, false, "%s", why)
		return
	}
	// O_NOFOLLOW refuses a link swapped in since the check; O_NONBLOCK keeps
	// a swapped-in FIFO from blocking the open; O_NOCTTY keeps a terminal
	// from becoming ours. Either is then caught by the identity check.
	fd, err := unix.Openat(dir, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			fail(r, false, "refused: %s is a symbolic link", shown)
			return
		}
		fileError(r, "open", err)
		return
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		fileError(r, "stat", err)
		return
	}
	if st.Dev != lst.Dev || st.Ino != lst.Ino {
		fail(r, true, "file was replaced while being opened")
		return
	}
	if why := notRegular(uint32(st.Mode), shown); why != "" {
		fail(r, false, "%s", why)
		return
	}
	if kernelFS(fd) {
		fail(r, false, "refused: %s is on a kernel pseudo file system (proc, sysfs)", shown)
		return
	}
	fi, err := f.Stat()
	if err != nil {
		fileError(r, "stat", err)
		return
	}
	r.Provenance["mtime"] = fi.ModTime().UTC().Format(time.RFC3339Nano)
	r.Provenance["size"] = strconv.FormatInt(fi.Size(), 10)
	if fi.Size() > c.maxBytes {
		tooLarge(r, c.maxBytes)
		return
	}
	// Still capped: the file may grow between stat and read.
	data, err := io.ReadAll(io.LimitReader(f, c.maxBytes+1))
	if err != nil {
		fileError(r, "read", err)
		return
	}
	if int64(len(data)) > c.maxBytes {
		tooLarge(r, c.maxBytes)
		return
	}
	r.Outcome = Captured
	r.Content = data
}

// notRegular says why a file of this mode is not read, or "".
func notRegular(mode uint32, shown string) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return ""
	case unix.S_IFLNK:
		return fmt.Sprintf("refused: %s is a symbolic link", shown)
	case unix.S_IFDIR:
		return "is a directory"
	case unix.S_IFIFO:
		return "not a regular file (named pipe)"
	case unix.S_IFSOCK:
		return "not a regular file (socket)"
	case unix.S_IFCHR:
		return "not a regular file (character device)"
	case unix.S_IFBLK:
		return "not a regular file (block device)"
	}
	return "not a regular file"
}

// fileError classifies a file error by errno; the path is left out since
// Target already names it.
func fileError(r *Result, op string, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		gone(r, "no such file")
	case errors.Is(err, fs.ErrPermission):
		fail(r, false, "%s: permission denied", op)
	case errors.Is(err, syscall.EISDIR):
		fail(r, false, "is a directory")
	case errors.Is(err, syscall.ELOOP):
		fail(r, false, "%s: too many levels of symbolic links", op)
	default:
		fail(r, true, "%s: %v", op, errnoOf(err))
	}
}

// fileKind reads Spec.Path beneath Spec.Root. In the inventory it is a path
// or a mapping {path, root}.
type fileKind struct{}

func (fileKind) name() string     { return methodFile }
func (fileKind) fields() []string { return []string{"path", "root"} }
func (fileKind) requests() int    { return 0 }

func (fileKind) validate(s Spec) error {
	if err := placeholder.Validate(s.Path); err != nil {
		return fmt.Errorf("path: %w", err)
	}
	if slices.Contains(strings.Split(filepath.ToSlash(s.Path), "/"), "..") {
		return errors.New("path: contains a \"..\" element")
	}
	return nil
}

func (fileKind) check(spec, _ Spec) (string, error) { return fileRoot(spec.Path, spec.Root) }

func (fileKind) decode(d Decoder, v Field, raw, exp *Spec) {
	pathField, rootField := v, Field{}
	if n := yamlnode.Resolve(v.Val); n.Kind == yaml.MappingNode {
		f := d.Fields(n, "file", "path", "root")
		if f == nil {
			return
		}
		pf, ok := f["path"]
		if !ok {
			d.Errorf(v.Key.Line, "file collector has no path")
			return
		}
		pathField, rootField = pf, f["root"]
	}
	ok := true
	line := yamlnode.Resolve(pathField.Val).Line
	raw.Path, exp.Path, ok = decodeFilePath(d, pathField, "file path")
	if rootField.Val != nil {
		line = yamlnode.Resolve(rootField.Val).Line
		var rok bool
		raw.Root, exp.Root, rok = decodeFilePath(d, rootField, "file root")
		ok = ok && rok
	}
	if !ok {
		return
	}
	// The collector's own rule, so that a file read at capture time can
	// never be refused for a reason the inventory could have caught.
	if _, err := fileRoot(exp.Path, exp.Root); err != nil {
		d.Errorf(line, "%v", err)
	}
}

// decodeFilePath reads one path of a file collector, as written and
// expanded; ok is false once a problem is recorded.
func decodeFilePath(d Decoder, v Field, what string) (raw, exp string, ok bool) {
	r, ok := d.Str(v.Val, what)
	if !ok {
		return "", "", false
	}
	line := yamlnode.Resolve(v.Val).Line
	if r == "" {
		d.Errorf(line, "%s is empty", what)
		return "", "", false
	}
	e, ok := d.Template(r, line, what)
	if !ok {
		return "", "", false
	}
	if e == "" {
		d.Errorf(line, "%s is empty after expanding environment variables", what)
		return r, e, false
	}
	return r, e, true
}

func (fileKind) target(raw Spec, fill func(string) string) string {
	return "file: " + filepath.Clean(fill(raw.Path))
}

func (fileKind) collect(c *Collector, a attempt, v placeholder.Values, r *Result) {
	r.Source = source.File
	c.collectFile(a, v, r)
}
