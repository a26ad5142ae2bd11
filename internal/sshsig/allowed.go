package sshsig

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// AllowedSigners is a parsed OpenSSH allowed_signers file (see ALLOWED
// SIGNERS in ssh-keygen(1)): which keys may sign for which principals.
//
// It reads the same files as ssh-keygen 9.2, with these differences, each
// an error at parse time rather than a silent change of meaning:
//
//   - principals must be literal names: patterns (`*`, `?`, `!`) are
//     refused, because Verify returns principals as the signer's identity
//     and a pattern is not one;
//   - cert-authority lines are refused: certificates are not supported;
//   - only the key types listed in the package comment are accepted;
//   - a valid-after later than its line's valid-before is refused;
//   - an empty file, or one with only comments, is refused.
//
// The namespaces="…" option is a pattern-list as in ssh-keygen (`*`, `?`,
// and `!` to exclude). valid-after="…" and valid-before="…" take
// YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]; both bounds are inclusive, a date
// means its first second, and a time without Z is in the local time zone,
// all as in ssh-keygen. Option values must be double-quoted, as ssh-keygen
// requires.
type AllowedSigners struct {
	name    string
	entries []entry
}

type entry struct {
	line        int
	principals  []string
	namespaces  []string // nil: every namespace
	validAfter  int64    // Unix seconds; 0: no bound
	validBefore int64    // Unix seconds; 0: no bound
	key         []byte   // wire encoding, compared with the signature's
}

// ParseAllowedSigners parses the allowed_signers file content b. name is
// used in errors, which have the form "name:line: reason".
func ParseAllowedSigners(name string, b []byte) (*AllowedSigners, error) {
	a := &AllowedSigners{name: name}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		line = strings.TrimLeft(line, " \t")
		if line == "" || line[0] == '#' {
			continue
		}
		e, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, i+1, err)
		}
		e.line = i + 1
		a.entries = append(a.entries, e)
	}
	if len(a.entries) == 0 {
		return nil, fmt.Errorf("%s: no allowed signers", name)
	}
	return a, nil
}

// nextField splits off the first whitespace-delimited field of s, where
// whitespace inside double quotes does not count.
func nextField(s string) (field, rest string, err error) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return s[:i], strings.TrimLeft(s[i:], " \t"), nil
		}
	}
	if quoted {
		return "", "", errors.New("unterminated double quote")
	}
	return s, "", nil
}

func isKeyTypeName(s string) bool {
	switch s {
	case ssh.KeyAlgoRSA, ssh.KeyAlgoDSA, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384,
		ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256, ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519,
		ssh.CertAlgoRSAv01, ssh.CertAlgoDSAv01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoECDSA384v01,
		ssh.CertAlgoECDSA521v01, ssh.CertAlgoSKECDSA256v01, ssh.CertAlgoED25519v01, ssh.CertAlgoSKED25519v01:
		return true
	}
	return false
}

// parseLine parses one non-comment line:
// principals [options] keytype base64-key [comment].
func parseLine(line string) (entry, error) {
	var e entry
	field, rest, err := nextField(line)
	if err != nil {
		return e, err
	}
	if isKeyTypeName(field) {
		return e, errors.New("missing principals before the key")
	}
	if e.principals, err = parsePrincipals(field); err != nil {
		return e, err
	}

	if field, rest, err = nextField(rest); err != nil {
		return e, err
	}
	if field == "" {
		return e, errors.New("missing key")
	}
	if !isKeyTypeName(field) {
		if err := e.parseOptions(field); err != nil {
			return e, err
		}
		if field, rest, err = nextField(rest); err != nil {
			return e, err
		}
		if field == "" {
			return e, errors.New("missing key")
		}
	}
	keyType := field
	if !isKeyTypeName(keyType) {
		return e, fmt.Errorf("unknown key type %q", keyType)
	}
	if !supportedKeyType(keyType) {
		return e, fmt.Errorf("key type %q is not supported (only %s)", keyType, supportedKeyTypes)
	}
	// The key's base64 never holds quotes or spaces, and the comment after
	// it is free text, so it is cut at the first blank, unquoted.
	b64, _, _ := strings.Cut(strings.ReplaceAll(rest, "\t", " "), " ")
	if b64 == "" {
		return e, errors.New("missing base64 key after " + keyType)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return e, fmt.Errorf("key: bad base64: %w", err)
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return e, fmt.Errorf("key: %w", err)
	}
	if key.Type() != keyType {
		return e, fmt.Errorf("key is %s, but the line says %s", key.Type(), keyType)
	}
	if err := checkKey(key); err != nil {
		return e, err
	}
	e.key = key.Marshal()
	return e, nil
}

// parsePrincipals parses the comma-separated principals field, which may be
// wrapped in double quotes as a whole.
func parsePrincipals(field string) ([]string, error) {
	if s, ok := strings.CutPrefix(field, `"`); ok {
		field, ok = strings.CutSuffix(s, `"`)
		if !ok || field == "" {
			return nil, errors.New("principals: bad quoting")
		}
	}
	if strings.Contains(field, `"`) {
		return nil, errors.New("principals: bad quoting")
	}
	var ps []string
	for p := range strings.SplitSeq(field, ",") {
		if p == "" {
			return nil, errors.New("principals: empty principal")
		}
		if strings.ContainsAny(p, "*?!") {
			return nil, fmt.Errorf("principal %q: patterns are not supported, list each principal", p)
		}
		for _, c := range p {
			if c < ' ' || c == 0x7f {
				return nil, fmt.Errorf("principal %q: control character", p)
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// splitOptions splits the options field at commas outside double quotes.
func splitOptions(s string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			quoted = !quoted
		case ',':
			if !quoted {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// parseOptions parses the options field into e.
func (e *entry) parseOptions(field string) error {
	seen := map[string]bool{}
	for _, opt := range splitOptions(field) {
		given, value, hasValue := strings.Cut(opt, "=")
		// Option names are case-insensitive, as in ssh-keygen.
		name := strings.ToLower(given)
		switch name {
		case "":
			return errors.New("options: empty option")
		case "cert-authority":
			return errors.New("cert-authority: certificates are not supported")
		case "namespaces", "valid-after", "valid-before":
		default:
			return fmt.Errorf("unknown option or key type %q", given)
		}
		if seen[name] {
			return fmt.Errorf("option %s given twice", name)
		}
		seen[name] = true
		if !hasValue {
			return fmt.Errorf("option %s needs a value", name)
		}
		v, ok := strings.CutPrefix(value, `"`)
		if ok {
			v, ok = strings.CutSuffix(v, `"`)
		}
		if !ok || strings.Contains(v, `"`) {
			return fmt.Errorf("option %s: the value must be in double quotes", name)
		}
		switch name {
		case "namespaces":
			for p := range strings.SplitSeq(v, ",") {
				if p == "" || p == "!" {
					return errors.New("option namespaces: empty namespace")
				}
				e.namespaces = append(e.namespaces, p)
			}
		case "valid-after", "valid-before":
			t, err := parseTimestamp(v)
			if err != nil {
				return fmt.Errorf("option %s: %w", name, err)
			}
			if name == "valid-after" {
				e.validAfter = t.Unix()
			} else {
				e.validBefore = t.Unix()
			}
		}
	}
	if e.validAfter != 0 && e.validBefore != 0 && e.validAfter > e.validBefore {
		return errors.New("valid-after is later than valid-before")
	}
	return nil
}

// parseTimestamp parses YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]; without Z the
// time is local, as ssh-keygen reads it.
func parseTimestamp(s string) (time.Time, error) {
	loc := time.Local
	digits, utc := strings.CutSuffix(s, "Z")
	if utc {
		loc = time.UTC
	}
	var layout string
	switch len(digits) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]", s)
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[Z] or YYYYMMDDHHMM[SS][Z]", s)
		}
	}
	t, err := time.ParseInLocation(layout, digits, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", s, err)
	}
	if t.Unix() <= 0 {
		// 0 means "no bound" in entry.
		return time.Time{}, fmt.Errorf("%q is not after 1970", s)
	}
	return t, nil
}

// matchPattern matches s against an ssh_config(5) pattern, where `*` is any
// run of bytes and `?` any one byte.
func matchPattern(pattern, s string) bool {
	p, i := 0, 0
	star, starI := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case p < len(pattern) && pattern[p] == '*':
			star, starI = p, i
			p++
		case star >= 0:
			// Let the last star take one more byte and retry.
			starI++
			p, i = star+1, starI
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

// matchList matches s against a pattern-list: some pattern must match and
// no negated (`!`) pattern may.
func matchList(s string, patterns []string) bool {
	matched := false
	for _, p := range patterns {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if matchPattern(neg, s) {
				return false
			}
		} else if matchPattern(p, s) {
			matched = true
		}
	}
	return matched
}

// Verify checks that armored is a valid SSHSIG signature of message, made
// for exactly namespace by a key of a, and returns, in file order and
// without duplicates, every principal of every line that holds that key,
// allows namespace, and is valid at now (normally time.Now()). It fails if
// there is none.
func (a *AllowedSigners) Verify(armored []byte, namespace string, message []byte, now time.Time) (principals []string, err error) {
	if a == nil {
		return nil, errors.New("sshsig: no allowed signers")
	}
	if namespace == "" {
		return nil, errors.New("sshsig: empty namespace")
	}
	s, err := parse(armored)
	if err != nil {
		return nil, fmt.Errorf("sshsig: %w", err)
	}
	if s.namespace != namespace {
		return nil, fmt.Errorf("sshsig: signature is for namespace %q, not %q", s.namespace, namespace)
	}
	if err := s.verify(message); err != nil {
		return nil, fmt.Errorf("sshsig: %w", err)
	}

	key := s.key.Marshal()
	at := now.Unix() // ssh-keygen compares whole seconds
	var refused []string
	for _, e := range a.entries {
		if !bytes.Equal(e.key, key) {
			continue
		}
		where := fmt.Sprintf("%s:%d", a.name, e.line)
		switch {
		case e.namespaces != nil && !matchList(namespace, e.namespaces):
			refused = append(refused, fmt.Sprintf("%s: not for namespace %q", where, namespace))
		case e.validAfter != 0 && at < e.validAfter:
			refused = append(refused, fmt.Sprintf("%s: not valid until %s", where, time.Unix(e.validAfter, 0).UTC().Format(time.RFC3339)))
		case e.validBefore != 0 && at > e.validBefore:
			refused = append(refused, fmt.Sprintf("%s: expired at %s", where, time.Unix(e.validBefore, 0).UTC().Format(time.RFC3339)))
		default:
			for _, p := range e.principals {
				if !slices.Contains(principals, p) {
					principals = append(principals, p)
				}
			}
		}
	}
	if len(principals) == 0 {
		fp := ssh.FingerprintSHA256(s.key)
		if len(refused) == 0 {
			return nil, fmt.Errorf("sshsig: key %s %s is not in %s", s.key.Type(), fp, a.name)
		}
		return nil, fmt.Errorf("sshsig: key %s %s is not allowed: %s", s.key.Type(), fp, strings.Join(refused, "; "))
	}
	return principals, nil
}
