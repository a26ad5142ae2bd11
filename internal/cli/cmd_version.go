package cli

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

	"backfill/internal/version"
)

func init() {
	// --version prints the same line as the version command.
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, version.Get().String()) }
}

func (r *runner) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the module version, VCS revision and build time (also --version)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", EnvVars: envVar("json"), Usage: "one JSON document on stdout"},
		},
		Action: func(c *cli.Context) error { return r.runVersion(versionOptions{json: c.Bool("json")}) },
	}
}

// versionOptions are version's flags.
type versionOptions struct{ json bool }

func (r *runner) runVersion(o versionOptions) error {
	v := version.Get()
	if o.json {
		enc := json.NewEncoder(r.env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			SchemaVersion int `json:"schema_version"`
			version.Info
		}{1, v})
	}
	fmt.Fprintln(r.env.Stdout, v.String())
	return nil
}
