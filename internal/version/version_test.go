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
