package configyaml

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		content string
		keys    int    // top-level keys when it parses
		err     string // substring of the error; "" = parses
	}{
		{"mapping", "name: A\nskills: [a, b]\n", 2, ""},
		{"BOM and CRLF", "\xEF\xBB\xBFname: A\r\nruntime: x\r\n", 2, ""},
		{"anchors within bounds", "a: &a [1, 2]\nb: *a\nc: *a\n", 3, ""},
		{"empty mapping", "{}", 0, ""},
		{"empty", "", 0, "empty file"},
		{"comment", "# c\n", 0, "no YAML document"},
		{"not UTF-8", "a: \xff\n", 0, "offset 3"},
		{"sequence", "[1]", 0, "sequence, not a mapping"},
		{"two documents", "a: 1\n---\nb: 2\n", 0, "more than one YAML document"},
		{"duplicate", "a: 1\nb: {c: 1, c: 2}\n", 0, `key "c" already defined at line 2`},
		{"merge", "a: &a {x: 1}\nb: {<<: *a}\n", 0, "merge key"},
		{"complex key", "? {a: 1}\n: 2\n", 0, "not a scalar"},
		{"alias to a complex key", "a: &k [1]\n? *k\n: 2\n", 0, "not a scalar"},
		{"cycle", "a: &a {b: *a}\n", 0, "contains it"},
		{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), 0, "nested more than"},
		{"deep enough", "a: " + strings.Repeat("[", MaxDepth-1) + strings.Repeat("]", MaxDepth-1), 1, ""},
		{"too big", "a: " + strings.Repeat("x", MaxSize), 0, "over the"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse([]byte(tt.content))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d.Len() != tt.keys || len(d.Entries()) != tt.keys {
				t.Errorf("Len() = %d, want %d", d.Len(), tt.keys)
			}
		})
	}
}

func TestValues(t *testing.T) {
	d, err := Parse([]byte("s: text\nq: '123'\ni: 123\nn: ~\ne:\nt: !!str 5\na: &x hi\nb: *x\nm: {k: v}\n1: int key\n"))
	if err != nil {
		t.Fatal(err)
	}
	str := map[string]string{"s": "text", "q": "123", "t": "5", "a": "hi", "b": "hi"}
	for k, want := range str {
		v, ok := d.Get(k)
		if !ok {
			t.Fatalf("Get(%q) missing", k)
		}
		if got, ok := Str(v); !ok || got != want {
			t.Errorf("Str(%s) = %q, %v; want %q", k, got, ok, want)
		}
	}
	for _, k := range []string{"i", "n", "e", "m"} {
		v, _ := d.Get(k)
		if _, ok := Str(v); ok {
			t.Errorf("Str(%s) is a string", k)
		}
	}
	for k, want := range map[string]bool{"n": true, "e": true, "s": false, "q": false} {
		v, _ := d.Get(k)
		if IsNull(v) != want {
			t.Errorf("IsNull(%s) = %v", k, !want)
		}
	}
	if _, ok := d.Get("1"); ok {
		t.Error(`Get("1") found the int key 1`)
	}
	m, _ := d.Get("m")
	if es, ok := MappingEntries(m); !ok || len(es) != 1 {
		t.Errorf("MappingEntries(m) = %v, %v", es, ok)
	}
	s, _ := d.Get("s")
	if _, ok := MappingEntries(s); ok {
		t.Error("MappingEntries of a scalar succeeded")
	}
}
