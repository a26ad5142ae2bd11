package version

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	i := Info{Version: "v1.2.0", Revision: "0123456789abcdef0123", Time: "2026-12-01T04:00:00Z", Modified: true, Go: "go1.26.8"}
	if got := i.String(); got != "backfill v1.2.0 rev 0123456789ab (2026-12-01T04:00:00Z, modified) go1.26.8" {
		t.Errorf("String() = %q", got)
	}
	if got := i.Short(); got != "v1.2.0+0123456789abcdef0123-modified" {
		t.Errorf("Short() = %q", got)
	}
	if g := Get(); g.Version == "" || !strings.HasPrefix(g.String(), "backfill ") {
		t.Errorf("Get() = %+v", g)
	}
}

// The image build stamps version and revision at link time; facts the
// toolchain stamped itself win.
func TestWithStamps(t *testing.T) {
	got := withStamps(Info{Version: "(devel)", Go: "go1.26.8"}, "v1.3.0", "fedcba9876543210", "2026-12-02T10:00:00Z", "true")
	if got.String() != "backfill v1.3.0 rev fedcba987654 (2026-12-02T10:00:00Z, modified) go1.26.8" {
		t.Errorf("stamped: %q", got.String())
	}
	vcs := Info{Version: "v1.2.0", Revision: "0123", Time: "t"}
	if got := withStamps(vcs, "v9", "ffff", "u", "true"); got != vcs {
		t.Errorf("stamps replaced the toolchain's facts: %+v", got)
	}
	if got := withStamps(Info{Version: "(devel)"}, "", "", "", ""); got.Version != "(devel)" || got.Revision != "" {
		t.Errorf("no stamps: %+v", got)
	}
}
