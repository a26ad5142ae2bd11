package collector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"backfill/internal/placeholder"
	"backfill/internal/source"
	"backfill/internal/yamlnode"
)

const (
	// stderrHeadBytes is how much stderr provenance keeps.
	stderrHeadBytes = 1024
	// stderrScanBytes is how much stderr is kept to look for "gone"
	// messages, which may follow a warning or two.
	stderrScanBytes = 8 << 10
	// waitDelay bounds how long Wait waits for output pipes once the
	// process has exited or been killed. Everything in the process group is
	// killed first, so only a process that left the group (setsid) can still
	// hold a pipe; it gets no more than this.
	waitDelay = 500 * time.Millisecond
)

var errTooLarge = errors.New("output over the size cap")

// baseEnv are the variables every exec command gets from the operator's
// environment, when set there. Anything else must be listed in the
// collector's env: the operator's shell holds tenant passwords and tokens,
// and a command (or a compromised docker CLI plugin) must not see them.
var baseEnv = []string{"PATH", "HOME", "LANG", "TZ"}

// defaultPath is the command's PATH when the operator's environment has
// none, so that a bare command name is found the same way everywhere.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// childEnv is the command's whole environment: the resolved entries, with
// defaultPath when they have no PATH. It also returns the PATH used.
func childEnv(environ []string) (env []string, path string) {
	env = append(make([]string, 0, len(environ)+1), environ...)
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			return env, v
		}
	}
	return append(env, "PATH="+defaultPath), defaultPath
}

// lookPath finds a bare command name in the command's own PATH, not in
// backfill's process environment, so what runs depends only on the
// environment the command is given. Relative PATH entries are skipped: they
// would run whatever the working directory holds.
func lookPath(name, path string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func (c *Collector) collectExec(a attempt, v placeholder.Values, r *Result) {
	argv, ok := expand(r, v, c.spec.Argv...)
	if !ok {
		return
	}
	if argv[0] == "" {
		fail(r, false, "empty command (argv[0]) after expansion")
		return
	}
	if a.interrupted(r) {
		return
	}
	// Messages name the unexpanded command: argv[0] may hold an env value.
	name := c.raw.Argv[0]
	if s, err := placeholder.Expand(name, v); err == nil {
		name = s
	}

	env, path := childEnv(c.spec.Environ)
	prog, err := lookPath(argv[0], path)
	if err != nil {
		fail(r, false, "command %s not found in PATH", name)
		return
	}

	runCtx, cancel := context.WithCancel(a.ctx)
	defer cancel()
	cmd := exec.CommandContext(runCtx, prog, argv[1:]...)
	if cmd.Err != nil {
		fail(r, false, "command %s: %v", name, errnoOf(cmd.Err))
		return
	}
	cmd.Args[0] = argv[0] // as written, like a shell would pass it
	cmd.Env = env
	stdout := &capWriter{max: c.maxBytes, onOverflow: cancel}
	stderr := &headWriter{max: stderrScanBytes}
	cmd.Stdin = nil // /dev/null
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	// Own process group, so a timeout or overflow kills the command and
	// everything it started, not just the direct child (docker exec's
	// helpers, a wrapper script's children).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	g := &group{}
	cmd.Cancel = func() error { return g.kill(cmd.Process.Pid) }
	cmd.WaitDelay = waitDelay

	if err := running.start(cmd, g); err != nil {
		if errors.Is(err, errExiting) {
			fail(r, false, "%v", err)
		} else {
			fail(r, false, "start %s: %v", name, errnoOf(err))
		}
		return
	}
	defer running.remove(g)
	// Once the leader has exited but before it is reaped its pid cannot be
	// reused, so this is the one safe moment to kill leftovers in its group
	// that would otherwise hold stdout open until waitDelay.
	if waitExitNoReap(cmd.Process.Pid) {
		g.killAndClose(cmd.Process.Pid)
	}
	werr := cmd.Wait()

	state := cmd.ProcessState
	r.Provenance["exit_code"] = strconv.Itoa(state.ExitCode())
	if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Provenance["signal"] = ws.Signal().String()
	}
	// Scrubbed before any line of it is cut into a reason, then without
	// the start of a secret the scan's own cut went through (in that
	// order: trimmed first, a whole secret ending at the cut could lose a
	// byte and no longer be found).
	errText := r.redact(stderr.buf.String())
	if stderr.cut && r.red != nil {
		errText = r.red.TrimCut(errText)
	}
	r.Provenance["stderr_head"] = head(errText, stderrHeadBytes)

	switch {
	case stdout.over:
		tooLarge(r, c.maxBytes)
	case a.interrupted(r):
	case werr == nil:
		r.Outcome = Captured
		r.Content = stdout.bytes()
	case errors.Is(werr, exec.ErrWaitDelay):
		// Exit 0, but something still held stdout: the bytes may be partial.
		fail(r, true, "exit code 0 but output still open %v after exit", waitDelay)
	case state.ExitCode() > 0 && strings.Contains(errText, notRunningMessage):
		r.Outcome, r.Transient = NotRunning, false
		r.Reason = messageLine(errText, notRunningMessage)
	case state.ExitCode() > 0 && strings.Contains(errText, noSuchContainer) && Stopped(v.Status):
		// The Docker provisioner removes a paused or hibernated workspace's
		// container and keeps its config volume: the config is not gone,
		// only not reachable this way.
		r.Outcome, r.Transient = NotRunning, false
		r.Reason = messageLine(errText, noSuchContainer) + " (status " + v.Status + ": the platform removes the container of a stopped workspace and keeps its config volume)"
	case state.ExitCode() > 0 && strings.Contains(errText, symlinkRefused):
		// A reader that opens without following links (dd iflag=nofollow)
		// met one: the platform provisions none, so whatever made it is
		// not to be trusted with what it points at. Trying again will not
		// change that.
		fail(r, false, "config.yaml is a symbolic link, refused: %s", messageLine(errText, symlinkRefused))
	case state.ExitCode() > 0 && isGoneMessage(errText):
		gone(r, "%s", goneLine(errText))
	case state.ExitCode() > 0:
		reason := "exit code " + strconv.Itoa(state.ExitCode())
		if l := firstLine(errText); l != "" {
			reason += ": " + l
		}
		fail(r, true, "%s", reason)
	case r.Provenance["signal"] != "":
		fail(r, true, "killed by signal %s", r.Provenance["signal"])
	default:
		fail(r, true, "wait: %v", errnoOf(werr))
	}
}

// group kills a command's process group, and stops doing so once the
// leader has been reaped, when the group id could belong to someone else.
type group struct {
	mu     sync.Mutex
	closed bool
	pid    int // the leader, once started
}

// running is every exec command's process group, so that KillAll can reach
// them: each runs in a group of its own, out of reach of the terminal's
// Ctrl-C, and os.Exit runs no deferred cleanup.
var running = &registry{groups: make(map[*group]bool)}

var errExiting = errors.New("not started: backfill is exiting")

type registry struct {
	// starting is held shared from before a command starts until its
	// group is registered, and exclusively by KillAll, so no command can
	// start unseen while KillAll runs.
	starting sync.RWMutex
	mu       sync.Mutex
	groups   map[*group]bool
	exiting  bool
}

// start starts cmd and registers its group g, unless KillAll has run.
func (reg *registry) start(cmd *exec.Cmd, g *group) error {
	reg.starting.RLock()
	defer reg.starting.RUnlock()
	reg.mu.Lock()
	exiting := reg.exiting
	reg.mu.Unlock()
	if exiting {
		return errExiting
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	g.mu.Lock()
	g.pid = cmd.Process.Pid
	g.mu.Unlock()
	reg.mu.Lock()
	reg.groups[g] = true
	reg.mu.Unlock()
	return nil
}

func (reg *registry) remove(g *group) {
	reg.mu.Lock()
	delete(reg.groups, g)
	reg.mu.Unlock()
}

func (reg *registry) killAll() {
	reg.starting.Lock()
	defer reg.starting.Unlock()
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.exiting = true
	for g := range reg.groups {
		g.mu.Lock()
		pid := g.pid
		g.mu.Unlock()
		_ = g.kill(pid)
	}
}

// KillAll SIGKILLs the process group of every exec command still running,
// and refuses to start any more. Call it before exiting without waiting for
// captures in flight (a second Ctrl-C): their commands, and whatever those
// started, would otherwise outlive backfill.
func KillAll() { running.killAll() }

func (g *group) kill(pid int) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return os.ErrProcessDone
	}
	return killGroup(pid)
}

func (g *group) killAndClose(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	_ = killGroup(pid)
	g.closed = true
}

func killGroup(pid int) error {
	err := syscall.Kill(-pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// errnoOf strips path and command text from an error, which may hold
// expanded secrets, keeping the system error.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	var ee *exec.Error
	if errors.As(err, &ee) {
		return ee.Err
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// capWriter keeps up to max bytes and trips once more arrive, so an
// oversized output is never held in memory.
type capWriter struct {
	max        int64
	buf        bytes.Buffer
	over       bool
	onOverflow func()
}

func (w *capWriter) Write(p []byte) (int, error) {
	if w.over {
		return 0, errTooLarge
	}
	if int64(w.buf.Len())+int64(len(p)) > w.max {
		w.over = true
		w.onOverflow()
		return 0, errTooLarge
	}
	return w.buf.Write(p)
}

func (w *capWriter) bytes() []byte {
	if w.buf.Len() == 0 {
		return []byte{}
	}
	return w.buf.Bytes()
}

// headWriter keeps the first max bytes and swallows the rest, so a chatty
// stderr neither grows memory nor gets the command killed by SIGPIPE.
type headWriter struct {
	max int
	buf bytes.Buffer
	cut bool // bytes past max were dropped
}

func (w *headWriter) Write(p []byte) (int, error) {
	room := max(w.max-w.buf.Len(), 0)
	w.buf.Write(p[:min(room, len(p))])
	w.cut = w.cut || len(p) > room
	return len(p), nil
}

// head cuts s to at most n bytes without splitting a UTF-8 sequence.
func head(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

// noSuchContainer and notRunningMessage are docker's words for a container
// that does not exist and one that exists stopped.
const (
	noSuchContainer   = "No such container"
	notRunningMessage = "is not running"
)

// goneMessages are the stderr texts meaning the container or the file is
// not there: docker's for a removed container, cat's for a missing file.
var goneMessages = []string{noSuchContainer, "No such file or directory"}

// stoppedStatuses are the workspace statuses whose container the platform
// has stopped or removed although the row is live: the Docker provisioner
// removes a paused or hibernated workspace's container, and a failed one may
// have none.
var stoppedStatuses = []string{"paused", "hibernated", "hibernating", "failed"}

// Stopped reports whether a workspace with this status is expected to have
// no running container.
func Stopped(status string) bool { return slices.Contains(stoppedStatuses, status) }

// messageLine is the first stderr line containing m, as the reason.
func messageLine(stderr, m string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, m) {
			return head(strings.TrimSpace(l), 200)
		}
	}
	return firstLine(stderr)
}

// symlinkRefused is strerror(ELOOP), what a reader that refuses to follow
// a symbolic link (O_NOFOLLOW) prints when the file is one.
const symlinkRefused = "Too many levels of symbolic links"

func isGoneMessage(stderr string) bool {
	for _, m := range goneMessages {
		if strings.Contains(stderr, m) {
			return true
		}
	}
	return false
}

// goneLine is the stderr line that said so, as the reason.
func goneLine(stderr string) string {
	for _, l := range strings.Split(stderr, "\n") {
		if isGoneMessage(l) {
			return head(strings.TrimSpace(l), 200)
		}
	}
	return firstLine(stderr)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	return head(s, 200)
}

// execKind runs a command without a shell: Spec.Argv, with Spec.Env naming
// the variables it gets besides baseEnv. In the inventory it is an argv list
// or a mapping {argv: [...], env: [NAME, ...]}.
type execKind struct{}

func (execKind) name() string                    { return methodExec }
func (execKind) fields() []string                { return []string{"argv", "env", "environ"} }
func (execKind) requests() int                   { return 0 }
func (execKind) check(_, _ Spec) (string, error) { return "", nil }

func (execKind) validate(s Spec) error {
	for i, a := range s.Argv {
		if err := placeholder.Validate(a); err != nil {
			return fmt.Errorf("argv[%d]: %w", i, err)
		}
	}
	for _, n := range s.Env {
		if !IsEnvName(n) {
			return fmt.Errorf("env: %q is not a variable name", n)
		}
	}
	for i, kv := range s.Environ {
		// The value is not quoted: it may be a secret.
		name, _, ok := strings.Cut(kv, "=")
		if !ok || !IsEnvName(name) || strings.IndexByte(kv, 0) >= 0 {
			return fmt.Errorf("environ[%d]: not NAME=value", i)
		}
	}
	return nil
}

// decode resolves the command's environment here, through the same lookup
// as ${NAME}, so that it is decided once and never taken from whatever else
// the process environment holds.
func (execKind) decode(d Decoder, v Field, raw, exp *Spec) {
	argv := v
	var env Field
	if n := yamlnode.Resolve(v.Val); n.Kind == yaml.MappingNode {
		f := d.Fields(n, "exec", "argv", "env")
		if f == nil {
			return
		}
		a, ok := f["argv"]
		if !ok {
			d.Errorf(v.Key.Line, "exec collector has no argv")
			return
		}
		argv, env = a, f["env"]
	}
	raw.Argv, exp.Argv = decodeArgv(d, argv)
	if env.Val != nil {
		raw.Env = decodeEnvNames(d, env)
		exp.Env = slices.Clone(raw.Env)
	}
	for _, name := range baseEnv {
		if v, ok := d.Getenv(name); ok && !slices.Contains(raw.Env, name) {
			exp.Environ = append(exp.Environ, name+"="+v)
		}
	}
	for _, name := range raw.Env {
		if v, ok := d.Getenv(name); ok {
			exp.Environ = append(exp.Environ, name+"="+v)
			if !slices.Contains(baseEnv, name) {
				d.UseEnv(v)
			}
		}
	}
}

// decodeEnvNames reads an exec collector's env list: variable names, each
// once, each set in the environment (a command missing its DOCKER_HOST
// would talk to the wrong daemon, so unset is an error, as for ${NAME}).
func decodeEnvNames(d Decoder, v Field) []string {
	n := yamlnode.Resolve(v.Val)
	if yamlnode.IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n.Line, "exec env must be a list of variable names such as [DOCKER_HOST], not %s", d.KindName(n))
		return nil
	}
	var names []string
	seen := make(map[string]int)
	for _, item := range n.Content {
		name, ok := d.Str(item, "exec env entry")
		if !ok {
			continue
		}
		line := yamlnode.Resolve(item).Line
		switch first, dup := seen[name]; {
		case !IsEnvName(name):
			shown := name
			if len(shown) > 40 {
				shown = shown[:40] + "..."
			}
			d.Errorf(line, "exec env: %q is not a variable name (letters, digits and _, not starting with a digit)", shown)
		case dup:
			d.Errorf(line, "exec env: %s is listed twice (first at line %d)", name, first)
		default:
			if _, set := d.Getenv(name); !set {
				d.Errorf(line, "exec env: %s is not set in the environment", name)
				continue
			}
			seen[name] = line
			names = append(names, name)
		}
	}
	return names
}

func decodeArgv(d Decoder, v Field) (raw, exp []string) {
	n := yamlnode.Resolve(v.Val)
	if yamlnode.IsNull(n) {
		d.Errorf(v.Key.Line, "exec argv is empty")
		return nil, nil
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n.Line, `exec must be a list of arguments such as ["cat", "/configs/config.yaml"] or a mapping {argv: [...], env: [...]}, not %s`, d.KindName(n))
		return nil, nil
	}
	if len(n.Content) == 0 {
		d.Errorf(n.Line, "exec argv is empty")
		return nil, nil
	}
	for i, a := range n.Content {
		what := fmt.Sprintf("exec argument %d", i+1)
		r, ok := d.Str(a, what)
		if !ok {
			continue
		}
		line := yamlnode.Resolve(a).Line
		e, ok := d.Template(r, line, what)
		if !ok {
			continue
		}
		if i == 0 && e == "" {
			d.Errorf(line, "exec program (the first argument) is empty")
		}
		raw, exp = append(raw, r), append(exp, e)
	}
	return raw, exp
}

func (execKind) target(raw Spec, fill func(string) string) string {
	args := make([]string, len(raw.Argv))
	for i, a := range raw.Argv {
		args[i] = quoteArg(fill(a))
	}
	s := "exec: " + strings.Join(args, " ")
	if len(raw.Env) > 0 {
		s += " (env: " + strings.Join(raw.Env, ", ") + ")"
	}
	return s
}

func (execKind) collect(c *Collector, a attempt, v placeholder.Values, r *Result) {
	r.Source = source.Exec
	c.collectExec(a, v, r)
}

func quoteArg(s string) string {
	if s == "" || strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == '"' || r == '\'' || r == '\\' || r == 0x7f
	}) {
		return strconv.Quote(s)
	}
	return s
}
