package cli

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// completionScript asks backfill itself for the words that may follow
// (urfave/cli's hidden --generate-bash-completion), so it never goes stale.
const completionScript = `# backfill completion for bash; in zsh, run
#   autoload -U +X bashcompinit && bashcompinit
# first. Install: backfill completion bash > /etc/bash_completion.d/backfill
_backfill() {
  local cur words
  cur="${COMP_WORDS[COMP_CWORD]}"
  if [[ "$cur" == -* ]]; then
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$((COMP_CWORD-1))}" "$cur" --generate-bash-completion 2>/dev/null)
  else
    words=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$((COMP_CWORD-1))}" --generate-bash-completion 2>/dev/null)
  fi
  COMPREPLY=($(compgen -W "$words" -- "$cur"))
}
complete -o bashdefault -o default -F _backfill backfill
`

func (r *runner) completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash; zsh through bashcompinit)",
		ArgsUsage: "bash|zsh",
		Action:    func(c *cli.Context) error { return r.runCompletion(completionOptions{shell: c.Args().First()}) },
	}
}

// completionOptions are completion's argument.
type completionOptions struct{ shell string }

func (r *runner) runCompletion(o completionOptions) error {
	switch o.shell {
	case "bash", "zsh":
		fmt.Fprint(r.env.Stdout, completionScript)
		return nil
	default:
		return &exitError{ExitUsage, fmt.Errorf("completion: say bash or zsh, not %q", o.shell)}
	}
}
