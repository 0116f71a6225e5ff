package stageopt

func init() { register[TreeCopy]("tree-copy") }

// TreeCopy checks its options when the manifest is decoded.
var _ validator = (*TreeCopy)(nil)

// TreeCopy fills the pipeline's tree with a copy of an earlier tree
// pipeline's, so that the stages after it change a copy and the earlier tree
// stays in the store for other builds (the package tree, reused by every
// image that installs the same packages). The copy keeps what the image's
// file systems and archives record: owners, modes (set-id bits too),
// extended attributes (file capabilities, ACLs), hard links, holes of
// sparse files, device nodes, and access and modification times (ctime
// cannot be set; the stages that make file systems and archives normalize
// it). Files are copied in parallel; the result does not depend on their
// order, since mkfs.ext4 and tar read directories sorted by name.
type TreeCopy struct {
	// Source names the tree pipeline to copy.
	Source string `json:"source"`
}

// Validate checks the options.
func (t *TreeCopy) Validate() error {
	return checkPipelineName("source", t.Source, true)
}

// InputNames returns the tree the stage copies.
func (t *TreeCopy) InputNames() []string { return []string{t.Source} }
