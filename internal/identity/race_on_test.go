//go:build race

package identity

// slowdown stretches wall-clock bounds under the race detector, which runs
// this parser several times slower.
const slowdown = 10
