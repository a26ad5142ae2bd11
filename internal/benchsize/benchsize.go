// Package benchsize gives the sizes the in-process benchmarks build. They
// are scaled by BENCH_SCALE (default 1) so that CI can run every benchmark
// once at a small fraction of its size (make bench-smoke), which shows the
// benchmarks still run without spending CI's time measuring anything.
package benchsize

import (
	"math"
	"os"
	"strconv"
)

// Scale is BENCH_SCALE when it is a positive number, else 1.
func Scale() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("BENCH_SCALE"), 64); err == nil && v > 0 && !math.IsInf(v, 0) {
		return v
	}
	return 1
}

// N is n times Scale, rounded, and never below floor.
func N(n, floor int) int {
	return max(int(math.Round(float64(n)*Scale())), floor)
}

// Env is the positive integer in the environment variable name (an exact
// size asked for, not scaled), else N(def, floor).
func Env(name string, def, floor int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return N(def, floor)
}
