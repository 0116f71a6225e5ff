package stageopt

import (
	"errors"
	"fmt"
	"strings"
)

// OCIArchive makes a single-layer OCI image of an input tree and writes it as
// an OCI archive (an OCI image layout in a tar), reproducibly.
type OCIArchive struct {
	Source   string `json:"source"`
	Filename string `json:"filename"`
	// Ref is recorded as the org.opencontainers.image.ref.name annotation.
	Ref        string            `json:"ref"`
	Cmd        []string          `json:"cmd,omitempty"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Env        []string          `json:"env,omitempty"`
	WorkingDir string            `json:"working_dir,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Exclude lists tar --exclude patterns for the layer ("./dev/*").
	Exclude []string `json:"exclude,omitempty"`
}

func init() { register[OCIArchive]("oci-archive") }

// Validate checks the options.
func (o *OCIArchive) Validate() error {
	var errs []error
	if o.Source == "" {
		errs = append(errs, errors.New("source: required"))
	}
	if o.Filename == "" || strings.ContainsAny(o.Filename, "/\x00") {
		errs = append(errs, fmt.Errorf("filename: %q must be a plain file name", o.Filename))
	}
	if o.Ref == "" || strings.ContainsAny(o.Ref, " \n/") && !strings.Contains(o.Ref, ":") {
		errs = append(errs, fmt.Errorf("ref: %q must be a reference name such as debian:12", o.Ref))
	}
	return errors.Join(errs...)
}

// InputNames returns the tree the stage packs.
func (o *OCIArchive) InputNames() []string { return []string{o.Source} }
