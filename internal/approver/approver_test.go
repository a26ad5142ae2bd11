package approver

import (
	"strings"
	"testing"
)

func TestCheckNameAccepts(t *testing.T) {
	for _, s := range []string{
		"a",
		"alice",
		"Alice.Smith",
		"alice_smith-2",
		"alice@example.com",
		"0",
		"-",
		strings.Repeat("x", MaxLen),
	} {
		if err := CheckName(s); err != nil {
			t.Errorf("CheckName(%q): %v", s, err)
		}
	}
}

func TestCheckNameRefuses(t *testing.T) {
	for _, c := range []struct {
		name, s, want string
	}{
		{"empty", "", "name is empty"},
		{"too long", strings.Repeat("x", MaxLen+1), "name is 129 characters long, at most 128"},
		{"too long non-ASCII", strings.Repeat("é", MaxLen+1), "name is 129 characters long"},
		{"space", "alice smith", `name "alice smith": character 6 is U+0020 (space)`},
		{"leading space", " alice", "character 1 is U+0020 (space)"},
		{"tab", "alice\t", `name "alice\t": character 6 is U+0009 (control character)`},
		{"newline", "alice\nbob", `character 6 is U+000A (control character)`},
		{"NUL", "al\x00ice", `name "al\x00ice": character 3 is U+0000 (control character)`},
		{"DEL", "alice\x7f", "character 6 is U+007F (control character)"},
		{"ANSI escape", "\x1b[31malice", `name "\x1b[31malice": character 1 is U+001B (control character)`},
		{"cyrillic a", "\u0430lice", `name "\u0430lice": character 1 is U+0430 (not ASCII)`},
		{"cyrillic in middle", "b\u043eb", "character 2 is U+043E (not ASCII)"},
		{"fullwidth", "Ａｌｉｃｅ", `name "\uff21\uff4c\uff49\uff43\uff45": character 1 is U+FF21 (not ASCII)`},
		{"accented", "josé", "character 4 is U+00E9 (not ASCII)"},
		{"combining accent", "jose\u0301", "character 5 is U+0301 (not ASCII)"},
		{"zero width space", "ali\u200bce", "character 4 is U+200B (not ASCII)"},
		{"right-to-left override", "\u202eecila", "character 1 is U+202E (not ASCII)"},
		{"emoji", "alice🙂", "character 6 is U+1F642 (not ASCII)"},
		{"replacement character", "a\ufffd", "character 2 is U+FFFD (not ASCII)"},
		{"invalid UTF-8", "al\xffice", `name "al\xffice": character 3 is the byte 0xFF, not UTF-8`},
		{"truncated UTF-8", "ab\xc3", `character 3 is the byte 0xC3, not UTF-8`},
		{"slash", "alice/bob", "character 6 is U+002F '/'"},
		{"plus", "alice+x", "character 6 is U+002B '+'"},
		{"quote", `al"ice`, `character 3 is U+0022 '"'`},
		{"star", "*", "character 1 is U+002A '*'"},
		{"comma", "alice,bob", "character 6 is U+002C ','"},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := CheckName(c.s)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("CheckName(%q) = %v, want error with %q", c.s, err, c.want)
			}
			for _, r := range err.Error() {
				if r < 0x20 || r >= 0x7f {
					t.Fatalf("error has U+%04X unescaped: %q", r, err)
				}
			}
		})
	}
}

func TestSame(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want bool
	}{
		{"alice", "alice", true},
		{"Alice", "ALICE", true},
		{"alice", "ALICE", true},
		{"Ａｌｉｃｅ", "alice", true},     // fullwidth
		{"ＡＬＩＣＥ", "Alice", true},     // fullwidth capitals
		{"\u212aate", "kate", true},  // Kelvin sign
		{"ﬁona", "FIONA", true},      // ligature
		{"Straße", "STRASSE", true},  // full case folding
		{"josé", "JOSE\u0301", true}, // precomposed and combining accent
		{"ǅiva", "DŽIVA", true},      // titlecase digraph
		{"alice@Example.COM", "ALICE@example.com", true},
		{"", "", true},
		{"alice", "alicia", false},
		{"alice", "alice ", false},
		{"alice", "", false},
		{"\u0430lice", "alice", false}, // Cyrillic а is not Latin a
		{"аlice", "АLICE", true},       // but folds as Cyrillic
		{"a\u200blice", "alice", false},
		{"al\xffice", "al\xffice", true},
		{"al\xffice", "AL\xffICE", false}, // invalid UTF-8 only matches itself
		{"\xff", "\xfe", false},
		{"\xff", "\ufffd", false},
		{"alice\x00", "alice", false},
	} {
		if got := Same(c.a, c.b); got != c.want {
			t.Errorf("Same(%q, %q) = %v, want %v", c.a, c.b, got, c.want)
		}
		if got := Same(c.b, c.a); got != c.want {
			t.Errorf("Same(%q, %q) = %v, want %v (not symmetric)", c.b, c.a, got, c.want)
		}
	}
}

// TestSameAcceptsCheckedNames: two names that pass CheckName are Same
// exactly when they differ only in ASCII case.
func TestSameAcceptsCheckedNames(t *testing.T) {
	names := []string{"alice", "Alice", "ALICE", "bob", "alice.smith", "alice_smith", "a-b", "A-B", "x@y.z", "X@Y.Z"}
	for _, a := range names {
		for _, b := range names {
			if err := CheckName(a); err != nil {
				t.Fatal(err)
			}
			if got, want := Same(a, b), strings.EqualFold(a, b); got != want {
				t.Errorf("Same(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}
