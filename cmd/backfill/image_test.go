package main

import (
	"bufio"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// The container image's promises that can be checked without a container
// engine: the binary builds with cgo off, as the Dockerfile builds it, is
// static, and runs; and the Dockerfile builds it that way onto a base with
// no shell, as a non-root user.

// goTool finds the go command; without it the build cannot be shown, which
// CI must not accept.
func goTool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("the go tool is not on PATH: %v", err)
		}
		t.Skipf("the go tool is not on PATH (%v): cannot show that backfill builds with CGO_ENABLED=0", err)
	}
	return p
}

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, …
	args string
}

// stage is a build stage: its FROM line and what follows it.
type stage struct {
	from, name string
	insts      []instruction
}

func parseDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var insts []instruction
	var cur strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(line, "\\"); ok {
			cur.WriteString(cont + " ")
			continue
		}
		cur.WriteString(line)
		cmd, args, _ := strings.Cut(strings.TrimSpace(cur.String()), " ")
		insts = append(insts, instruction{strings.ToUpper(cmd), strings.TrimSpace(args)})
		cur.Reset()
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	var stages []stage
	for _, in := range insts {
		if in.cmd == "FROM" {
			f := strings.Fields(in.args)
			s := stage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.name = f[2]
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) > 0 {
			stages[len(stages)-1].insts = append(stages[len(stages)-1].insts, in)
		}
	}
	return stages
}

func (s stage) all(cmd string) []string {
	var out []string
	for _, in := range s.insts {
		if in.cmd == cmd {
			out = append(out, in.args)
		}
	}
	return out
}

// goBuild is the stage's RUN that runs go build, and that command.
func (s stage) goBuild() string {
	for _, run := range s.all("RUN") {
		if strings.Contains(run, "go build") {
			return run
		}
	}
	return ""
}

func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, filepath.Join("..", "..", "Dockerfile"))
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage build, got %d stages", len(stages))
	}
	final := stages[len(stages)-1]
	var build stage
	for _, s := range stages {
		if s.goBuild() != "" {
			build = s
		}
	}
	run := build.goBuild()
	if run == "" {
		t.Fatal("no stage runs go build")
	}
	cgoOff := strings.Contains(run, "CGO_ENABLED=0")
	for _, env := range build.all("ENV") {
		cgoOff = cgoOff || strings.Contains(env, "CGO_ENABLED=0")
	}
	if !cgoOff {
		t.Error("the build stage does not set CGO_ENABLED=0")
	}
	for _, flag := range []string{"-trimpath", "-buildvcs=false", "./cmd/backfill"} {
		if !strings.Contains(run, flag) {
			t.Errorf("go build lacks %s: %s", flag, run)
		}
	}
	// The Go release the image builds with is the one go.mod asks for.
	goMod, err := os.ReadFile(filepath.Join("..", "..", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	if m == nil || !regexp.MustCompile(`ARG GO_VERSION=`+regexp.QuoteMeta(string(m[1]))+`\b`).Match(mustRead(t, filepath.Join("..", "..", "Dockerfile"))) {
		t.Errorf("the Dockerfile's GO_VERSION is not go.mod's go %s", m[1])
	}

	// The run stage: no shell, CA certificates, a numeric non-root user.
	switch {
	case strings.HasPrefix(final.from, "gcr.io/distroless/static"):
	case final.from == "scratch":
		certs := false
		for _, c := range final.all("COPY") {
			certs = certs || strings.Contains(c, "ca-certificates")
		}
		if !certs {
			t.Error("a scratch image needs the builder's CA certificates")
		}
	default:
		t.Errorf("run stage is FROM %s: want distroless/static or scratch", final.from)
	}
	users := final.all("USER")
	if len(users) == 0 {
		t.Fatal("the run stage sets no USER: it would run as root")
	}
	uid, _, _ := strings.Cut(users[len(users)-1], ":")
	// Numeric, so that Kubernetes' runAsNonRoot can check it.
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric, non-zero uid", users[len(users)-1])
	}
	if ep := final.all("ENTRYPOINT"); len(ep) != 1 || ep[0] != `["/backfill"]` {
		t.Errorf("ENTRYPOINT %q, want [\"/backfill\"]", ep)
	}
	binary, volume := false, false
	for _, c := range final.all("COPY") {
		binary = binary || (strings.Contains(c, "--from="+build.name) && strings.HasSuffix(c, " /backfill"))
	}
	for _, v := range final.all("VOLUME") {
		volume = volume || strings.Contains(v, `"/evidence"`)
	}
	if !binary || !volume {
		t.Errorf("run stage: binary copied to /backfill %v, VOLUME /evidence %v", binary, volume)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stamps are the internal/version variables the Dockerfile links, by name.
func stamps(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, m := range regexp.MustCompile(`-X backfill/internal/version\.(\w+)=`).FindAllStringSubmatch(string(mustRead(t, filepath.Join("..", "..", "Dockerfile"))), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatal("the Dockerfile links no version stamps")
	}
	return out
}

// TestStaticBuildRuns builds backfill as the Dockerfile does (cgo off,
// -trimpath, no VCS, version stamps linked in), checks that the result is
// a static executable, and runs it.
func TestStaticBuildRuns(t *testing.T) {
	goBin := goTool(t)
	values := map[string]string{"stampVersion": "v0.0.0-imagetest", "stampRevision": "0123456789abcdef0123456789abcdef01234567",
		"stampTime": "2026-12-01T04:00:00Z", "stampModified": "true"}
	ldflags := ""
	for _, name := range stamps(t) {
		v, ok := values[name]
		if !ok {
			t.Fatalf("the Dockerfile links version.%s, which this test does not know", name)
		}
		ldflags += " -X backfill/internal/version." + name + "=" + v
	}
	bin := filepath.Join(t.TempDir(), "backfill")
	build := exec.Command(goBin, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("CGO_ENABLED=0 go build: %v\n%s", err, out)
	}
	if f, err := elf.Open(bin); err == nil {
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Error("the binary names a dynamic loader: it is not static")
			}
		}
		if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
			t.Errorf("the binary needs shared libraries %q", libs)
		}
	}
	// Run it as the image does: nothing from this environment.
	runBin := func(args ...string) ([]byte, error) {
		c := exec.Command(bin, args...)
		c.Env = []string{}
		return c.Output()
	}
	out, err := runBin("version")
	if err != nil || !strings.HasPrefix(string(out), "backfill ") {
		t.Fatalf("version: %v %q", err, out)
	}
	if !strings.HasPrefix(string(out), "backfill v0.0.0-imagetest rev 0123456789ab (2026-12-01T04:00:00Z, modified)") {
		t.Errorf("version does not show the linked stamps: %q", out)
	}
	var v struct {
		Version, Revision string
		Modified          bool
	}
	if out, err = runBin("version", "--json"); err == nil {
		err = json.Unmarshal(out, &v)
	}
	if err != nil || v.Revision != values["stampRevision"] || !v.Modified {
		t.Errorf("version --json: %v %q", err, out)
	}
}
