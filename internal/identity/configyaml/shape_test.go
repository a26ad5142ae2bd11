package configyaml

import "testing"

func TestShapeAndResemblance(t *testing.T) {
	parse := func(s string) map[string]bool {
		t.Helper()
		d, err := Parse([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return d.Shape()
	}
	got := parse("name: X\ndescription: y\nruntime: claude-code\nruntime_config:\n  model: sonnet\n  models:\n    - id: a\nskills: [a, b]\nempty: {}\nnone: []\n")
	want := []string{"runtime", "runtime_config.model", "runtime_config.models[].id", "skills[]=a", "skills[]=b", "empty", "none"}
	if len(got) != len(want) {
		t.Errorf("shape %v, want %v", got, want)
	}
	for _, w := range want {
		if !got[w] {
			t.Errorf("shape lacks %q: %v", w, got)
		}
	}
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"a: 1\nb: 2\n", "a: 3\nb: 4\n", 100}, // values are not shape
		{"a: 1\nb: 2\n", "a: 1\nc: 2\n", 33},  // 1 shared of 3
		{"name: A\n", "name: B\n", 100},       // both empty shapes
		{"s: [x]\n", "s: [y]\n", 0},           // list entries are shape
		{"a: 1\n", "a: 1\nb: 1\nc: 1\nd: 1\n", 25},
	} {
		if r := Resemblance(parse(c.a), parse(c.b)); r != c.want {
			t.Errorf("Resemblance(%q, %q) = %d, want %d", c.a, c.b, r, c.want)
		}
	}
}
