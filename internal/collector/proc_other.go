//go:build unix && !linux

package collector

// waitExitNoReap has no portable WNOWAIT here; callers fall back to
// WaitDelay for processes left holding output.
func waitExitNoReap(int) bool { return false }
