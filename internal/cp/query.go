package cp

import (
	"errors"
	"fmt"
	"strings"
)

// The CP query is checked here before any connection, so that a query that
// could write is refused whatever the database would make of it. The server
// guards stay in place too (extended protocol, READ ONLY transaction): this
// check exists to give a clear error early and to refuse what READ ONLY does
// not cover, not to replace them.
//
// The lexer follows PostgreSQL's (scan.l) closely enough to find every
// keyword, ';' and parenthesis outside comments, string literals and quoted
// identifiers; the session is given standard_conforming_strings = on so that
// backslashes in '…' mean the same to both.

type tokenKind int

const (
	tokWord  tokenKind = iota // unquoted identifier or keyword
	tokOpen                   // (
	tokClose                  // )
	tokSemi                   // ;
	tokOther                  // anything else outside literals: numbers, operators, quoted identifiers, literals
)

type token struct {
	kind tokenKind
	word string // upper-cased ASCII, for tokWord
	pos  int    // byte offset in the query
}

func (t token) is(words ...string) bool {
	if t.kind != tokWord {
		return false
	}
	for _, w := range words {
		if t.word == w {
			return true
		}
	}
	return false
}

// queryError names the flag and, when known, the line of the problem.
func queryError(q string, pos int, format string, a ...any) error {
	msg := fmt.Sprintf(format, a...)
	if pos < 0 {
		return errors.New("--cp-query: " + msg)
	}
	return fmt.Errorf("--cp-query: line %d: %s", 1+strings.Count(q[:pos], "\n"), msg)
}

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentCont(c byte) bool {
	return isIdentStart(c) || '0' <= c && c <= '9' || c == '$'
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// lexSQL splits q into the tokens checkQuery looks at. Comments are dropped;
// literals and quoted identifiers become one tokOther each, so nothing inside
// them is ever read as a keyword or a ';'.
func lexSQL(q string) ([]token, error) {
	if i := strings.IndexByte(q, 0); i >= 0 {
		// The protocol ends the query text at a NUL: the server would run
		// something other than what was checked.
		return nil, queryError(q, i, "contains a NUL byte")
	}
	var toks []token
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
			i++
		case strings.HasPrefix(q[i:], "--"):
			end := strings.IndexAny(q[i:], "\r\n")
			if end < 0 {
				end = len(q) - i
			}
			i += end
		case strings.HasPrefix(q[i:], "/*"):
			// Block comments nest in PostgreSQL, unlike in C.
			start, depth := i, 1
			for i += 2; depth > 0 && i < len(q); {
				switch {
				case strings.HasPrefix(q[i:], "/*"):
					depth++
					i += 2
				case strings.HasPrefix(q[i:], "*/"):
					depth--
					i += 2
				default:
					i++
				}
			}
			if depth > 0 {
				return nil, queryError(q, start, "unterminated /* comment")
			}
		case c == '\'':
			end, err := skipString(q, i, false)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind: tokOther, pos: i})
			i = end
		case c == '"':
			end := skipQuoted(q, i+1, '"', false)
			if end < 0 {
				return nil, queryError(q, i, `unterminated quoted identifier`)
			}
			toks = append(toks, token{kind: tokOther, pos: i})
			i = end
		case c == '$':
			switch tag, ok := dollarTag(q[i:]); {
			case ok:
				body := i + len(tag)
				end := strings.Index(q[body:], tag)
				if end < 0 {
					return nil, queryError(q, i, "unterminated dollar-quoted string %s", tag)
				}
				toks = append(toks, token{kind: tokOther, pos: i})
				i = body + end + len(tag)
			default:
				// $1, or a lone '$': not a literal either way.
				toks = append(toks, token{kind: tokOther, pos: i})
				i++
				for i < len(q) && isDigit(q[i]) {
					i++
				}
			}
		case isIdentStart(c):
			start := i
			for i < len(q) && isIdentCont(q[i]) {
				i++
			}
			word := strings.ToUpper(q[start:i])
			if word == "E" && i < len(q) && q[i] == '\'' {
				// E'…': backslash escapes, \' included.
				end, err := skipString(q, i, true)
				if err != nil {
					return nil, err
				}
				toks = append(toks, token{kind: tokOther, pos: start})
				i = end
				continue
			}
			// Other prefixes (B'', X'', N'', U&'') quote as a plain '…'
			// does, so the word and the string that follows lex apart.
			toks = append(toks, token{kind: tokWord, word: word, pos: start})
		case isDigit(c):
			// Only digits, '_' and '.': letters right after a number (1e5,
			// 0x1F, or 1INTO on a server without the trailing-junk check)
			// are lexed as a word of their own, so a keyword is never hidden.
			toks = append(toks, token{kind: tokOther, pos: i})
			for i < len(q) && (isDigit(q[i]) || q[i] == '_' || q[i] == '.') {
				i++
			}
		case c == '(':
			toks = append(toks, token{kind: tokOpen, pos: i})
			i++
		case c == ')':
			toks = append(toks, token{kind: tokClose, pos: i})
			i++
		case c == ';':
			toks = append(toks, token{kind: tokSemi, pos: i})
			i++
		default:
			toks = append(toks, token{kind: tokOther, pos: i})
			i++
		}
	}
	return toks, nil
}

// skipString returns the offset just past the '…' literal whose opening
// quote is at q[open]. A doubled quote stands for one inside it; with
// backslashes (E'…'), a backslash makes the next byte literal too.
func skipString(q string, open int, backslashes bool) (int, error) {
	end := skipQuoted(q, open+1, '\'', backslashes)
	if end < 0 {
		return 0, queryError(q, open, "unterminated string literal")
	}
	return end, nil
}

// skipQuoted scans from i for the closing quote, a doubled quote standing for
// itself; it returns the offset past the closing quote, or -1.
func skipQuoted(q string, i int, quote byte, backslashes bool) int {
	for i < len(q) {
		switch c := q[i]; {
		case backslashes && c == '\\':
			i += 2
		case c == quote && i+1 < len(q) && q[i+1] == quote:
			i += 2
		case c == quote:
			return i + 1
		default:
			i++
		}
	}
	return -1
}

// dollarTag returns the opening delimiter ($$ or $tag$) that s starts with.
// A tag is an identifier without '$'; "$1" is a parameter, not a tag.
func dollarTag(s string) (string, bool) {
	if len(s) < 2 || s[0] != '$' {
		return "", false
	}
	if s[1] == '$' {
		return "$$", true
	}
	if !isIdentStart(s[1]) {
		return "", false
	}
	for j := 2; j < len(s); j++ {
		switch c := s[j]; {
		case c == '$':
			return s[:j+1], true
		case !isIdentCont(c):
			return "", false
		}
	}
	return "", false
}

// writeKeywords are the statements a WITH query can carry out as
// data-modifying CTEs. They are refused anywhere in the query: outside a
// WITH they cannot appear except as an unquoted column name, which can be
// written quoted ("update") instead.
var writeKeywords = []string{"INSERT", "UPDATE", "DELETE", "MERGE"}

// checkQuery accepts one SELECT, or a WITH whose main statement is a SELECT,
// optionally followed by one ';'. It refuses, besides anything else:
// data-modifying CTEs, SELECT … INTO (it creates a table) and FOR UPDATE /
// FOR SHARE (they lock rows of the control plane). Functions called by the
// query are left to the READ ONLY transaction.
func checkQuery(q string) error {
	toks, err := lexSQL(q)
	if err != nil {
		return err
	}
	if n := len(toks); n > 0 && toks[n-1].kind == tokSemi {
		toks = toks[:n-1]
	}
	if len(toks) == 0 {
		return queryError(q, -1, "no statement: give one SELECT returning tenant, workspace_id, template")
	}
	for _, t := range toks {
		if t.kind == tokSemi {
			return queryError(q, t.pos, "';' ends the statement before the end of the query: give exactly one SELECT")
		}
	}
	first := toks[0]
	if !first.is("SELECT", "WITH") {
		return queryError(q, first.pos, "must be one SELECT or WITH … SELECT statement, not %s", describeToken(q, first))
	}
	depth := 0
	mainSeen := first.is("SELECT")
	for i, t := range toks {
		switch {
		case t.kind == tokOpen:
			depth++
		case t.kind == tokClose:
			depth--
			if depth < 0 {
				return queryError(q, t.pos, "unbalanced ')'")
			}
		case t.is("FOR") && isLockingClause(toks[i+1:]):
			return queryError(q, t.pos, "FOR UPDATE / FOR SHARE locks rows: only a plain SELECT is run")
		case t.is(writeKeywords...):
			return queryError(q, t.pos, "%s writes: only a plain SELECT is run (quote a column of that name, as \"%s\")",
				t.word, strings.ToLower(t.word))
		case t.is("INTO"):
			return queryError(q, t.pos, "SELECT … INTO creates a table: only a plain SELECT is run")
		case !mainSeen && depth == 0 && t.is("SELECT", "VALUES", "TABLE"):
			// WITH's CTE bodies and column lists are all in parentheses:
			// the first of these at depth 0 starts its main statement.
			if !t.is("SELECT") {
				return queryError(q, t.pos, "WITH must end in a SELECT, not %s", t.word)
			}
			mainSeen = true
		}
	}
	if depth != 0 {
		return queryError(q, -1, "unbalanced '('")
	}
	if !mainSeen {
		return queryError(q, first.pos, "WITH must end in a SELECT")
	}
	return nil
}

// isLockingClause reports whether the tokens after a FOR start a row-locking
// clause: UPDATE, SHARE, NO KEY UPDATE or KEY SHARE.
func isLockingClause(rest []token) bool {
	if len(rest) == 0 {
		return false
	}
	if rest[0].is("UPDATE", "SHARE") {
		return true
	}
	return len(rest) > 1 && (rest[0].is("NO") && rest[1].is("KEY") || rest[0].is("KEY") && rest[1].is("SHARE"))
}

// describeToken names a token for an error message without quoting a
// literal, which may be long or hold anything.
func describeToken(q string, t token) string {
	switch t.kind {
	case tokWord:
		return t.word
	case tokOpen:
		return "'('"
	case tokClose:
		return "')'"
	}
	return fmt.Sprintf("%q", q[t.pos:t.pos+1])
}
