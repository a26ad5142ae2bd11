package inputfile

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Found by review: a plan or inventory path naming a FIFO blocked apply in
// open() past SIGTERM, and /dev/zero ran it out of memory. A FIFO nobody
// writes to reads as empty, a device or a directory is refused, a pipe with
// a writer (the shell's <(...)) is read whole, and every read is capped.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "plan.json")
	if err := os.WriteFile(file, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(file, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("regular file: %q %v", b, err)
	}
	if _, err := Read(file, 9); err == nil || !strings.Contains(err.Error(), file+" is over 9 bytes") {
		t.Errorf("over the cap: %v", err)
	}

	fifo := filepath.Join(dir, "plan.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(fifo, 10); err != nil || len(b) != 0 {
		t.Errorf("FIFO without a writer: %q %v", b, err)
	}

	for path, want := range map[string]string{"/dev/zero": "is a character device, not a file", dir: "is a directory, not a file"} {
		if _, err := Read(path, 1<<20); err == nil || !strings.Contains(err.Error(), path+" "+want) {
			t.Errorf("%s: %v, want %q", path, err, want)
		}
	}

	// A pipe with a writer, as bash's <(...) hands one: /dev/fd/N.
	cmd := exec.Command("/bin/sh", "-c", `printf 'a%.0s' $(seq 1 70000) > "$1"`, "sh", fifo)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The writer's open blocks until a reader opens: read until it has.
	var got []byte
	for len(got) == 0 {
		b, err := Read(fifo, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, b...)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if len(got) != 70000 {
		t.Errorf("pipe with a writer: %d bytes, want 70000", len(got))
	}
}
