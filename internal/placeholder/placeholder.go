// Package placeholder fills the {tenant}, {workspace_id}, {instance_id} and
// {container} placeholders of a collector template. Values come from tenant databases and
// end up in argv, URLs and file paths, so every value a template uses is
// checked to be a plain name before it is substituted.
package placeholder

import (
	"fmt"
	"strings"
)

// Values holds the placeholder values for one capture.
type Values struct {
	Tenant, WorkspaceID, InstanceID string
	// Status is the workspace row's status. It fills no placeholder; a
	// collector reads it to tell a container the platform stopped (a paused
	// or hibernated workspace) from one that is gone.
	Status string
	// Name is the workspace row's name. It fills no placeholder; the files
	// API finds a container by it when the workspace's own is not running.
	Name string
	// InstanceShared: another live row of the tenant names the same
	// instance_id, so {instance_id} and {container} cannot say whose
	// container it is.
	InstanceShared bool
}

// Placeholder names, as written between braces in a template.
const (
	Tenant      = "tenant"
	WorkspaceID = "workspace_id"
	InstanceID  = "instance_id"
	// Container is the workspace's container name: instance_id when set
	// (hosted servers keep it there), else ws-<workspace_id>, the name
	// self-hosted servers give it.
	Container = "container"
)

// ref is one {identifier} occurrence in a template.
type ref struct {
	start, end int // byte offsets of '{' and one past '}'
	name       string
}

// scan returns every {identifier} in tmpl. A '{' right after '$' opens an
// environment reference (${VAR}), which the inventory expands, not us; raw
// specs still contain those and must not read as unknown placeholders.
func scan(tmpl string) []ref {
	var refs []ref
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '{' || (i > 0 && tmpl[i-1] == '$') {
			continue
		}
		j := i + 1
		for j < len(tmpl) && isIdentByte(tmpl[j], j == i+1) {
			j++
		}
		if j == i+1 || j >= len(tmpl) || tmpl[j] != '}' {
			continue // not {identifier}: literal text
		}
		refs = append(refs, ref{start: i, end: j + 1, name: tmpl[i+1 : j]})
		i = j
	}
	return refs
}

func isIdentByte(c byte, first bool) bool {
	switch {
	case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		return true
	case '0' <= c && c <= '9':
		return !first
	}
	return false
}

func known(name string) bool {
	return name == Tenant || name == WorkspaceID || name == InstanceID || name == Container
}

// Validate checks a template uses only known placeholders ({tenant},
// {workspace_id}, {instance_id}, {container}); a brace sequence that is not
// {identifier} is left literal, and so is ${VAR}, which is environment
// syntax.
func Validate(tmpl string) error {
	for _, r := range scan(tmpl) {
		if !known(r.name) {
			return fmt.Errorf("unknown placeholder {%s} (known: {%s}, {%s}, {%s}, {%s})",
				r.name, Tenant, WorkspaceID, InstanceID, Container)
		}
	}
	return nil
}

// Prefix returns the text of tmpl before its first placeholder, which every
// expansion of tmpl shares; a template without placeholders is its own
// prefix. ${VAR} is not a placeholder.
func Prefix(tmpl string) string {
	if refs := scan(tmpl); len(refs) > 0 {
		return tmpl[:refs[0].start]
	}
	return tmpl
}

// Expand substitutes the placeholders the template uses, refusing (error
// naming the placeholder and why) a used value that is empty, not
// [A-Za-z0-9._-]+, "." or "..", starts with "-", or a {workspace_id} that is
// not a UUID. Unused placeholders are not checked.
func Expand(tmpl string, v Values) (string, error) {
	refs := scan(tmpl)
	if len(refs) == 0 {
		return tmpl, nil
	}
	var b strings.Builder
	b.Grow(len(tmpl) + 32)
	last := 0
	for _, r := range refs {
		val, err := value(r.name, v)
		if err != nil {
			return "", err
		}
		b.WriteString(tmpl[last:r.start])
		b.WriteString(val)
		last = r.end
	}
	b.WriteString(tmpl[last:])
	return b.String(), nil
}

// value returns the checked value for a placeholder name.
func value(name string, v Values) (string, error) {
	var val string
	switch name {
	case Tenant:
		val = v.Tenant
	case WorkspaceID:
		val = v.WorkspaceID
	case InstanceID:
		val = v.InstanceID
	case Container:
		if v.InstanceID != "" {
			val = v.InstanceID
			break
		}
		// Derived from the id, which must itself be sound first.
		if why := check(WorkspaceID, v.WorkspaceID); why != "" {
			return "", fmt.Errorf("invalid %s %q (no instance_id, so the container is ws-<workspace_id>): %s", WorkspaceID, v.WorkspaceID, why)
		}
		val = "ws-" + v.WorkspaceID
	default:
		return "", fmt.Errorf("unknown placeholder {%s}", name)
	}
	if why := check(name, val); why != "" {
		return "", fmt.Errorf("invalid %s %q: %s", name, val, why)
	}
	if (name == InstanceID || name == Container) && v.InstanceID != "" {
		if why := OthersContainer(v.InstanceID, v.WorkspaceID); why != "" {
			return "", fmt.Errorf("invalid %s %q: %s", InstanceID, v.InstanceID, why)
		}
		if v.InstanceShared {
			return "", fmt.Errorf("invalid %s %q: another live workspace of the tenant names it too, so nothing says whose container it is", InstanceID, v.InstanceID)
		}
	}
	return val, nil
}

// OthersContainer says why name (an instance_id, or a container name the
// platform derives from a workspace's name) is another workspace's
// container name, or "". The platform names a workspace's container
// ws-<id> (once ws-<first 12 characters of the id>) and its desktop sidecar
// wsdesk-<id>; a name of that form with another id would read that
// workspace's config as this one's, and so may a name of hex digits alone,
// which Docker takes for a prefix of a container's id.
func OthersContainer(name, workspaceID string) string {
	lower := strings.ToLower(name)
	if isHex(lower) {
		// Docker resolves a name it does not know as a prefix of a
		// container's id (the hostname an agent sees is its first 12).
		return "may name another workspace's container by its id (Docker reads a name of hex digits as a prefix of a container id)"
	}
	rest, ok := strings.CutPrefix(lower, "wsdesk-")
	if !ok {
		if rest, ok = strings.CutPrefix(lower, "ws-"); !ok {
			return ""
		}
	}
	id := strings.ToLower(workspaceID)
	switch {
	case IsUUID(rest) && rest != id:
	case len(rest) == 12 && IsUUID(rest+id[min(12, len(id)):]) && !strings.HasPrefix(id, rest):
		// The legacy ws-<first 12 characters> of another id.
	default:
		return ""
	}
	return "names the container of another workspace (ws-" + rest + "), not this one's (ws-" + workspaceID + ")"
}

// isHex reports whether s is non-empty and all lower-case hex digits.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !('0' <= s[i] && s[i] <= '9' || 'a' <= s[i] && s[i] <= 'f') {
			return false
		}
	}
	return s != ""
}

// check returns why val is unsafe for placeholder name, or "".
func check(name, val string) string {
	switch {
	case val == "":
		return "empty"
	case val == "." || val == "..":
		return "a path step, not a name"
	case !plain(val):
		return "not a plain name (allowed: A-Z a-z 0-9 . _ -)"
	case val[0] == '-':
		// A leading dash would be read as an option by the exec'd command.
		return "starts with \"-\""
	case name == WorkspaceID && !IsUUID(val):
		return "not a UUID"
	}
	return ""
}

func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// IsUUID reports whether s is a UUID in the canonical 8-4-4-4-12 hex form
// (either case), the only form workspace ids take.
func IsUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}
