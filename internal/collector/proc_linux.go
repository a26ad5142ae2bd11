package collector

import (
	"errors"
	"syscall"
	"unsafe"
)

// waitExitNoReap blocks until pid exits but leaves it a zombie
// (waitid with WNOWAIT), so its pid and process group id stay reserved until
// cmd.Wait reaps it. It reports whether it waited.
func waitExitNoReap(pid int) bool {
	const pPID = 1 // P_PID
	var info [128]byte
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info)), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if e == 0 {
			return true
		}
		if !errors.Is(e, syscall.EINTR) {
			return false
		}
	}
}
