package collector

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"backfill/internal/placeholder"
)

func (c *Collector) collectFile(a attempt, v placeholder.Values, r *Result) {
	vals, ok := expand(r, v, c.spec.Path)
	if !ok {
		return
	}
	if a.interrupted(r) {
		return
	}
	path := filepath.Clean(vals[0])
	// File reads ignore contexts, and a hung network mount blocks forever;
	// read in the background so the attempt still ends at its deadline.
	done := make(chan Result, 1)
	go func() {
		fr := Result{Provenance: map[string]string{}}
		c.readFile(path, &fr)
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

func (c *Collector) readFile(path string, r *Result) {
	// O_NONBLOCK so a FIFO at the path cannot block the open; it is
	// rejected below as not a regular file.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		fileError(r, "open", err)
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		fileError(r, "stat", err)
		return
	}
	r.Provenance["mtime"] = st.ModTime().UTC().Format(time.RFC3339Nano)
	r.Provenance["size"] = strconv.FormatInt(st.Size(), 10)
	switch {
	case st.IsDir():
		fail(r, false, "is a directory")
		return
	case !st.Mode().IsRegular():
		fail(r, false, "not a regular file (%s)", st.Mode().Type())
		return
	case st.Size() > c.maxBytes:
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
