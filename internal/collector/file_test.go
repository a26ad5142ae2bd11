package collector

import (
	"os"
	"path/filepath"
	"strconv"
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
		{"parent is a file (ENOTDIR) gone", root + "/plainfile/config.yaml", testValues, Gone, false, "no such file"},
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
