package secret

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// dsnMask replaces a password in a redacted DSN; it matches what pgx prints.
const dsnMask = "xxxxx"

// UnparsableDSN is what RedactDSN returns for input it cannot take apart
// with certainty.
const UnparsableDSN = "[unparsable dsn]"

// RedactDSN returns a postgres URL or key=value DSN with its password
// replaced by "xxxxx" (postgres://u:xxxxx@h/db). Query parameters and
// keywords named password or sslpassword are masked too.
//
// Parsing follows pgx (and so libpq) exactly, with one deliberate extra
// rule: a URL with an '@' anywhere after the user-info is rejected, because
// that is the usual sign of a password with an unencoded '@', '/' or '?'
// whose tail would otherwise be printed as host, path or query. Anything that
// does not parse returns UnparsableDSN rather than risk leaking.
func RedactDSN(dsn string) string {
	d, err := parseDSN(dsn)
	if err != nil {
		return UnparsableDSN
	}
	return d.redacted()
}

// DSNPasswords returns the password and sslpassword values in dsn, each both
// as written and decoded, so they can be given to a Redactor: a DSN may be
// logged verbatim or its password may surface decoded in a driver error. The
// error never quotes the DSN, so it is safe to show.
func DSNPasswords(dsn string) ([]string, error) {
	d, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	return d.passwords, nil
}

// DSNSettings returns the keywords of a key=value DSN with their values, the
// values of password and sslpassword masked as "xxxxx"; a keyword given twice
// keeps its last value, as in libpq. A URL, or text that does not parse as
// key=value, is an error that never quotes the input.
func DSNSettings(dsn string) (map[string]string, error) {
	d, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if d.settings == nil {
		return nil, errors.New("not a key=value DSN")
	}
	return d.settings, nil
}

// parsedDSN records where the secrets of a DSN sit so that the rest of the
// text can be reproduced byte for byte.
type parsedDSN struct {
	text      string
	spans     [][2]int // [start, end) of each raw password value, in order
	passwords []string
	settings  map[string]string // key=value form only; secret values masked
}

func (d parsedDSN) redacted() string {
	var b strings.Builder
	last := 0
	for _, sp := range d.spans {
		b.WriteString(d.text[last:sp[0]])
		b.WriteString(dsnMask)
		last = sp[1]
	}
	b.WriteString(d.text[last:])
	return b.String()
}

// mask records that text[start:end] is to be masked and that it holds a
// password written as raw which decodes to decoded.
func (d *parsedDSN) mask(start, end int, raw, decoded string) {
	d.spans = append(d.spans, [2]int{start, end})
	for _, v := range []string{raw, decoded} {
		if v != "" && !slices.Contains(d.passwords, v) {
			d.passwords = append(d.passwords, v)
		}
	}
}

// isSecretKey reports whether a DSN keyword carries a password.
func isSecretKey(k string) bool {
	return k == "password" || k == "sslpassword"
}

func parseDSN(dsn string) (parsedDSN, error) {
	d := parsedDSN{text: dsn}
	// A NUL cannot reach libpq and would act as a delimiter on the wire.
	if strings.IndexByte(dsn, 0) >= 0 {
		return d, errors.New("contains a NUL byte")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		return d, d.parseURL()
	}
	return d, d.parseKeywordValue()
}

// parseURL mirrors pgx's parseURLSettings (itself a port of libpq's URI
// parser), not net/url: the two disagree on where user-info ends.
func (d *parsedDSN) parseURL() error {
	s := d.text
	pos := strings.Index(s, "://") + len("://")

	// Like libpq, the user-info ends at the first '@' unless a '/' comes first.
	if i := strings.IndexAny(s[pos:], "@/"); i >= 0 && s[pos+i] == '@' {
		userinfo := s[pos : pos+i]
		user, pw, hasPW := strings.Cut(userinfo, ":")
		if _, err := uriDecode(user); err != nil {
			return errors.New("invalid user name: " + err.Error())
		}
		if hasPW {
			decoded, err := uriDecode(pw)
			if err != nil {
				return errors.New("invalid password: " + err.Error())
			}
			start := pos + len(user) + 1
			d.mask(start, start+len(pw), pw, decoded)
		}
		pos += i + 1
	}
	if strings.IndexByte(s[pos:], '@') >= 0 {
		return errors.New("'@' outside the user-info; percent-encode it as %40")
	}

	// Comma-separated host[:port] list, IPv6 hosts in brackets.
	for {
		if pos < len(s) && s[pos] == '[' {
			end := strings.IndexByte(s[pos:], ']')
			if end < 0 {
				return errors.New("unterminated IPv6 address")
			}
			if end == 1 {
				return errors.New("empty IPv6 address")
			}
			pos += end + 1
			if pos < len(s) && !strings.ContainsRune(":/?,", rune(s[pos])) {
				return errors.New("unexpected character after IPv6 address")
			}
		} else {
			end := indexAnyFrom(s, pos, ":/?,")
			if _, err := uriDecode(s[pos:end]); err != nil {
				return errors.New("invalid host: " + err.Error())
			}
			pos = end
		}
		if pos < len(s) && s[pos] == ':' {
			pos++
			end := indexAnyFrom(s, pos, "/?,")
			// pgx accepts any text here and fails later; a non-numeric port is
			// most likely the tail of a password with an unencoded ':' or '@'.
			for _, c := range []byte(s[pos:end]) {
				if c < '0' || c > '9' {
					return errors.New("port is not a number")
				}
			}
			pos = end
		}
		if pos >= len(s) || s[pos] != ',' {
			break
		}
		pos++
	}

	if pos < len(s) && s[pos] == '/' {
		pos++
		end := indexAnyFrom(s, pos, "?")
		if _, err := uriDecode(s[pos:end]); err != nil {
			return errors.New("invalid database name: " + err.Error())
		}
		pos = end
	}
	if pos >= len(s) {
		return nil
	}
	// Only '?' can remain: the host loop stops at '/', '?' or the end.
	pos++
	for pos < len(s) {
		end := indexAnyFrom(s, pos, "&")
		pair := s[pos:end]
		rawKey, rawVal, ok := strings.Cut(pair, "=")
		if !ok || strings.IndexByte(rawVal, '=') >= 0 {
			return errors.New("query parameter is not key=value")
		}
		key, err := uriDecode(rawKey)
		if err != nil {
			return errors.New("invalid query parameter name: " + err.Error())
		}
		val, err := uriDecode(rawVal)
		if err != nil {
			return errors.New("invalid query parameter value: " + err.Error())
		}
		if isSecretKey(key) {
			start := pos + len(rawKey) + 1
			d.mask(start, start+len(rawVal), rawVal, val)
		}
		pos = end
		if pos < len(s) {
			pos++ // the '&'; like pgx, a trailing one is accepted
		}
	}
	return nil
}

// indexAnyFrom returns the index in s of the first byte of chars at or after
// from, or len(s).
func indexAnyFrom(s string, from int, chars string) int {
	if i := strings.IndexAny(s[from:], chars); i >= 0 {
		return from + i
	}
	return len(s)
}

// uriDecode percent-decodes like libpq's conninfo_uri_decode: exactly two hex
// digits after '%', no %00, surrounding spaces ignored, inner spaces
// rejected. Its errors never quote the input, which may be a password.
func uriDecode(raw string) (string, error) {
	raw = strings.Trim(raw, " ")
	if strings.IndexByte(raw, ' ') >= 0 {
		return "", errors.New("unencoded space")
	}
	if strings.IndexByte(raw, '%') < 0 {
		return raw, nil
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		if raw[i] != '%' {
			b.WriteByte(raw[i])
			continue
		}
		if i+2 >= len(raw) {
			return "", errors.New("truncated percent-encoding")
		}
		hi, ok1 := unhex(raw[i+1])
		lo, ok2 := unhex(raw[i+2])
		if !ok1 || !ok2 {
			return "", errors.New("invalid percent-encoding")
		}
		c := hi<<4 | lo
		if c == 0 {
			return "", errors.New("percent-encoded NUL")
		}
		b.WriteByte(c)
		i += 2
	}
	return b.String(), nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isSpace matches the whitespace set libpq skips between keyword=value pairs.
func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\v', '\f':
		return true
	}
	return false
}

// parseKeywordValue mirrors pgx's parseKeywordValueSettings: values may be
// single-quoted, and a backslash makes the next byte literal in both forms.
func (d *parsedDSN) parseKeywordValue() error {
	s := d.text
	pos := 0
	d.settings = map[string]string{}
	skipSpace := func() {
		for pos < len(s) && isSpace(s[pos]) {
			pos++
		}
	}
	skipSpace()
	for pos < len(s) {
		eq := strings.IndexByte(s[pos:], '=')
		if eq < 0 {
			return errors.New("expected keyword=value")
		}
		key := strings.Trim(s[pos:pos+eq], " \t\n\r\v\f")
		if key == "" || strings.IndexAny(key, " \t\n\r\v\f") >= 0 {
			return errors.New("invalid keyword")
		}
		pos += eq + 1
		skipSpace()

		var start, end, next int
		switch {
		case pos >= len(s):
			start, end, next = pos, pos, pos
		case s[pos] != '\'':
			start = pos
			end = pos
			for end < len(s) && !isSpace(s[end]) {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			end = min(end, len(s)) // a trailing backslash escapes the end
			next = end
		default:
			start = pos + 1
			end = start
			for end < len(s) && s[end] != '\'' {
				if s[end] == '\\' {
					end++
				}
				end++
			}
			if end >= len(s) {
				return errors.New("unterminated quoted value")
			}
			next = end + 1
		}
		if isSecretKey(key) {
			// Mask the quotes too so the output reads password=xxxxx.
			ms, me := start, end
			if next > end {
				ms, me = start-1, next
			}
			d.mask(ms, me, s[start:end], unescapeKeywordValue(s[start:end]))
			d.settings[key] = dsnMask
		} else {
			d.settings[key] = unescapeKeywordValue(s[start:end])
		}
		pos = next
		skipSpace()
	}
	return nil
}

// unescapeKeywordValue drops each backslash and keeps the byte after it.
func unescapeKeywordValue(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' {
			i++
			if i == len(s) {
				break
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// MaskPasswords returns msg, foreign text about one connection (a driver's or
// server's error), with each password in it masked as RedactDSN masks them:
// whatever its length, since the text is about that connection, and in each
// escaped form a URL may give it, longest first so that a password holding
// another is masked whole.
func MaskPasswords(msg string, passwords ...string) string {
	var forms []string
	for _, p := range passwords {
		if p == "" {
			continue
		}
		for _, v := range []string{p, url.QueryEscape(p), url.PathEscape(p), url.UserPassword("", p).String()[1:]} {
			if v != "" && !slices.Contains(forms, v) {
				forms = append(forms, v)
			}
		}
	}
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		msg = strings.ReplaceAll(msg, f, dsnMask)
	}
	return msg
}
