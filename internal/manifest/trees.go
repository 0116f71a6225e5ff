package manifest

import "github.com/kib-project/kib/internal/stageopt"

// PackagesPipeline is the name of the tree pipeline that holds the installed
// packages alone; the "os" tree is a copy of it with the customizations.
const PackagesPipeline = "packages"

// treePipelines returns the package tree pipeline, which installs the
// packages, and the start of the os tree pipeline, which copies it; the
// caller adds the customization stages to the os pipeline. Both run in the
// build root build, if any.
//
// Splitting them lets the pipeline cache (whose keys chain each pipeline to
// the ones before it) keep the package tree when only what comes after it
// changes: a blueprint's files, users, hostname or services, or the kernel
// command line of another disk image type. A grown package set is not
// started from a smaller set's tree: the tree is installed anew, since
// adding packages to an installed tree does not in general give the same
// bytes as installing them all at once (maintainer scripts, triggers and
// the initramfs see another order).
func treePipelines(build string, install stageopt.Mmdebstrap) (pkgs, os Pipeline, err error) {
	pkgs = Pipeline{Name: PackagesPipeline, Kind: KindTree, Build: build}
	if err := addStage(&pkgs, "mmdebstrap", install); err != nil {
		return Pipeline{}, Pipeline{}, err
	}
	os = Pipeline{Name: "os", Kind: KindTree, Build: build}
	if err := addStage(&os, "tree-copy", stageopt.TreeCopy{Source: PackagesPipeline}); err != nil {
		return Pipeline{}, Pipeline{}, err
	}
	return pkgs, os, nil
}
