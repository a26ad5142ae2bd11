package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of /proc/PID/stat's CPU times on Linux.
const userHZ = 100

// meter reads one process's CPU time, so that a row can say where the
// machine's cores went while it ran: the tenant databases and the files
// API run here too, which a remote fleet's would not.
type meter struct {
	name string
	pid  int
	// tree: count the process's children too, live and reaped (the
	// PostgreSQL postmaster, whose backends come and go with sessions).
	tree bool
}

// cpuTimes is CPU time by meter name, and the timed process's own.
type cpuTimes struct {
	self   time.Duration
	others map[string]time.Duration
}

func (c cpuTimes) total() time.Duration {
	t := c.self
	for _, d := range c.others {
		t += d
	}
	return t
}

// procStat returns /proc/PID/stat's utime, stime, cutime and cstime.
func procStat(pid int) (ut, st, cut, cst int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from after its closing one (field 3, the state, is f[0]).
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0, 0, 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var v [4]int64
	for k := range v {
		if v[k], err = strconv.ParseInt(f[11+k], 10, 64); err != nil {
			return 0, 0, 0, 0, err
		}
	}
	return v[0], v[1], v[2], v[3], nil
}

// children returns pid's live children.
func children(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// read returns the meter's CPU time so far: the process's, and with tree
// its reaped children's and each live child's own.
func (m meter) read() time.Duration {
	ut, st, cut, cst, err := procStat(m.pid)
	if err != nil {
		return 0
	}
	ticks := ut + st
	if m.tree {
		ticks += cut + cst
		for _, c := range children(m.pid) {
			if u, s, _, _, err := procStat(c); err == nil {
				ticks += u + s
			}
		}
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// settle waits, up to a second, until a tree meter's process has no more
// children than it had before a run: the run's backends have exited and
// been reaped, so their time is in the postmaster's own figures.
func (m meter) settle(before int) {
	if !m.tree {
		return
	}
	deadline := time.Now().Add(time.Second)
	for len(children(m.pid)) > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// postmasterPID reads the cluster's postmaster.pid.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}
