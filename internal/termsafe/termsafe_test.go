package termsafe

import "testing"

func TestString(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"seo-agent", "seo-agent"},
		{"SEO Agent ü 日本", "SEO Agent ü 日本"},
		{"evil\x1b[2J\x1b]0;pwned\x07", `evil\x1b[2J\x1b]0;pwned\x07`},
		{"line\nbreak\r\tx", `line\nbreak\r\tx`},
		{"del\x7f c1\u009b", `del\x7f c1\x9b`},
		{"bidi \u202eevil\u202c zwj\u200d", `bidi \u202eevil\u202c zwj\u200d`},
		{"bad \xff utf8", `bad \xff utf8`},
		{"", ""},
	} {
		if got := String(c.in); got != c.want {
			t.Errorf("String(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func FuzzString(f *testing.F) {
	f.Add("evil\x1b[31m")
	f.Add("\u202e\xff")
	f.Fuzz(func(t *testing.T, s string) {
		out := String(s)
		for _, r := range out {
			if unsafe(r) && r != '\n' {
				t.Fatalf("String(%q) = %q keeps %U", s, out, r)
			}
		}
		if String(out) != out {
			t.Fatalf("String is not stable on its output: %q", out)
		}
	})
}
