package main

import (
	"io"

	"github.com/spf13/cobra"
)

func newManifestCmd() *cobra.Command {
	var o requestOptions
	cmd := &cobra.Command{
		Use:   "manifest [flags] TYPE",
		Short: "Resolve a request and print its pinned manifest (canonical JSON)",
		Long: `Resolve the packages of image TYPE through apt, in an isolated configuration
that leaves the machine's apt state alone, and print the pinned manifest:
every package by URL, size and sha256, the pipelines and stages, the exports,
the seed and SOURCE_DATE_EPOCH. Two runs against the same repository state
print identical bytes.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := o.manifest(cmd.Context(), cmd, args[0], io.Discard)
			if err != nil {
				return err
			}
			c, err := m.Canonical()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(append(c, '\n'))
			return err
		},
	}
	o.bind(cmd)
	return cmd
}
