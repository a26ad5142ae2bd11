package inventory

import (
	"strings"

	"backfill/internal/collector"
)

// expand replaces each ${NAME} in raw with the environment variable's value.
// Only the braced form expands: a bare $ is common in passwords and shell
// snippets and must stay literal. There is no escape for a literal "${".
// Errors name the variable, never its value.
func (p *parser) expand(raw string, line int, tenant, what string) (string, bool) {
	if !strings.Contains(raw, "${") {
		return raw, true
	}
	var b strings.Builder
	ok := true
	rest := raw
	for {
		i := strings.Index(rest, "${")
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		rest = rest[i+2:]
		end := strings.IndexByte(rest, '}')
		if end < 0 {
			p.errorf(line, tenant, `unterminated "${" in %s`, what)
			return "", false
		}
		name := rest[:end]
		rest = rest[end+1:]
		switch {
		case name == "":
			p.errorf(line, tenant, "empty ${} in %s", what)
			ok = false
		case !collector.IsEnvName(name):
			p.errorf(line, tenant, "invalid variable name %q in %s; use ${NAME} with letters, digits and _", truncate(name, 40), what)
			ok = false
		default:
			v, set := p.getenv(name)
			if !set {
				p.errorf(line, tenant, "${%s} is not set (in %s)", name, what)
				ok = false
				continue
			}
			p.useEnv(v)
			b.WriteString(v)
		}
	}
	if !ok {
		return "", false
	}
	return b.String(), true
}

// useEnv remembers an expanded value as a secret.
func (p *parser) useEnv(v string) {
	if v == "" {
		return
	}
	for _, x := range p.envValues {
		if x == v {
			return
		}
	}
	p.envValues = append(p.envValues, v)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
