// Package cli is backfill's command line: one file per subcommand, every
// side effect (arguments, environment, output streams, clock) injected so
// that tests drive it in-process exactly as an operator would.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"backfill/internal/evidence"
	"backfill/internal/progress"
	"backfill/internal/secret"
	"backfill/internal/termsafe"
	"backfill/internal/version"
)

// Exit codes, as the README documents them for scripts.
const (
	ExitOK      = 0
	ExitError   = 1 // bad input, unreachable store, refused plan
	ExitUsage   = 2
	ExitPartial = 3 // completed with some targets not done
)

// Env is everything the command line touches outside its arguments.
type Env struct {
	Stdout, Stderr io.Writer
	LookupEnv      func(string) (string, bool)
	Now            func() time.Time
	// Terminal reports whether progress may be drawn on w; nil: detect.
	Terminal func(w io.Writer) bool
}

// OSEnv is the process's real environment.
func OSEnv() Env {
	return Env{Stdout: os.Stdout, Stderr: os.Stderr, LookupEnv: os.LookupEnv, Now: time.Now}
}

// exitError carries an exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// fail is a command error with exit status 1 (ExitError).
func fail(format string, args ...any) error {
	return &exitError{ExitError, fmt.Errorf(format, args...)}
}

// errPartial signals exit 3 after the command has printed its own summary.
var errPartial = &exitError{ExitPartial, errors.New("completed with some targets not done")}

// urfave/cli appends its package-level HelpFlag and VersionFlag to every
// app, and BoolFlag.Apply writes into the flag it is given: two Runs at once
// (tests run them in parallel) raced on them. They are replaced once, here,
// by flags that apply a copy, so a Run only reads package-level state.
// The same holds for the library's shared `help` command, which running
// `backfill help` sets up in place: each app gets its own copy instead.
func init() {
	cli.HelpFlag = readOnlyBool{cli.HelpFlag.(*cli.BoolFlag)}
	cli.VersionFlag = readOnlyBool{cli.VersionFlag.(*cli.BoolFlag)}
	probe := &cli.App{}
	probe.Setup()
	helpCommand = *probe.Command("help")
}

// helpCommand is the library's help command as it was at start-up.
var helpCommand cli.Command

// readOnlyBool is a shared BoolFlag that every app applies a copy of.
type readOnlyBool struct{ *cli.BoolFlag }

func (f readOnlyBool) Apply(set *flag.FlagSet) error {
	c := *f.BoolFlag
	return c.Apply(set)
}

// GetDefaultText is empty: help shows no "(default: false)" for these, as
// for the library's own *BoolFlag with DisableDefaultText.
func (f readOnlyBool) GetDefaultText() string { return "" }

// Run executes one backfill command line (args[0] is the program name) and
// returns its exit status.
func Run(ctx context.Context, args []string, env Env) int {
	if env.Now == nil {
		env.Now = time.Now
	}
	if env.LookupEnv == nil {
		env.LookupEnv = func(string) (string, bool) { return "", false }
	}
	if env.Terminal == nil {
		env.Terminal = progress.IsTerminal
	}
	r := &runner{env: env}
	app := r.app()
	err := app.RunContext(ctx, interspersed(app, args))
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee != errPartial {
			fmt.Fprintf(env.Stderr, "backfill: %s\n", r.safe(ee.err.Error()))
		}
		if ee.code == ExitPartial && r.partialExit != nil {
			return *r.partialExit
		}
		return ee.code
	}
	// Anything urfave/cli reports itself (unknown flag, missing required
	// flag, bad value) is a usage error.
	fmt.Fprintf(env.Stderr, "backfill: %s\n", r.safe(err.Error()))
	return ExitUsage
}

// safe redacts an error message and escapes control characters in each of
// its lines: a refusal naming a workspace must not be able to repaint itself
// as a success line.
func (r *runner) safe(msg string) string {
	lines := strings.Split(r.redactor.Redact(msg), "\n")
	for i, l := range lines {
		lines[i] = termsafe.String(l)
	}
	return strings.Join(lines, "\n")
}

type runner struct {
	logFormat string
	logLevel  slog.Level
	env       Env
	gopts     globalOptions
	redactor  *secret.Redactor
	log       *slog.Logger
	// partialExit replaces ExitPartial when --partial-exit-code is given.
	partialExit *int
}

// globalOptions are the global flags a command uses after setup.
type globalOptions struct {
	evidence string // --evidence: the store's path
	quiet    bool
}

// envVar is the BACKFILL_<FLAG> variable every flag also reads.
func envVar(flag string) []string {
	return []string{"BACKFILL_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))}
}

// globalFlags are accepted before or after the command name.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "evidence", Value: "./evidence.db", EnvVars: envVar("evidence"), Usage: "evidence store `PATH` (created 0600)"},
		&cli.StringFlag{Name: "log-format", Value: "text", EnvVars: envVar("log-format"), Usage: "log format on stderr: text or json"},
		&cli.BoolFlag{Name: "quiet", EnvVars: envVar("quiet"), Usage: "no progress and no informational logs"},
		&cli.StringFlag{Name: "log-level", EnvVars: envVar("log-level"), Usage: "debug, info, warn or error (default: info; warn with --quiet)"},
		// Command line only: a variable left in a shell must never hide a
		// shortfall from a script. A Kubernetes init container needs it:
		// exit 3 there fails the pod before the next step can publish
		// the evidence already captured.
		&cli.IntFlag{Name: "partial-exit-code", Value: ExitPartial, Usage: "exit `STATUS` when a command completes with some targets not done (command line only)"},
	}
}

func (r *runner) app() *cli.App {
	cmds := []*cli.Command{
		r.snapshotCommand(),
		r.preflightCommand(),
		r.auditCommand(),
		r.statusCommand(),
		r.verifyCommand(),
		r.exportCommand(),
		r.planCommand(),
		r.showCommand(),
		r.approveCommand(),
		r.applyCommand(),
		r.rollbackCommand(),
		r.plansCommand(),
		r.inspectCommand(),
		r.versionCommand(),
		r.completionCommand(),
		r.mergeCommand(),
		r.publishCommand(),
	}
	for _, c := range cmds {
		// No `help` subcommand: with one, a positional argument such as
		// PLAN is first looked up as a subcommand, and a missing required
		// flag then also reports it as an unknown command.
		c.HideHelpCommand = true
		c.OnUsageError = usageError
		c.Flags = append(c.Flags, globalFlags()...)
		c.Before = r.setup
		c.Action = checkArgs(c.Action, argCounts[c.Name])
	}
	// Last, where the library would have put its own; without a help
	// command of its own, whose setup would write to the shared one.
	help := helpCommand
	help.HideHelpCommand = true
	cmds = append(cmds, &help)
	return &cli.App{
		Name:      "backfill",
		Usage:     "recover workspaces.template across a fleet of tenant databases",
		Writer:    r.env.Stdout,
		ErrWriter: r.env.Stderr,
		// The library adds --help only when it adds its help command.
		Flags:    append(globalFlags(), cli.HelpFlag),
		Commands: cmds,
		Version:  version.Get().String(),
		// Completion for bash and zsh: `backfill completion bash`.
		EnableBashCompletion: true,
		// Exit codes are decided in Run, never by the library.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   usageError,
		// Unknown commands are reported by Action below. The library also
		// calls this when a missing required flag makes it show a command's
		// help, with the command's first argument (a PLAN) as the name.
		CommandNotFound: func(*cli.Context, string) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return &exitError{ExitUsage, fmt.Errorf("unknown command %q", c.Args().First())}
			}
			cli.ShowAppHelp(c)
			return &exitError{ExitUsage, errors.New("a command is required")}
		},
	}
}

// usageError makes a flag the library could not parse a usage error (exit
// 2, one line, no help dump), with a hint for the forms people get wrong.
func usageError(_ *cli.Context, err error, _ bool) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "parse error") && strings.Contains(msg, "invalid value"),
		strings.Contains(msg, "as duration value"):
		if strings.Contains(msg, "duration") || durationFlag(msg) {
			msg += " (a duration needs a unit: 10s, 2m, 1h30m)"
		}
		if strings.Contains(msg, "max-bytes") {
			msg += " (a size: 1048576, 512KiB, 2MiB)"
		}
	}
	return &exitError{ExitUsage, errors.New(msg)}
}

// durationFlag reports whether a parse error names one of the duration
// flags, whose message from the flag package does not say so.
func durationFlag(msg string) bool {
	for _, f := range []string{"-timeout", "-lock-timeout", "-statement-timeout", "-progress-every", "-max-evidence-age"} {
		if strings.Contains(msg, "flag "+f+":") {
			return true
		}
	}
	return false
}

// argCounts bounds each command's positional arguments: min and max (-1:
// any). A stray word such as `apply --execute false` must be an error, never
// silently dropped.
var argCounts = map[string][2]int{"show": {1, 1}, "approve": {1, 1}, "merge": {2, -1}, "completion": {1, 1}, "inspect": {1, 1}, "publish": {1, 1}}

func checkArgs(action cli.ActionFunc, bounds [2]int) cli.ActionFunc {
	return func(c *cli.Context) error {
		n := c.NArg()
		if n < bounds[0] || (bounds[1] >= 0 && n > bounds[1]) {
			if bounds[1] == 0 {
				return &exitError{ExitUsage, fmt.Errorf("%s takes no arguments, got %q", c.Command.Name, c.Args().Slice())}
			}
			return &exitError{ExitUsage, fmt.Errorf("%s: wrong number of arguments (%d): usage: backfill %s %s", c.Command.Name, n, c.Command.Name, c.Command.ArgsUsage)}
		}
		return action(c)
	}
}

// global reads a global flag given after the command name, else before it,
// else its environment variable or default.
func global(c *cli.Context, name string) *cli.Context {
	for _, lc := range c.Lineage() {
		for _, n := range lc.LocalFlagNames() {
			if n == name {
				return lc
			}
		}
	}
	return c
}

func (r *runner) setup(c *cli.Context) error {
	format := global(c, "log-format").String("log-format")
	level := slog.LevelInfo
	if global(c, "quiet").Bool("quiet") {
		level = slog.LevelWarn
	}
	if l := global(c, "log-level").String("log-level"); l != "" {
		if err := level.UnmarshalText([]byte(l)); err != nil {
			return &exitError{ExitUsage, fmt.Errorf("--log-level must be debug, info, warn or error, not %q", l)}
		}
	}
	if code := global(c, "partial-exit-code").Int("partial-exit-code"); code != ExitPartial {
		if code < 0 || code > 125 {
			return &exitError{ExitUsage, fmt.Errorf("--partial-exit-code must be 0 to 125, not %d", code)}
		}
		r.partialExit = &code
	}
	if format != "text" && format != "json" {
		return &exitError{ExitUsage, fmt.Errorf("--log-format must be text or json, not %q", format)}
	}
	if r.redactor == nil {
		r.redactor = secret.NewRedactor()
	}
	r.logFormat, r.logLevel = format, level
	r.gopts = globalOptions{evidence: global(c, "evidence").String("evidence"), quiet: global(c, "quiet").Bool("quiet")}
	r.logTo(r.env.Stderr)
	return nil
}

// logTo sends the log to w, keeping its format, level and redaction: a
// progress line takes over stderr and prints log lines above itself.
func (r *runner) logTo(w io.Writer) {
	opts := &slog.HandlerOptions{Level: r.logLevel}
	var h slog.Handler = slog.NewTextHandler(w, opts)
	if r.logFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	}
	r.log = slog.New(secret.Handler(h, r.redactor))
}

// openStore opens the evidence store; create is false for commands that
// must not conjure an empty store from a mistyped path.
func (r *runner) openStore(ctx context.Context, create bool) (*evidence.Store, error) {
	path := r.gopts.evidence
	var s *evidence.Store
	var err error
	if create {
		s, err = evidence.Open(ctx, path)
	} else {
		s, err = evidence.OpenExisting(ctx, path)
	}
	if err != nil {
		return nil, fail("%v", err)
	}
	return s, nil
}

// openStoreReadOnly opens an existing evidence store for commands that only
// read it: nothing can be written through the handle, the schema is not
// migrated, and a store on read-only media opens.
func (r *runner) openStoreReadOnly(ctx context.Context) (*evidence.Store, error) {
	s, err := evidence.OpenReadOnly(ctx, r.gopts.evidence)
	if err != nil {
		return nil, fail("%v", err)
	}
	return s, nil
}

// progressLine returns a drawer for stderr, or nil when stderr is not a
// terminal or --quiet is set.
func (r *runner) progressLine() *progress.Line {
	if r.gopts.quiet || !r.env.Terminal(r.env.Stderr) {
		return nil
	}
	return progress.NewLine(r.env.Stderr)
}
