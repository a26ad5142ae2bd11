// Package inputfile reads the files an operator names on the command line
// (plans, inventories, CP records, keys) without letting one of them hang
// or exhaust the tool: a FIFO nobody writes to is read as empty instead of
// blocking in open, a device (/dev/zero) or anything else that is not a
// file or a pipe is refused, and every read is capped.
package inputfile

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// Read returns the whole of path, a regular file or a pipe (a FIFO, or the
// shell's <(...)), refusing more than limit bytes. Errors name the path.
func Read(path string, limit int64) ([]byte, error) {
	// Refused before it is opened: opening some devices (a tape, a
	// watchdog) does something.
	if err := check(path, os.Stat); err != nil {
		return nil, err
	}
	// Non-blocking, so that opening a FIFO with no writer returns at once
	// (its read then ends at once too); a pipe with a writer is still
	// read to its end through Go's poller. Checked again once open: the
	// path may have been swapped meanwhile.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := check(path, func(string) (fs.FileInfo, error) { return f.Stat() }); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes", path, limit)
	}
	return b, nil
}

// check refuses anything but a regular file or a pipe.
func check(path string, stat func(string) (fs.FileInfo, error)) error {
	fi, err := stat(path)
	if err != nil {
		return err
	}
	if m := fi.Mode(); !m.IsRegular() && m&fs.ModeNamedPipe == 0 {
		return fmt.Errorf("%s is %s, not a file", path, kind(m))
	}
	return nil
}

func kind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "neither a regular file nor a pipe"
}
