package secret

import (
	"encoding/base64"
	"net/url"
	"strings"
)

// Credentials belong in the environment (${NAME}), but an operator can still
// write one into the inventory. The functions here find such literal
// credentials in a collector's templates, so that they are redacted like an
// expanded value and left out of stored targets. References (${NAME}, and
// {placeholder}s filled per capture) are never literal.

// sensitiveWords mark a header or query parameter name whose value is a
// credential.
var sensitiveWords = []string{"auth", "token", "key", "secret", "passw", "pwd", "cookie", "session", "signature", "credential", "jwt"}

// SensitiveName reports whether a header or query parameter called name
// carries a credential: Authorization, Cookie, X-Api-Key, access_token,
// X-Amz-Signature, sig and the like.
func SensitiveName(name string) bool {
	n := strings.ToLower(name)
	if n == "sig" || n == "pass" {
		return true
	}
	for _, w := range sensitiveWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// HeaderCredentials returns the literal parts of a header value template
// that are secret: everything but references and, for Authorization and
// Proxy-Authorization, the auth scheme ("Bearer abc" gives "abc"; Basic also
// gives the decoded user:password and password). Every header counts,
// whatever its name: headers are how a request authenticates.
func HeaderCredentials(name, value string) []string {
	v := strings.TrimSpace(value)
	if !strings.EqualFold(name, "Authorization") && !strings.EqualFold(name, "Proxy-Authorization") {
		return literalRuns(v)
	}
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok || !isSchemeName(scheme) {
		return literalRuns(v)
	}
	out := literalRuns(strings.TrimSpace(rest))
	if strings.EqualFold(scheme, "Basic") && len(out) == 1 {
		if dec, err := base64.StdEncoding.DecodeString(out[0]); err == nil {
			out = append(out, string(dec))
			if _, pw, ok := strings.Cut(string(dec), ":"); ok && pw != "" {
				out = append(out, pw)
			}
		}
	}
	return out
}

// URLCredentials returns the literal credentials in a URL template: the
// user-info password (the user name when there is no password, as in
// https://TOKEN@host), and the values of query parameters whose names are
// sensitive (SensitiveName). Each is returned as written and decoded.
// Other query values (root=/configs) are not secret and are left alone.
func URLCredentials(rawURL string) []string {
	var out []string
	add := func(lit string) {
		for _, run := range literalRuns(lit) {
			out = append(out, run)
			if dec, err := url.QueryUnescape(run); err == nil && dec != run {
				out = append(out, dec)
			}
		}
	}
	forEachCredential(rawURL, func(_ int, _ int, value string) { add(value) })
	return out
}

// RedactURL returns a URL template with the literal parts of its
// credentials (see URLCredentials) replaced by Redacted; references are
// kept, so a target still says which variable held the secret.
func RedactURL(rawURL string) string {
	var b strings.Builder
	last := 0
	forEachCredential(rawURL, func(start, end int, value string) {
		b.WriteString(rawURL[last:start])
		b.WriteString(redactLiterals(value))
		last = end
	})
	b.WriteString(rawURL[last:])
	return b.String()
}

// forEachCredential calls fn with the span of each credential in rawURL, in
// order. It parses by hand: a template's braces and ${NAME}s are not valid
// in every part of a URL, and a template must not be rejected here.
func forEachCredential(rawURL string, fn func(start, end int, value string)) {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return
	}
	authStart := i + 3
	authEnd := len(rawURL)
	if j := strings.IndexAny(rawURL[authStart:], "/?#"); j >= 0 {
		authEnd = authStart + j
	}
	if at := strings.LastIndexByte(rawURL[authStart:authEnd], '@'); at >= 0 {
		info := rawURL[authStart : authStart+at]
		if c := strings.IndexByte(info, ':'); c >= 0 {
			fn(authStart+c+1, authStart+at, info[c+1:])
		} else {
			fn(authStart, authStart+at, info)
		}
	}
	q := strings.IndexByte(rawURL[authEnd:], '?')
	if q < 0 {
		return
	}
	pos := authEnd + q + 1
	end := len(rawURL)
	if h := strings.IndexByte(rawURL[pos:], '#'); h >= 0 {
		end = pos + h
	}
	for pos < end {
		next := end
		if a := strings.IndexByte(rawURL[pos:end], '&'); a >= 0 {
			next = pos + a
		}
		pair := rawURL[pos:next]
		if k, v, ok := strings.Cut(pair, "="); ok {
			name, err := url.QueryUnescape(k)
			if err != nil {
				name = k
			}
			if SensitiveName(name) && v != "" {
				vs := pos + len(k) + 1
				fn(vs, vs+len(v), v)
			}
		}
		pos = next + 1
	}
}

// literalRuns splits a template at its references and returns the
// non-empty text between them.
func literalRuns(tmpl string) []string {
	var out []string
	forEachRun(tmpl, func(lit string, isRef bool) {
		if !isRef && lit != "" {
			out = append(out, lit)
		}
	})
	return out
}

// redactLiterals replaces each literal run of tmpl with Redacted.
func redactLiterals(tmpl string) string {
	var b strings.Builder
	forEachRun(tmpl, func(s string, isRef bool) {
		if isRef {
			b.WriteString(s)
		} else if s != "" {
			b.WriteString(Redacted)
		}
	})
	return b.String()
}

// forEachRun walks tmpl as alternating literal text and references:
// ${NAME} and {identifier}.
func forEachRun(tmpl string, fn func(s string, isRef bool)) {
	last := 0
	for i := 0; i < len(tmpl); i++ {
		start := i
		open := i
		if tmpl[i] == '$' && i+1 < len(tmpl) && tmpl[i+1] == '{' {
			open = i + 1
		} else if tmpl[i] != '{' {
			continue
		}
		end := strings.IndexByte(tmpl[open+1:], '}')
		if end <= 0 || !isIdent(tmpl[open+1:open+1+end]) {
			continue
		}
		fn(tmpl[last:start], false)
		stop := open + 1 + end + 1
		fn(tmpl[start:stop], true)
		last = stop
		i = stop - 1
	}
	fn(tmpl[last:], false)
}

func isIdent(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// isSchemeName reports whether s looks like an HTTP auth scheme (Bearer,
// Basic, token, …): a short word of letters, digits and dashes.
func isSchemeName(s string) bool {
	if s == "" || len(s) > 20 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
