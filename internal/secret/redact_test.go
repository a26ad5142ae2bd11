package secret

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

func TestRedact(t *testing.T) {
	tests := []struct {
		name    string
		secrets []string
		in      string
		want    string
	}{
		{"no secrets", nil, "plain text", "plain text"},
		{"single", []string{"hunter22"}, "pw=hunter22 ok", "pw=[REDACTED] ok"},
		{"every occurrence", []string{"hunter22"}, "hunter22/hunter22", "[REDACTED]/[REDACTED]"},
		{"multiple", []string{"hunter22", "tok-abcdef"}, "a=hunter22 b=tok-abcdef", "a=[REDACTED] b=[REDACTED]"},
		{"longer contains shorter", []string{"secret", "secretive"}, "x secretive y secret", "x [REDACTED] y [REDACTED]"},
		{"overlapping", []string{"abcdef", "cdefgh"}, "xxabcdefghyy", "xx[REDACTED]yy"},
		{"adjacent merge", []string{"aaaa1111", "bbbb2222"}, "<aaaa1111bbbb2222>", "<[REDACTED]>"},
		{"self overlapping", []string{"abab"}, "xabababx", "x[REDACTED]x"},
		{"too short ignored", []string{"", "abc", "on"}, "abc on", "abc on"},
		{"exactly min len", []string{"abcd"}, "abcd", "[REDACTED]"},
		{"query escaped form", []string{"p@ss word"}, "url?pw=p%40ss+word", "url?pw=[REDACTED]"},
		{"path escaped form", []string{"p@ss word"}, "/x/p@ss%20word/", "/x/[REDACTED]/"},
		{"json escaped form", []string{`q"uo\te`}, `{"pw":"q\"uo\\te"}`, `{"pw":"[REDACTED]"}`},
		{"multibyte", []string{"pässwörd"}, "→pässwörd←", "→[REDACTED]←"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := NewRedactor(tt.secrets...).Redact(tt.in)
			if got != tt.want {
				t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactNilAndZero(t *testing.T) {
	var nilR *Redactor
	if got := nilR.Redact("hunter22"); got != "hunter22" {
		t.Errorf("nil Redactor changed input: %q", got)
	}
	var zero Redactor
	if got := zero.Redact("hunter22"); got != "hunter22" {
		t.Errorf("empty Redactor changed input: %q", got)
	}
	zero.Add("hunter22")
	if got := zero.Redact("hunter22"); got != Redacted {
		t.Errorf("zero Redactor after Add = %q", got)
	}
}

func TestRedactorConcurrent(t *testing.T) {
	r := NewRedactor("seed-secret")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			r.Add(fmt.Sprintf("secret-%04d", i))
		}()
		go func() {
			defer wg.Done()
			for range 100 {
				if strings.Contains(r.Redact("x seed-secret y"), "seed-secret") {
					t.Error("seed secret leaked")
					return
				}
			}
		}()
	}
	wg.Wait()
	for i := range 8 {
		s := fmt.Sprintf("secret-%04d", i)
		if got := r.Redact(s); got != Redacted {
			t.Errorf("Redact(%q) = %q after concurrent Add", s, got)
		}
	}
}

// TestTrimCut: a text cut through a secret loses the secret's start, in
// any of its escaped forms; one cut elsewhere keeps its end.
func TestTrimCut(t *testing.T) {
	r := NewRedactor("hunter2-Secret/x")
	for in, want := range map[string]string{
		"connect tcp://u:hunter2-Sec":    "connect tcp://u:",
		"connect tcp://u:hunter2-Secret": "connect tcp://u:",
		"url ?pw=hunter2-Secret%2F":      "url ?pw=",
		"all of it: hunter2-Secret/x":    "all of it: hunter2-Secret/x", // whole: Redact's to replace
		"no secret here":                 "no secret here",
		"":                               "",
	} {
		if got := r.TrimCut(in); got != want {
			t.Errorf("TrimCut(%q) = %q, want %q", in, got, want)
		}
	}
	var none *Redactor
	if got := none.TrimCut("abc"); got != "abc" {
		t.Errorf("nil Redactor: %q", got)
	}
}
