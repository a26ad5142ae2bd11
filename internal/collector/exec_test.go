package collector

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// bigFile writes n bytes of YAML-ish text and returns its path.
func bigFile(t *testing.T, n int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(p, bytes.Repeat([]byte("k: vvvvvvv\n"), n/11+1)[:n], 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExec(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("name: ws\nruntime: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noContainer := writeScript(t, "docker.sh",
		`echo "Error response from daemon: No such container: $1" >&2; exit 1`)
	stderrOnly := writeScript(t, "fail.sh", `echo "daemon unreachable" >&2; echo "second line" >&2; exit 1`)
	exit3 := writeScript(t, "exit3.sh", `exit 3`)
	signalled := writeScript(t, "selfkill.sh", `kill -KILL $$`)
	args := writeScript(t, "args.sh", `for a in "$@"; do printf '[%s]' "$a"; done`)
	big := bigFile(t, 5<<20)
	// A config.yaml made a symbolic link to a process's environment.
	environ := filepath.Join(dir, "environ")
	if err := os.WriteFile(environ, []byte("API_KEY=planted-secret\x00PATH=/bin\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "linked.yaml")
	if err := os.Symlink(environ, linked); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name       string
		argv       []string
		outcome    Outcome
		transient  bool
		reasonHas  string
		content    string
		exitCode   string
		stderrHead string
	}{
		{"captured", []string{"/bin/cat", cfg}, Captured, false, "", "name: ws\nruntime: x\n", "0", ""},
		{"placeholders filled", []string{"/bin/cat", dir + "/{instance_id}/../config.yaml"}, Gone, false, "No such file or directory", "", "1", ""},
		{"stdin is /dev/null", []string{"/bin/cat"}, Captured, false, "", "", "0", ""},
		{"argv not shell-interpreted", []string{args, "a b", "$(id)", "x;y", "{instance_id}"}, Captured, false, "", "[a b][$(id)][x;y][ws-abc]", "0", ""},
		{"missing file is gone", []string{"/bin/cat", filepath.Join(dir, "nope.yaml")}, Gone, false, "No such file or directory", "", "1", ""},
		{"missing container is gone", []string{noContainer, "{instance_id}"}, Gone, false, "No such container: ws-abc", "", "1", "Error response from daemon: No such container: ws-abc\n"},
		{"stderr only exit 1", []string{stderrOnly}, Failed, true, "exit code 1: daemon unreachable", "", "1", "daemon unreachable\nsecond line\n"},
		{"silent non-zero", []string{exit3}, Failed, true, "exit code 3", "", "3", ""},
		{"killed by signal", []string{signalled}, Failed, true, "killed by signal killed", "", "-1", ""},
		{"5 MiB is too large", []string{"/bin/cat", big}, Failed, false, "too large: more than 1048576 bytes", "", "", ""},
		{"not found", []string{"no-such-command-for-backfill"}, Failed, false, "command no-such-command-for-backfill not found in PATH", "", "", ""},
		{"not executable", []string{notExec}, Failed, false, "permission denied", "", "", ""},
		{"empty argv0", []string{""}, Failed, false, "empty command", "", "", ""},
		{"NUL bytes are never kept", []string{"/bin/cat", linked}, Failed, false, "holds a NUL byte", "", "0", ""},
		{"dd refuses a symbolic link", []string{"dd", "if=" + linked, "iflag=nofollow", "status=none"}, Failed, false, "config.yaml is a symbolic link, refused: dd: failed to open", "", "1", ""},
		{"dd reads a regular file", []string{"dd", "if=" + cfg, "iflag=nofollow", "status=none"}, Captured, false, "", "name: ws\nruntime: x\n", "0", ""},
		{"dd of a missing file is gone", []string{"dd", "if=" + filepath.Join(dir, "nope.yaml"), "iflag=nofollow", "status=none"}, Gone, false, "No such file or directory", "", "1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := same(t, Spec{Method: "exec", Argv: tt.argv})
			r := c.Collect(timeoutCtx(t, 10*time.Second), testValues)
			check(t, r, tt.outcome, tt.transient, tt.reasonHas)
			if tt.outcome == Captured && string(r.Content) != tt.content {
				t.Fatalf("content = %q, want %q", r.Content, tt.content)
			}
			if tt.outcome == Captured && r.Content == nil {
				t.Fatal("captured content is nil")
			}
			if tt.exitCode != "" && r.Provenance["exit_code"] != tt.exitCode {
				t.Fatalf("exit_code = %q, want %q (provenance %v)", r.Provenance["exit_code"], tt.exitCode, r.Provenance)
			}
			if tt.stderrHead != "" && r.Provenance["stderr_head"] != tt.stderrHead {
				t.Fatalf("stderr_head = %q, want %q", r.Provenance["stderr_head"], tt.stderrHead)
			}
		})
	}
}

func TestExecTarget(t *testing.T) {
	c := same(t, Spec{Method: "exec", Argv: []string{"docker", "exec", "{instance_id}", "cat", "/configs/config.yaml", "a b"}})
	r := c.Collect(timeoutCtx(t, 10*time.Second), testValues)
	if want := `exec: docker exec ws-abc cat /configs/config.yaml "a b"`; r.Target != want {
		t.Fatalf("target = %q, want %q", r.Target, want)
	}
}

func TestExecProvenanceKeys(t *testing.T) {
	ok := same(t, Spec{Method: "exec", Argv: []string{"/bin/cat", "/dev/null"}})
	r := ok.Collect(timeoutCtx(t, 10*time.Second), testValues)
	if got := keys(r.Provenance); got != "exit_code,stderr_head" {
		t.Fatalf("provenance keys = %s", got)
	}
}

func TestExecStderrHeadIsCapped(t *testing.T) {
	script := writeScript(t, "noisy.sh", `i=0; while [ $i -lt 2000 ]; do echo "warning line $i" >&2; i=$((i+1)); done; echo out`)
	r := same(t, Spec{Method: "exec", Argv: []string{script}}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Captured, false, "")
	if h := r.Provenance["stderr_head"]; len(h) != stderrHeadBytes || !strings.HasPrefix(h, "warning line 0\n") {
		t.Fatalf("stderr_head has %d bytes (%q...), want the first %d", len(h), h[:min(len(h), 40)], stderrHeadBytes)
	}
}

// TestExecHungProcessKilledAtTimeout runs scripts that ignore SIGTERM and
// never exit: the whole group must be SIGKILLed at the deadline.
func TestExecHungProcessKilledAtTimeout(t *testing.T) {
	for name, body := range map[string]string{
		"loop": `trap '' TERM; while :; do sleep 1; done`,
		// A long-lived child shows the group, not just the leader, is killed.
		"loop with child": `trap '' TERM; sleep 1000 & while :; do sleep 1; done`,
	} {
		t.Run(name, func(t *testing.T) {
			pidFile := filepath.Join(t.TempDir(), "pid")
			script := writeScript(t, "hung.sh", `echo $$ > "`+pidFile+`"; `+body)
			c := same(t, Spec{Method: "exec", Argv: []string{script}})

			start := time.Now()
			r := c.Collect(timeoutCtx(t, 300*time.Millisecond), testValues)
			elapsed := time.Since(start)

			checkTimeout(t, r, 300*time.Millisecond)
			if elapsed > 10*time.Second {
				t.Fatalf("Collect took %v after a 300ms timeout", elapsed)
			}
			if r.Provenance["exit_code"] != "-1" || r.Provenance["signal"] != "killed" {
				t.Fatalf("provenance = %v, want the SIGKILL recorded", r.Provenance)
			}
			assertGroupDies(t, readPID(t, pidFile))
		})
	}
}

// TestExecOversizedOutputKilled: a writer that ignores SIGPIPE would run
// forever; hitting the cap must kill it rather than wait for it.
func TestExecOversizedOutputKilled(t *testing.T) {
	big := bigFile(t, 256<<10)
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := writeScript(t, "flood.sh",
		`echo $$ > "`+pidFile+`"; trap '' PIPE; while :; do cat "`+big+`" 2>/dev/null; done`)
	c := mustNew(t, Spec{Method: "exec", Argv: []string{script}}, Spec{Method: "exec", Argv: []string{script}}, 1<<20, nil)
	r := c.Collect(timeoutCtx(t, 30*time.Second), testValues)
	check(t, r, Failed, false, "too large: more than 1048576 bytes")
	assertGroupDies(t, readPID(t, pidFile))
}

// TestExecLeftoverChildInGroup: the command exits but leaves a background
// child holding stdout; it is killed with the group and the capture
// completes instead of waiting on the pipe.
func TestExecLeftoverChildInGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	script := writeScript(t, "bg.sh", `echo $$ > "`+pidFile+`"; sleep 1000 & echo done`)
	r := same(t, Spec{Method: "exec", Argv: []string{script}}).Collect(timeoutCtx(t, 30*time.Second), testValues)
	check(t, r, Captured, false, "")
	if string(r.Content) != "done\n" {
		t.Fatalf("content = %q", r.Content)
	}
	assertGroupDies(t, readPID(t, pidFile))
}

// TestExecStdoutHeldOutsideGroup: a process that escaped the group (setsid)
// keeps stdout open after the command exits 0. WaitDelay bounds the wait,
// and since the output may be partial the attempt fails.
func TestExecStdoutHeldOutsideGroup(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The fixture waits (busy loop, in the fixture) until the escaped
	// process has recorded its pid, so cleanup can kill it by id.
	script := writeScript(t, "escape.sh", `setsid sh -c 'echo $$ > "$1"; exec sleep 1000' sh "`+pidFile+`" &
while [ ! -s "`+pidFile+`" ]; do :; done
echo partial`)
	t.Cleanup(func() {
		if pid, err := strconv.Atoi(strings.TrimSpace(readFile(pidFile))); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	start := time.Now()
	r := same(t, Spec{Method: "exec", Argv: []string{script}}).Collect(timeoutCtx(t, 30*time.Second), testValues)
	check(t, r, Failed, true, "output still open")
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("Collect took %v", elapsed)
	}
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func readPID(t *testing.T, p string) int {
	t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(readFile(p)))
	if err != nil {
		t.Fatalf("fixture pid file: %v", err)
	}
	return pid
}

// assertGroupDies checks every process left in group pgid is already on its
// way out. SIGKILL is delivered asynchronously, so a killed process may still
// show as running for a moment; each is awaited through a pidfd, which
// becomes readable when the process exits, for up to 5s.
func assertGroupDies(t *testing.T, pgid int) {
	t.Helper()
	const sysPidfdOpen = 434 // same number on every Linux architecture
	for _, pid := range liveGroupMembers(t, pgid) {
		fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
		if errno == syscall.ESRCH {
			continue
		}
		if errno != 0 {
			t.Skipf("pidfd_open: %v", errno)
		}
		ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			t.Fatal(err)
		}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, int(fd), &ev); err != nil {
			t.Fatal(err)
		}
		var out [1]syscall.EpollEvent
		n, err := syscall.EpollWait(ep, out[:], 5000)
		for err == syscall.EINTR {
			n, err = syscall.EpollWait(ep, out[:], 5000)
		}
		syscall.Close(ep)
		syscall.Close(int(fd))
		if err != nil || n == 0 {
			t.Fatalf("process %d of group %d is still alive (%v)", pid, pgid, err)
		}
	}
}

// liveGroupMembers lists non-zombie processes in process group pgid, from
// /proc (zombies are dead, merely not yet reaped by init).
func liveGroupMembers(t *testing.T, pgid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		// Fields after the parenthesised command: state ppid pgrp ...
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if g, _ := strconv.Atoi(f[2]); g == pgid {
			live = append(live, pid)
		}
	}
	return live
}

func keys(m map[string]string) string {
	return strings.Join(sortedKeys(m), ",")
}

// TestExecMinimalEnvironment runs the real env(1): the command sees exactly
// the environment the spec resolved, never backfill's own.
func TestExecMinimalEnvironment(t *testing.T) {
	const marker = "os-env-secret-marker-7f3a"
	t.Setenv("BACKFILL_TEST_OPERATOR_TOKEN", marker)
	envBin, err := exec.LookPath("env")
	if err != nil {
		t.Skip("no env(1)")
	}
	binDir := filepath.Dir(envBin)

	t.Run("resolved environment only", func(t *testing.T) {
		spec := Spec{Method: "exec", Argv: []string{"env"}, Env: []string{"DOCKER_HOST"},
			Environ: []string{"PATH=" + binDir, "HOME=/nonexistent", "DOCKER_HOST=unix:///run/dock.sock"}}
		raw := Spec{Method: "exec", Argv: []string{"env"}, Env: []string{"DOCKER_HOST"}}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Captured, false, "")
		if got, want := string(r.Content), "PATH="+binDir+"\nHOME=/nonexistent\nDOCKER_HOST=unix:///run/dock.sock\n"; got != want {
			t.Fatalf("environment =\n%s\nwant\n%s", got, want)
		}
		if r.Target != "exec: env (env: DOCKER_HOST)" {
			t.Fatalf("target = %q", r.Target)
		}
	})
	t.Run("no environment resolved", func(t *testing.T) {
		r := same(t, Spec{Method: "exec", Argv: []string{envBin}}).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Captured, false, "")
		if got := string(r.Content); got != "PATH="+defaultPath+"\n" {
			t.Fatalf("environment = %q, want only the default PATH", got)
		}
	})
	t.Run("listed value kept out of reasons", func(t *testing.T) {
		script := writeScript(t, "dock.sh", `echo "cannot connect to $DOCKER_HOST" >&2; exit 1`)
		spec := Spec{Method: "exec", Argv: []string{script}, Env: []string{"DOCKER_HOST"}, Environ: []string{"DOCKER_HOST=tcp://u:dock-pw-4411@h"}}
		raw := Spec{Method: "exec", Argv: []string{script}, Env: []string{"DOCKER_HOST"}}
		r := mustNew(t, spec, raw, 0, nil).Collect(timeoutCtx(t, 10*time.Second), testValues)
		check(t, r, Failed, true, "cannot connect to [REDACTED]")
		if strings.Contains(r.Provenance["stderr_head"], "dock-pw-4411") {
			t.Fatalf("stderr_head = %q", r.Provenance["stderr_head"])
		}
	})
}

// TestExecLooksUpInCommandPath: a bare name is found in the PATH the command
// is given, not in backfill's, and relative PATH entries are never used.
func TestExecLooksUpInCommandPath(t *testing.T) {
	dir := filepath.Dir(writeScript(t, "backfill-test-tool", `echo found`))
	argv := []string{"backfill-test-tool"}
	r := mustNew(t, Spec{Method: "exec", Argv: argv, Environ: []string{"PATH=" + dir}}, Spec{Method: "exec", Argv: argv}, 0, nil).
		Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Captured, false, "")
	if string(r.Content) != "found\n" {
		t.Fatalf("content = %q", r.Content)
	}
	t.Chdir(dir)
	r = mustNew(t, Spec{Method: "exec", Argv: argv, Environ: []string{"PATH=.:" + t.TempDir()}}, Spec{Method: "exec", Argv: argv}, 0, nil).
		Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, false, "command backfill-test-tool not found in PATH")
}

// grandchildScript starts a background grandchild and waits for it, the way
// a wrapper around docker exec would; the grandchild's pid lands in pidFile.
func grandchildScript(pidFile string) []string {
	return []string{"/bin/sh", "-c", `sleep 300 & echo $! > "` + pidFile + `"; wait`}
}

// awaitPID polls (bounded) until pidFile holds a whole pid line.
func awaitPID(t *testing.T, pidFile string, done <-chan Result) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b := readFile(pidFile); strings.HasSuffix(b, "\n") {
			return readPID(t, pidFile)
		}
		select {
		case r := <-done:
			t.Fatalf("command ended before writing its pid: %+v", r)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no pid written within 10s")
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// assertProcessGone polls /proc (bounded) until pid has exited: gone, or a
// zombie nobody has reaped yet.
func assertProcessGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
		if err != nil {
			return
		}
		if f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(f) > 0 && (f[0] == "Z" || f[0] == "X") {
			return
		}
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("process %d still running 10s after its command was killed", pid)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestExecTimeoutKillsGrandchild: at the deadline the whole group goes,
// including a grandchild the command started in the background.
func TestExecTimeoutKillsGrandchild(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	c := same(t, Spec{Method: "exec", Argv: grandchildScript(pidFile)})
	done := make(chan Result, 1)
	go func() { done <- c.Collect(timeoutCtx(t, 500*time.Millisecond), testValues) }()
	pid := awaitPID(t, pidFile, done)
	checkTimeout(t, <-done, 500*time.Millisecond)
	assertProcessGone(t, pid)
}

// TestKillAllKillsRunningGroups is the second Ctrl-C: the captures in flight
// are abandoned, and their commands and grandchildren must not outlive
// backfill. Nothing starts afterwards.
func TestKillAllKillsRunningGroups(t *testing.T) {
	saved := running
	running = &registry{groups: make(map[*group]bool)}
	t.Cleanup(func() { running = saved })

	dir := t.TempDir()
	var pids []int
	var dones []chan Result
	for i := range 3 {
		pidFile := filepath.Join(dir, "pid"+strconv.Itoa(i))
		c := same(t, Spec{Method: "exec", Argv: grandchildScript(pidFile)})
		done := make(chan Result, 1)
		go func() { done <- c.Collect(timeoutCtx(t, time.Minute), testValues) }()
		pids = append(pids, awaitPID(t, pidFile, done))
		dones = append(dones, done)
	}
	KillAll()
	for _, done := range dones {
		select {
		case r := <-done:
			check(t, r, Failed, true, "killed by signal killed")
		case <-time.After(10 * time.Second):
			t.Fatal("a capture still runs 10s after KillAll")
		}
	}
	for _, pid := range pids {
		assertProcessGone(t, pid)
	}
	r := same(t, Spec{Method: "exec", Argv: []string{"/bin/true"}}).Collect(timeoutCtx(t, 10*time.Second), testValues)
	check(t, r, Failed, false, "not started: backfill is exiting")
}
