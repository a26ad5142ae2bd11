package preflight

import (
	"testing"

	"backfill/internal/inventory"
)

// TestAnExecCollectorThatFollowsLinksIsNoted: cat (the README's exec
// collector once) follows a config.yaml made a symbolic link; dd with
// iflag=nofollow does not, nor does any other collector kind.
func TestAnExecCollectorThatFollowsLinksIsNoted(t *testing.T) {
	inv, err := inventory.Parse("inventory.yaml", []byte(`version: 1
tenants:
  - name: cat
    dsn: "postgres://u@h/db"
    collector:
      exec: ["docker", "exec", "{container}", "/bin/cat", "/configs/config.yaml"]
  - name: chain
    dsn: "postgres://u@h/db"
    collectors:
      - file: "/v/ws-{workspace_id}-configs/_data/config.yaml"
      - exec: ["docker", "exec", "{container}", "cat", "/configs/config.yaml"]
  - name: dd
    dsn: "postgres://u@h/db"
    collectors:
      - exec: ["docker", "exec", "{container}", "dd", "if=/configs/config.yaml", "iflag=nofollow", "status=none"]
      - file: "/v/ws-{workspace_id}-configs/_data/config.yaml"
`), func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	for _, tn := range inv.Tenants {
		if got, want := followsLinks(tn), tn.Name != "dd"; got != want {
			t.Errorf("%s: followsLinks = %v, want %v", tn.Name, got, want)
		}
	}
}
