package collector

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"backfill/internal/filesapi"
	"backfill/internal/placeholder"
)

// linkSecret is a NUL-free secret root can read in the container.
const linkSecret = "api_key: sk-live-planted-0123456789abcdef\n"

// linkLongSecret is longer than any link text here, so a plain read
// through a link is longer than listed and its bytes dropped.
var linkLongSecret = linkSecret + strings.Repeat("# padding line of a secrets file\n", 40)

func collectFrom(t *testing.T, p *filesapi.Platform, id string) Result {
	t.Helper()
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)
	return filesAPI(t, srv.URL, goodHeaders()).Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "acme", WorkspaceID: id})
}

// The agent owns /configs: it makes config.yaml a link to a secret and,
// while the collector reads, swaps it for a link of another length (or
// removes it). The listings then disagree on config.yaml's size (or the
// second has none), judge returns not-live with sized=true, and the
// secret bytes read through the link are kept for the record.
// TestFilesAPIKeepsNoBytesOfALinkSwappedAroundTheRead: the agent makes
// config.yaml a link to a secret and, while the platform reads it, links
// it again with text of another length, or removes it. The read is
// not-live (the listings disagree, or the second has no config.yaml), and
// its bytes, not known to be any file listed, are not kept.
func TestFilesAPIKeepsNoBytesOfALinkSwappedAroundTheRead(t *testing.T) {
	for _, swap := range []string{"relink", "remove"} {
		t.Run(swap, func(t *testing.T) {
			dir := t.TempDir()
			secret := filepath.Join(dir, "run", "secrets", "token")
			if err := os.MkdirAll(filepath.Dir(secret), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(secret, []byte(linkLongSecret), 0o600); err != nil {
				t.Fatal(err)
			}
			configs := filepath.Join(dir, "configs")
			if err := os.Mkdir(configs, 0o755); err != nil {
				t.Fatal(err)
			}
			cfg := filepath.Join(configs, "config.yaml")
			if err := os.Symlink(secret, cfg); err != nil {
				t.Fatal(err)
			}
			id := wsID(7)
			// Without the swap: longer than listed, dropped.
			if res := collectFrom(t, &filesapi.Platform{Host: platformHost{containers: map[string]string{"ws-" + id: configs}}, Token: apiToken}, id); res.Content != nil {
				t.Fatalf("control: %s, %d bytes kept", res.Outcome, len(res.Content))
			}
			p := &filesapi.Platform{Host: platformHost{containers: map[string]string{"ws-" + id: configs}}, Token: apiToken,
				AfterRead: func(context.Context, string) error {
					// The agent's race, as it would win it in its container.
					os.Remove(cfg)
					if swap == "relink" {
						return os.Symlink(dir+"/run/secrets/./token", cfg)
					}
					return nil
				}}
			res := collectFrom(t, p, id)
			if strings.Contains(string(res.Content), "sk-live-planted") {
				t.Fatalf("secret kept: %s from %s, %d bytes kept: %s", res.Outcome, res.Source, len(res.Content), res.Reason)
			}
		})
	}
}

// The platform's host-side listing leaves links out (320136e), so a host
// mirror's config.yaml made a link is absent from both listings, judge
// says "listing has no config.yaml" with sized=true, and the bytes the
// platform read through the link are kept.
// TestFilesAPIKeepsNoBytesOfAHostMirrorLink: the platform's host-side
// listing leaves a linked config.yaml out while its read follows the
// link; the read is not-live and its bytes are not kept.
func TestFilesAPIKeepsNoBytesOfAHostMirrorLink(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	if err := os.WriteFile(secret, []byte(linkLongSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	id := wsID(8)
	mirror := filepath.Join(dir, "state", id, "configs")
	if err := os.MkdirAll(mirror, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(mirror, "config.yaml")); err != nil {
		t.Fatal(err)
	}
	res := collectFrom(t, &filesapi.Platform{Host: platformHost{}, StateDir: filepath.Join(dir, "state"), Token: apiToken}, id)
	if strings.Contains(string(res.Content), "sk-live-planted") {
		t.Fatalf("secret kept: %s from %s, %d bytes kept: %s", res.Outcome, res.Source, len(res.Content), res.Reason)
	}
}

// Documented in README (8352995), shown for the record: a link whose text
// is padded to within 256 bytes of its target's size is captured as
// evidence, secret and all.
