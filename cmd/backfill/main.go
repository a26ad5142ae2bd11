// Command backfill recovers workspaces.template across a fleet of tenant
// databases. See README.md and `backfill --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"backfill/internal/cli"
	"backfill/internal/collector"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		// The first signal stops new work and lets in-flight work finish and
		// be recorded; a second one exits at once. What is recorded stays.
		<-sigs
		cancel()
		<-sigs
		// Exec collectors run in their own process groups, which the
		// terminal's Ctrl-C does not reach: kill them, or they outlive us.
		collector.KillAll()
		os.Exit(130)
	}()
	code := cli.Run(ctx, os.Args, cli.OSEnv())
	collector.KillAll()
	os.Exit(code)
}
