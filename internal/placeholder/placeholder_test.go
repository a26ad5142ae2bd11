package placeholder

import (
	"strings"
	"testing"
)

const wsID = "0b7c6f1e-3a2d-4c5b-9e8f-1a2b3c4d5e6f"

func TestValidate(t *testing.T) {
	tests := []struct {
		tmpl    string
		wantErr string
	}{
		{"", ""},
		{"no placeholders", ""},
		{"{tenant}/{workspace_id}/{instance_id}", ""},
		{"{tenant}{tenant}", ""},
		{"literal {} braces", ""},
		{"{ tenant }", ""},
		{"{1abc}", ""},
		{"{tenant", ""},
		{"tenant}", ""},
		{"json {\"a\": 1}", ""},
		{"Bearer ${TOKEN}", ""},
		{"${HOST}/ws/{workspace_id}", ""},
		{"{{tenant}}", ""},
		{"{tennant}", "unknown placeholder {tennant}"},
		{"{Tenant}", "unknown placeholder {Tenant}"},
		{"/x/{workspace_id}/{pod}", "unknown placeholder {pod}"},
	}
	for _, tt := range tests {
		err := Validate(tt.tmpl)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("Validate(%q) = %v, want nil", tt.tmpl, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Validate(%q) = %v, want error containing %q", tt.tmpl, err, tt.wantErr)
		}
	}
}

func TestExpand(t *testing.T) {
	good := Values{Tenant: "acme", WorkspaceID: wsID, InstanceID: "ws-abc.1_x"}
	tests := []struct {
		name    string
		tmpl    string
		v       Values
		want    string
		wantErr string
	}{
		{"no placeholders", "/configs/config.yaml", Values{}, "/configs/config.yaml", ""},
		{"all", "{tenant}/{workspace_id}/{instance_id}", good, "acme/" + wsID + "/ws-abc.1_x", ""},
		{"repeated", "{tenant}-{tenant}", good, "acme-acme", ""},
		{"literal braces kept", "{} {x {tenant}", good, "{} {x acme", ""},
		{"env syntax kept", "Bearer ${TOKEN} {tenant}", good, "Bearer ${TOKEN} acme", ""},
		{"upper-case uuid", "{workspace_id}", Values{WorkspaceID: strings.ToUpper(wsID)}, strings.ToUpper(wsID), ""},
		{"unused values not checked", "docker exec {instance_id} cat", Values{Tenant: "bad tenant", InstanceID: "ws-1"}, "docker exec ws-1 cat", ""},
		{"unknown placeholder", "{pod}", good, "", "unknown placeholder {pod}"},
		{"empty tenant", "{tenant}", Values{}, "", `invalid tenant "": empty`},
		{"empty instance", "x {instance_id}", Values{Tenant: "a"}, "", `invalid instance_id "": empty`},
		{"shell metachars", "{instance_id}", Values{InstanceID: "x; touch /tmp/pwned"}, "", `invalid instance_id "x; touch /tmp/pwned": not a plain name`},
		{"path traversal", "/mnt/{instance_id}/c", Values{InstanceID: "../../etc/passwd"}, "", `invalid instance_id "../../etc/passwd": not a plain name`},
		{"dot", "/mnt/{tenant}/c", Values{Tenant: "."}, "", `invalid tenant ".": a path step`},
		{"dotdot", "/mnt/{tenant}/c", Values{Tenant: ".."}, "", `invalid tenant "..": a path step`},
		{"dots inside a name are fine", "{tenant}", Values{Tenant: "a..b"}, "a..b", ""},
		{"leading dash", "{instance_id}", Values{InstanceID: "--privileged"}, "", `invalid instance_id "--privileged": starts with "-"`},
		{"slash", "{tenant}", Values{Tenant: "a/b"}, "", "not a plain name"},
		{"newline", "{tenant}", Values{Tenant: "a\nb"}, "", "not a plain name"},
		{"unicode", "{tenant}", Values{Tenant: "ａcme"}, "", "not a plain name"},
		{"workspace not uuid", "{workspace_id}", Values{WorkspaceID: "ws-abc"}, "", `invalid workspace_id "ws-abc": not a UUID`},
		{"workspace uuid no dashes", "{workspace_id}", Values{WorkspaceID: strings.ReplaceAll(wsID, "-", "")}, "", "not a UUID"},
		{"workspace uuid bad hex", "{workspace_id}", Values{WorkspaceID: "0b7c6f1e-3a2d-4c5b-9e8f-1a2b3c4d5e6g"}, "", "not a UUID"},
		{"workspace traversal", "{workspace_id}", Values{WorkspaceID: ".."}, "", `invalid workspace_id ".."`},
		{"first bad value wins, nothing partial", "{tenant}/{instance_id}", Values{Tenant: "ok", InstanceID: "$(id)"}, "", `invalid instance_id "$(id)"`},
		{"container is instance_id when set", "docker exec {container} cat", good, "docker exec ws-abc.1_x cat", ""},
		{"container is ws-<id> without instance_id", "docker exec {container} cat", Values{WorkspaceID: wsID}, "docker exec ws-" + wsID + " cat", ""},
		{"container volume path", "/var/lib/docker/volumes/{container}-configs/_data/config.yaml", Values{WorkspaceID: wsID},
			"/var/lib/docker/volumes/ws-" + wsID + "-configs/_data/config.yaml", ""},
		{"container checks instance_id", "{container}", Values{WorkspaceID: wsID, InstanceID: "--rm"}, "", `invalid container "--rm": starts with "-"`},
		{"container from a bad id", "{container}", Values{WorkspaceID: "../x"}, "", `invalid workspace_id "../x" (no instance_id`},
		{"container from no id", "{container}", Values{}, "", `invalid workspace_id "" (no instance_id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Expand(tt.tmpl, tt.v)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Expand(%q) = %q, %v; want error containing %q", tt.tmpl, got, err, tt.wantErr)
				}
				if got != "" {
					t.Fatalf("Expand(%q) returned %q alongside an error", tt.tmpl, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Expand(%q) = %q, %v; want %q", tt.tmpl, got, err, tt.want)
			}
		})
	}
}

func TestIsUUID(t *testing.T) {
	for s, want := range map[string]bool{
		wsID:                                    true,
		"00000000-0000-0000-0000-000000000000":  true,
		"":                                      false,
		"0b7c6f1e3a2d4c5b9e8f1a2b3c4d5e6f":      false,
		"0b7c6f1e-3a2d-4c5b-9e8f-1a2b3c4d5e6f0": false,
		"{0b7c6f1e-3a2d-4c5b-9e8f-1a2b3c4d5e6}": false,
		"0b7c6f1e_3a2d-4c5b-9e8f-1a2b3c4d5e6f":  false,
	} {
		if got := IsUUID(s); got != want {
			t.Errorf("IsUUID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestPrefix(t *testing.T) {
	for tmpl, want := range map[string]string{
		"/mnt/c/{workspace_id}/config.yaml": "/mnt/c/",
		"/mnt/ws-{workspace_id}/c.yaml":     "/mnt/ws-",
		"/a/b/c.yaml":                       "/a/b/c.yaml",
		"/a/${DIR}/{tenant}/x":              "/a/${DIR}/",
		"/a/{not_a_name/{instance_id}":      "/a/{not_a_name/",
		"{tenant}":                          "",
	} {
		if got := Prefix(tmpl); got != want {
			t.Errorf("Prefix(%q) = %q, want %q", tmpl, got, want)
		}
	}
}

// Found by review: an instance_id set to another workspace's container name
// made {container} (and {instance_id}) read that workspace's config as this
// one's. One naming another workspace id, in the platform's forms
// (ws-<id>, the legacy ws-<12 characters>, wsdesk-<id>), fails the capture;
// this workspace's own and the platform's instance forms pass.
func TestAnInstanceIDNamingAnotherWorkspacesContainer(t *testing.T) {
	const other = "9f1e2d3c-4b5a-4678-9abc-def012345678"
	for _, tt := range []struct {
		instance string
		refused  bool
	}{
		{"ws-" + other, true},
		{"WS-" + strings.ToUpper(other), true},
		{"ws-" + other[:12], true},
		{"wsdesk-" + other, true},
		{"ws-" + wsID, false},
		{"ws-" + wsID[:12], false},
		{"wsdesk-" + wsID, false},
		{"mol-ws-test5-a9f3044fa3f2", false},
		{"i-0abc123def4567890", false},
		{"ws-abc.1_x", false},
		{"3f9a1c2b7d4e", true}, // Docker reads hex digits as a container id prefix
		{"0abc", true},
	} {
		for _, tmpl := range []string{"docker exec {container} cat", "/srv/{instance_id}/configs/config.yaml"} {
			_, err := Expand(tmpl, Values{Tenant: "acme", WorkspaceID: wsID, InstanceID: tt.instance})
			if got := err != nil && strings.Contains(err.Error(), "another workspace"); got != tt.refused {
				t.Errorf("Expand(%q) with instance_id %q: %v, want refused %v", tmpl, tt.instance, err, tt.refused)
			}
		}
	}
}
