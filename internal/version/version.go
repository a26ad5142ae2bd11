// Package version says which build of backfill is running, from the
// module and VCS facts the Go toolchain stamps into every binary.
package version

import (
	"fmt"
	"runtime/debug"
)

// Info is what a build knows of itself.
type Info struct {
	Module   string `json:"module"`
	Version  string `json:"version"`  // module version; "(devel)" for a build from a work tree
	Revision string `json:"revision"` // VCS revision, "" when not stamped
	Time     string `json:"time"`     // VCS commit time, "" when not stamped
	Modified bool   `json:"modified"` // the work tree had changes
	Go       string `json:"go"`
}

// Link-time stamps, for builds where the toolchain cannot read the VCS
// itself: the container image is built from a context without .git, so
// the Dockerfile passes these with -ldflags "-X backfill/internal/version.stampRevision=…".
// What the toolchain stamped wins over them.
var (
	stampVersion  string
	stampRevision string
	stampTime     string
	stampModified string // "true" when the work tree had changes
)

// Get reads the running binary's build information.
func Get() Info {
	return withStamps(fromBuildInfo(), stampVersion, stampRevision, stampTime, stampModified)
}

// withStamps fills in what the toolchain could not stamp.
func withStamps(i Info, version, revision, vcsTime, modified string) Info {
	if version != "" && (i.Version == "(devel)" || i.Version == "unknown") {
		i.Version = version
	}
	if revision != "" && i.Revision == "" {
		i.Revision, i.Time, i.Modified = revision, vcsTime, modified == "true"
	}
	return i
}

func fromBuildInfo() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown"}
	}
	i := Info{Module: bi.Main.Path, Version: bi.Main.Version, Go: bi.GoVersion}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.time":
			i.Time = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	if i.Version == "" {
		i.Version = "(devel)"
	}
	return i
}

// String is one line: "backfill (devel) rev 1a2b3c4d5e6f (2026-12-01T04:00:00Z, modified) go1.26.8".
func (i Info) String() string {
	s := "backfill " + i.Version
	if i.Revision != "" {
		rev := i.Revision
		if len(rev) > 12 {
			rev = rev[:12]
		}
		s += " rev " + rev
		if i.Time != "" || i.Modified {
			extra := i.Time
			if i.Modified {
				if extra != "" {
					extra += ", "
				}
				extra += "modified"
			}
			s += fmt.Sprintf(" (%s)", extra)
		}
	}
	if i.Go != "" {
		s += " " + i.Go
	}
	return s
}

// Short names the build in a plan: version and revision, no Go version, so
// the same source built with another toolchain writes the same plan.
func (i Info) Short() string {
	s := i.Version
	if i.Revision != "" {
		s += "+" + i.Revision
		if i.Modified {
			s += "-modified"
		}
	}
	return s
}
