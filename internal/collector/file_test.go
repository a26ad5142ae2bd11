package collector

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"backfill/internal/placeholder"
)

func TestFile(t *testing.T) {
	root := t.TempDir()
	wsDir := filepath.Join(root, testWS, "configs")
	if err := os.MkdirAll(wsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(wsDir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("name: ws\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2025, 11, 26, 10, 0, 0, 123456789, time.UTC)
	if err := os.Chtimes(cfg, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "plainfile"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := bigFile(t, 5<<20)
	fifo := filepath.Join(root, "fifo")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		path      string
		v         placeholder.Values
		outcome   Outcome
		transient bool
		reasonHas string
	}{
		{"captured", root + "/{workspace_id}/configs/config.yaml", testValues, Captured, false, ""},
		{"unclean path", root + "//{workspace_id}/./configs/config.yaml", testValues, Captured, false, ""},
		{"missing file gone", root + "/{workspace_id}/configs/missing.yaml", testValues, Gone, false, "no such file"},
		{"missing workspace gone", root + "/{workspace_id}/configs/config.yaml",
			placeholder.Values{WorkspaceID: "11111111-2222-3333-4444-555555555555"}, Gone, false, "no such file"},
		{"parent is a file (ENOTDIR) gone", root + "/{instance_id}/config.yaml", placeholder.Values{InstanceID: "plainfile"}, Gone, false, "no such file"},
		{"missing root is a misconfiguration, not gone", root + "/no-such-mount/{workspace_id}/config.yaml", testValues, Failed, false, "root directory: no such file or directory"},
		{"root is a file", root + "/plainfile/config.yaml", testValues, Failed, false, "root directory: not a directory"},
		{"directory failed", root + "/{workspace_id}/configs", testValues, Failed, false, "is a directory"},
		{"fifo failed without blocking", fifo, testValues, Failed, false, "not a regular file"},
		{"5 MiB too large", big, testValues, Failed, false, "too large: more than 1048576 bytes"},
		{"dotdot value refused", root + "/{instance_id}/configs/config.yaml", placeholder.Values{InstanceID: ".."}, Failed, false, `invalid instance_id ".."`},
		{"traversal value refused", root + "/{instance_id}", placeholder.Values{InstanceID: "../../etc/passwd"}, Failed, false, `invalid instance_id "../../etc/passwd"`},
		{"non-uuid workspace refused", root + "/{workspace_id}/configs/config.yaml", placeholder.Values{WorkspaceID: "configs"}, Failed, false, "not a UUID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := same(t, Spec{Method: "file", Path: tt.path}).Collect(timeoutCtx(t, 10*time.Second), tt.v)
			check(t, r, tt.outcome, tt.transient, tt.reasonHas)
			if tt.outcome != Captured {
				return
			}
			if string(r.Content) != "name: ws\n" {
				t.Fatalf("content = %q", r.Content)
			}
			if r.Target != "file: "+cfg {
				t.Fatalf("target = %q, want %q", r.Target, "file: "+cfg)
			}
			if got := keys(r.Provenance); got != "mtime,size" {
				t.Fatalf("provenance keys = %s", got)
			}
			if r.Provenance["mtime"] != "2025-11-26T10:00:00.123456789Z" || r.Provenance["size"] != "9" {
				t.Fatalf("provenance = %v", r.Provenance)
			}
		})
	}
}

func TestFileTooLargeKeepsProvenance(t *testing.T) {
	big := bigFile(t, 5<<20)
	r := same(t, Spec{Method: "file", Path: big}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, false, "too large")
	if r.Provenance["size"] != strconv.Itoa(5<<20) || r.Provenance["mtime"] == "" {
		t.Fatalf("provenance = %v", r.Provenance)
	}
}

func TestFileCapFromNew(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte("0123456789"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := Spec{Method: "file", Path: p}
	for _, tt := range []struct {
		max     int64
		outcome Outcome
	}{{10, Captured}, {9, Failed}} {
		r := mustNew(t, spec, spec, tt.max, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		if r.Outcome != tt.outcome {
			t.Errorf("cap %d: outcome %s (%s), want %s", tt.max, r.Outcome, r.Reason, tt.outcome)
		}
	}
}

func TestFilePermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads mode-000 files")
	}
	p := filepath.Join(t.TempDir(), "secret.yaml")
	if err := os.WriteFile(p, []byte("x"), 0o000); err != nil {
		t.Fatal(err)
	}
	r := same(t, Spec{Method: "file", Path: p}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, false, "permission denied")
}

// TestFileStaysBeneathRoot plants what a hostile workspace could: links from
// its config.yaml, or from its directory, to the process environment and to
// a file outside the tree. Nothing of their targets may be read.
func TestFileStaysBeneathRoot(t *testing.T) {
	const marker = "file-escape-marker-5d1c"
	root := t.TempDir()
	outside := t.TempDir()
	secretFile := filepath.Join(outside, "shadow")
	if err := os.WriteFile(secretFile, []byte("token: "+marker+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "config.yaml"), []byte("name: "+marker+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ws := func(id, what string) string {
		d := filepath.Join(root, id)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return filepath.Join(d, what)
	}
	link := func(target, at string) {
		if err := os.Symlink(target, at); err != nil {
			t.Fatal(err)
		}
	}
	const (
		ok      = "00000000-0000-4000-8000-000000000001"
		environ = "00000000-0000-4000-8000-000000000002"
		private = "00000000-0000-4000-8000-000000000003"
		inside  = "00000000-0000-4000-8000-000000000004"
		dirOut  = "00000000-0000-4000-8000-000000000005"
		dirIn   = "00000000-0000-4000-8000-000000000006"
		fifo    = "00000000-0000-4000-8000-000000000007"
		deep    = "00000000-0000-4000-8000-000000000008"
	)
	if err := os.WriteFile(ws(ok, "config.yaml"), []byte("name: ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link("/proc/self/environ", ws(environ, "config.yaml"))
	link(secretFile, ws(private, "config.yaml"))
	link(filepath.Join(root, ok, "config.yaml"), ws(inside, "config.yaml"))
	link(outside, filepath.Join(root, dirOut))
	link(filepath.Join(root, ok), filepath.Join(root, dirIn))
	if err := syscall.Mkfifo(ws(fifo, "config.yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A link in a middle step, below the workspace's directory.
	if err := os.MkdirAll(ws(deep, ""), 0o755); err != nil {
		t.Fatal(err)
	}
	link(outside, filepath.Join(root, deep, "configs"))

	c := same(t, Spec{Method: "file", Path: root + "/{workspace_id}/config.yaml"})
	cDeep := same(t, Spec{Method: "file", Path: root + "/{workspace_id}/configs/config.yaml"})
	for _, tt := range []struct {
		name      string
		c         *Collector
		id        string
		outcome   Outcome
		reasonHas string
	}{
		{"regular file", c, ok, Captured, ""},
		{"link to /proc/self/environ", c, environ, Failed, "refused: " + environ + "/config.yaml is a symbolic link"},
		{"link to a private file outside", c, private, Failed, "is a symbolic link"},
		{"link to a file inside the root", c, inside, Failed, "is a symbolic link"},
		{"directory link leaving the root", c, dirOut, Failed, "refused: " + dirOut + " is a symbolic link"},
		{"directory link inside the root", c, dirIn, Failed, "refused: " + dirIn + " is a symbolic link"},
		{"named pipe", c, fifo, Failed, "not a regular file (named pipe)"},
		{"link in a middle step", cDeep, deep, Failed, "refused: " + deep + "/configs is a symbolic link"},
		{"missing stays gone", c, "00000000-0000-4000-8000-000000000099", Gone, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.c.Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{WorkspaceID: tt.id})
			check(t, r, tt.outcome, false, tt.reasonHas)
			all := string(r.Content) + r.Reason + r.Target + fmt.Sprint(r.Provenance)
			if strings.Contains(all, marker) || strings.Contains(all, "PATH=") {
				t.Fatalf("read through the link: %+v", r)
			}
		})
	}
}

// TestFileExplicitRoot: a root above the placeholder's directory confines
// the steps between them too, and a link in them is refused.
func TestFileExplicitRoot(t *testing.T) {
	top := t.TempDir()
	real := filepath.Join(top, "real")
	if err := os.MkdirAll(filepath.Join(real, testWS), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(real, testWS, "config.yaml"), []byte("name: ws\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(top, "current")); err != nil {
		t.Fatal(err)
	}
	path := top + "/current/{workspace_id}/config.yaml"
	// Derived root top/current: the operator's own link is the root and is
	// followed.
	r := same(t, Spec{Method: "file", Path: path}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Captured, false, "")
	// Root top: "current" is a step below the root, so its link is refused.
	r = same(t, Spec{Method: "file", Path: path, Root: top}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, false, "refused: current is a symbolic link")
	r = same(t, Spec{Method: "file", Path: top + "/real/{workspace_id}/config.yaml", Root: top}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Captured, false, "")
}

func TestFileRoot(t *testing.T) {
	for _, tt := range []struct {
		path, root, want, err string
	}{
		{"/mnt/c/{workspace_id}/configs/config.yaml", "", "/mnt/c", ""},
		{"/mnt/ws-{workspace_id}/config.yaml", "", "/mnt", ""},
		{"/mnt/c/config.yaml", "", "/mnt/c", ""},
		{"/mnt/./c//{tenant}/x", "", "/mnt/c", ""},
		{"/{tenant}/config.yaml", "", "/", ""},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt", "/mnt", ""},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt/c/", "/mnt/c", ""},
		{"/mnt/c/{workspace_id}/config.yaml", "/", "/", ""},
		{"/procfs/{workspace_id}/config.yaml", "", "/procfs", ""},
		{"mnt/c/{workspace_id}/config.yaml", "", "", "path must be absolute"},
		{"/mnt/c/{workspace_id}/config.yaml", "mnt", "", "root must be absolute"},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt/c/{tenant}", "", "must not contain placeholders"},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt/d", "", "not beneath its root"},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt/c/x", "", "not beneath its root"},
		{"/mnt/c/{workspace_id}/config.yaml", "/mnt/../proc", "", `".."`},
		{"/proc/{workspace_id}/environ", "", "", "under /proc, /sys or /dev"},
		{"/proc/self/environ", "", "", "under /proc, /sys or /dev"},
		{"/sys/{tenant}", "", "", "under /proc, /sys or /dev"},
		{"/dev/shm/{workspace_id}/config.yaml", "", "", "under /proc, /sys or /dev"},
		{"/dev/{tenant}", "/", "", "under /proc, /sys or /dev"},
	} {
		got, err := fileRoot(tt.path, tt.root)
		if tt.err == "" && (err != nil || got != tt.want) {
			t.Errorf("fileRoot(%q, %q) = %q, %v; want %q", tt.path, tt.root, got, err, tt.want)
		}
		if tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
			t.Errorf("fileRoot(%q, %q) = %q, %v; want error %q", tt.path, tt.root, got, err, tt.err)
		}
	}
	if _, err := New(Spec{Method: "file", Path: "/proc/self/environ"}, Spec{Method: "file", Path: "/proc/self/environ"}, 0, nil); err == nil {
		t.Fatal("New accepted a file collector reading /proc")
	}
}

// TestFilePseudoPathRefusedAtCapture: a root of / passes the inventory, but a
// placeholder value must not steer the read into /proc.
func TestFilePseudoPathRefusedAtCapture(t *testing.T) {
	c := same(t, Spec{Method: "file", Path: "/{tenant}/self/environ"})
	r := c.Collect(timeoutCtx(t, 10*time.Second), placeholder.Values{Tenant: "proc"})
	check(t, r, Failed, false, "refused: path is under /proc, /sys or /dev")
}

// TestKernelFS covers the check that catches /proc bind-mounted beneath a
// root, which path strings cannot see.
func TestKernelFS(t *testing.T) {
	for path, want := range map[string]bool{"/proc/self/status": true, bigFile(t, 10): false} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := kernelFS(int(f.Fd())); got != want {
			t.Errorf("kernelFS(%s) = %v, want %v", path, got, want)
		}
		f.Close()
	}
}
