// Command backfill recovers workspaces.template across a fleet of tenant
// databases. See README.md and `backfill --help`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"backfill/internal/cli"
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
		os.Exit(130)
	}()
	os.Exit(cli.Run(ctx, os.Args, cli.OSEnv()))
}
