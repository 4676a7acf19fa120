package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print herald's version",
		Long: `Print herald's version, the commit it was built from, the commit's time, and the Go
version and platform of the build; the same line as 'herald --version'.`,
		Example: "  herald version",
		Args:    args(cobra.NoArgs),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(a.io.Stdout, "herald %s\n", readBuildInfo())
		},
	}
}
