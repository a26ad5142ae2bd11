package cli

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Found by review: `--plan` or `--inventory` naming a FIFO hung apply in
// open() (one SIGTERM did not end it) and /dev/zero ran it out of memory.
// Each is refused at once, naming the file, and nothing is written.
func TestInputFilesThatAreNotFiles(t *testing.T) {
	f := newPlanFixture(t)
	f.planAndApprove(t)
	fifo := filepath.Join(f.dir, "plan.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"apply", "--inventory", "inventory.yaml", "--plan", fifo, "--execute"}, "plan " + fifo},
		{[]string{"apply", "--inventory", "inventory.yaml", "--plan", "/dev/zero", "--execute"}, "/dev/zero is a character device, not a file"},
		{[]string{"apply", "--inventory", fifo, "--plan", "plan.json", "--execute"}, "inventory is empty"},
		{[]string{"apply", "--inventory", "/dev/zero", "--plan", "plan.json", "--execute"}, "/dev/zero is a character device"},
		{[]string{"apply", "--inventory", "inventory.yaml", "--plan", "plan.json", "--execute", "--allowed-signers", "/dev/zero"}, "/dev/zero is a character device"},
		{[]string{"plan", "--inventory", "inventory.yaml", "--cp", "/dev/zero", "--catalog", "catalog", "--out", "p2.json"}, "/dev/zero is a character device"},
		{[]string{"approve", "plan.json", "--by", "carol", "--sign-key", "/dev/urandom"}, "/dev/urandom is a character device"},
	} {
		res := runAt(t, f.env, tc.args...)
		if res.code == 0 || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("%v: %d, want an error naming %q\n%s", tc.args, res.code, tc.want, res.stderr)
		}
	}
	for tenant, names := range agreed {
		for _, n := range names {
			if s := f.row(t, tenant, n); s.template != "" {
				t.Errorf("%s/%s written", tenant, n)
			}
		}
	}
}
