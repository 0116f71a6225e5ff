// Package distros embeds kib's distro definitions, one YAML file per distro.
package distros

import "embed"

// FS holds the definitions as <name>.yaml files.
//
//go:embed *.yaml
var FS embed.FS
