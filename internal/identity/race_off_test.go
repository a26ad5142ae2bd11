//go:build !race

package identity

// slowdown stretches wall-clock bounds under the race detector.
const slowdown = 1
