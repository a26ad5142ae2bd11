package collector

import (
	"slices"
	"strings"

	"backfill/internal/placeholder"
	"backfill/internal/secret"
)

// staticSecrets lists what must never be reported: every value that ${VAR}
// expansion put into spec (recovered by aligning spec against raw), every
// header value that has no placeholders, the values an exec env list passes,
// and credentials written literally in a header or the URL.
func staticSecrets(spec, raw Spec) []string {
	var out []string
	pair := func(exp, tmpl string) { out = append(out, envValues(tmpl, exp)...) }
	for i := range spec.Argv {
		pair(spec.Argv[i], raw.Argv[i])
	}
	// Variables the operator chose to pass may be credentials
	// (DOCKER_HOST=tcp://user:pw@…); the base ones are not, and hiding a
	// PATH or HOME would garble every reason.
	for _, kv := range spec.Environ {
		name, val, _ := strings.Cut(kv, "=")
		if slices.Contains(spec.Env, name) && !slices.Contains(baseEnv, name) {
			out = append(out, val)
		}
	}
	pair(spec.URL, raw.URL)
	pair(spec.BaseURL, raw.BaseURL)
	pair(spec.Path, raw.Path)
	pair(spec.Root, raw.Root)
	// Credentials written literally in the inventory, not as ${NAME}.
	out = append(out, secret.URLCredentials(raw.URL)...)
	out = append(out, secret.URLCredentials(raw.BaseURL)...)
	for k, v := range spec.Headers {
		pair(v, raw.Headers[k])
		if !hasPlaceholder(v) {
			out = append(out, v)
		}
		out = append(out, secret.HeaderCredentials(k, raw.Headers[k])...)
	}
	return out
}

func hasPlaceholder(s string) bool {
	for _, p := range []string{placeholder.Tenant, placeholder.WorkspaceID, placeholder.InstanceID, placeholder.Container} {
		if strings.Contains(s, "{"+p+"}") {
			return true
		}
	}
	return false
}

// envValues recovers what each ${VAR} in tmpl expanded to in exp, by
// matching the literal text between references. When the two do not line up
// (other expansion syntax, say) it falls back to everything between their
// common prefix and suffix, which over-redacts rather than leaks.
func envValues(tmpl, exp string) []string {
	if tmpl == exp {
		return nil
	}
	lits := splitEnvRefs(tmpl)
	if vals, ok := alignLits(lits, exp); ok {
		return vals
	}
	p := 0
	for p < len(tmpl) && p < len(exp) && tmpl[p] == exp[p] {
		p++
	}
	s := 0
	for s < len(tmpl)-p && s < len(exp)-p && tmpl[len(tmpl)-1-s] == exp[len(exp)-1-s] {
		s++
	}
	mid := exp[p : len(exp)-s]
	// Placeholders are filled per capture, so a span containing one would
	// never match; split there so the pieces still do.
	var out []string
	for _, piece := range strings.FieldsFunc(mid, func(r rune) bool { return r == '{' || r == '}' }) {
		if !hasPlaceholder("{" + piece + "}") {
			out = append(out, piece)
		}
	}
	return out
}

// splitEnvRefs returns the literal text around each ${NAME} in tmpl;
// references are between consecutive elements. Adjacent references share one
// empty literal, so their values are recovered as one.
func splitEnvRefs(tmpl string) []string {
	var lits []string
	last := 0
	for i := 0; i+1 < len(tmpl); i++ {
		if tmpl[i] != '$' || tmpl[i+1] != '{' {
			continue
		}
		end := strings.IndexByte(tmpl[i+2:], '}')
		if end <= 0 || !IsEnvName(tmpl[i+2:i+2+end]) {
			continue
		}
		// An empty literal right after a reference joins the two references.
		if lit := tmpl[last:i]; lit != "" || last == 0 {
			lits = append(lits, lit)
		}
		last = i + 2 + end + 1
		i = last - 1
	}
	return append(lits, tmpl[last:])
}

// IsEnvName reports whether s is an environment variable name: letters,
// digits and _, not starting with a digit.
func IsEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

func alignLits(lits []string, exp string) ([]string, bool) {
	if len(lits) < 2 || !strings.HasPrefix(exp, lits[0]) {
		return nil, false
	}
	pos := len(lits[0])
	var vals []string
	for i := 1; i < len(lits); i++ {
		lit := lits[i]
		if i == len(lits)-1 {
			if len(exp)-pos < len(lit) || !strings.HasSuffix(exp[pos:], lit) {
				return nil, false
			}
			vals = append(vals, exp[pos:len(exp)-len(lit)])
			break
		}
		j := strings.Index(exp[pos:], lit)
		if j < 0 {
			return nil, false
		}
		vals = append(vals, exp[pos:pos+j])
		pos += j + len(lit)
	}
	return vals, true
}
