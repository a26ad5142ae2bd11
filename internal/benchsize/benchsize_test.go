package benchsize

import "testing"

func TestSizes(t *testing.T) {
	for _, c := range []struct {
		scale, env string
		n, env1    int
	}{
		{"", "", 5000, 5000},
		{"0.1", "", 500, 500},
		{"0.01", "", 100, 100}, // the floor
		{"2", "", 10000, 10000},
		{"junk", "", 5000, 5000},
		{"-1", "", 5000, 5000},
		{"0.1", "300", 500, 300}, // an exact size is not scaled
		{"", "0", 5000, 5000},
	} {
		t.Setenv("BENCH_SCALE", c.scale)
		t.Setenv("BENCH_X", c.env)
		if got := N(5000, 100); got != c.n {
			t.Errorf("BENCH_SCALE=%q: N(5000, 100) = %d, want %d", c.scale, got, c.n)
		}
		if got := Env("BENCH_X", 5000, 100); got != c.env1 {
			t.Errorf("BENCH_SCALE=%q BENCH_X=%q: Env = %d, want %d", c.scale, c.env, got, c.env1)
		}
	}
}
