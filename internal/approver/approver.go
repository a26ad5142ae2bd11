// Package approver checks and compares the names of plan authors and
// approvers.
//
// New names must pass CheckName: plain ASCII identifiers, so that two names
// that look alike are the same bytes. Same compares names that may predate
// that rule, such as the author of an old plan.
package approver

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
)

// MaxLen is the longest name CheckName accepts, in characters.
const MaxLen = 128

// CheckName accepts only a plain identifier: 1 to MaxLen ASCII letters,
// digits, '.', '_', '-' and '@'. Its error names the first character it
// refuses and that character's position (1-based), escaped, so a control
// character or a look-alike (Cyrillic 'а', fullwidth 'Ａ') is visible.
func CheckName(s string) error {
	if s == "" {
		return errors.New("name is empty")
	}
	if n := utf8.RuneCountInString(s); n > MaxLen {
		// Not echoed: it could be anything, and long.
		return fmt.Errorf("name is %d characters long, at most %d", n, MaxLen)
	}
	pos := 0
	for i, r := range s {
		pos++
		if allowed(r) {
			continue
		}
		if r == utf8.RuneError && !validAt(s, i) {
			return fmt.Errorf("name %s: character %d is the byte 0x%02X, not UTF-8; only ASCII letters, digits, '.', '_', '-' and '@' are allowed",
				quote(s), pos, s[i])
		}
		return fmt.Errorf("name %s: character %d is %s; only ASCII letters, digits, '.', '_', '-' and '@' are allowed",
			quote(s), pos, describe(r))
	}
	return nil
}

func allowed(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '.' || r == '_' || r == '-' || r == '@'
}

// validAt reports whether s holds a real U+FFFD at byte i, rather than a
// byte that is not UTF-8.
func validAt(s string, i int) bool {
	_, size := utf8.DecodeRuneInString(s[i:])
	return size == 3
}

// quote quotes s with every non-ASCII or non-printable character escaped,
// so an error message cannot carry look-alikes or terminal controls.
func quote(s string) string {
	return fmt.Sprintf("%+q", s)
}

// describe names a refused character: its code point, and the character
// itself only when printing it is harmless.
func describe(r rune) string {
	switch {
	case r == ' ':
		return "U+0020 (space)"
	case r < 0x20 || r == 0x7f:
		return fmt.Sprintf("U+%04X (control character)", r)
	case r < 0x7f:
		return fmt.Sprintf("U+%04X %q", r, r)
	}
	return fmt.Sprintf("U+%04X (not ASCII)", r)
}

// Same reports whether a and b are the same name once compatibility
// characters are normalised (NFKC) and case is folded, so "Alice", "ALICE"
// and fullwidth "Ａｌｉｃｅ" are the same, and so are "Straße" and
// "STRASSE".
//
// It is not a look-alike check: Cyrillic "аlice" and Latin "alice" are
// different names, which is why new names must pass CheckName. A string
// that is not valid UTF-8 is only the same as exactly itself, so a corrupt
// name never folds onto another.
func Same(a, b string) bool {
	if a == b {
		return true
	}
	if !utf8.ValidString(a) || !utf8.ValidString(b) {
		return false
	}
	return key(a) == key(b)
}

// key is the NFKC case-folded form of s: normalise, fold, and normalise
// again, since folding can undo normalisation (Unicode's NFKC_Casefold
// does the same). A Caser keeps state, so each call makes its own.
func key(s string) string {
	return norm.NFKC.String(cases.Fold().String(norm.NFKC.String(s)))
}
