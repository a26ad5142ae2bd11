//go:build unix && !linux

package collector

import "golang.org/x/sys/unix"

// dirFlags open a directory to walk through it; without O_PATH this needs
// read permission on it.
const dirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC

// kernelFS has no portable file system magic here; the path checks and the
// regular-file check still apply.
func kernelFS(int) bool { return false }
