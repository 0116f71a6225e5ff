package main

import "github.com/spf13/cobra"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "kib",
		Short:         "Build OS images reproducibly, for Koji and for you",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newVersionCmd(),
		newManifestCmd(),
		newBuildCmd(),
		newKojiCmd(),
		newServeCmd(),
		newWorkerCmd(),
		newKojidCmd(),
		newUploadCmd(),
		newReproduceCmd(),
	)
	return root
}
