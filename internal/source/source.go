// Package source names where a capture's bytes came from and says which of
// those are evidence of what a workspace holds. The platform's files API
// answers a read from the first of several places (the workspace's EC2
// instance, its running container, the host's copy of the last provision,
// a template folder named like the workspace), and only some of them are the
// workspace's own config: a template folder's file is exactly what a
// workspace made from that template would hold, so taking it as evidence
// would write the template a workspace merely shares a name with.
//
// The classes, and whether a capture from each counts as evidence:
//
//	source        collector   evidence  meaning
//	container     files_api   yes       the workspace's running container (live)
//	eic           files_api   yes       the workspace's EC2 instance, over EC2 Instance Connect (live)
//	host-mirror   files_api   yes       the host's copy of /configs from the last (re)provision, labelled as such
//	template-dir  files_api   no        a template folder whose name matches the workspace's name
//	none          files_api   no        nothing: no container, no mirror, no template folder
//	missing       files_api   no        the listing sent no X-Molecule-Files-Source header
//	unknown       files_api   no        the header named a source this backfill does not know
//	changed       files_api   no        the two listings around the read named different sources
//	exec          exec        yes       the operator's command (docker exec, kubectl exec, ...)
//	file          file        yes       the operator's file tree (a mount, a Docker volume)
//	unverified    http        yes       a generic HTTP answer: nothing says which source answered
//
// Captures recorded before sources were (schema version 6) have none; Of
// gives them their collector's class.
package source

// The sources.
const (
	Container   = "container"
	EIC         = "eic"
	HostMirror  = "host-mirror"
	TemplateDir = "template-dir"
	None        = "none"
	Missing     = "missing"
	Unknown     = "unknown"
	Changed     = "changed"
	Exec        = "exec"
	File        = "file"
	Unverified  = "unverified"
)

// Listed are the values of the files API's X-Molecule-Files-Source header
// this backfill knows.
var Listed = []string{EIC, Container, HostMirror, TemplateDir, None}

// Evidence reports whether a capture from source s is evidence of what the
// workspace holds (see the package table).
func Evidence(s string) bool {
	switch s {
	case Container, EIC, HostMirror, Exec, File, Unverified:
		return true
	}
	return false
}

// Live reports whether s is the running workspace itself.
func Live(s string) bool { return s == Container || s == EIC }

// Of is the class of a capture made by collector method whose recorded
// source is stored: stored when set, else what the method always gives
// (captures recorded before sources were).
func Of(method, stored string) string {
	if stored != "" {
		return stored
	}
	switch method {
	case "exec":
		return Exec
	case "file":
		return File
	case "http":
		return Unverified
	}
	return Unknown
}
