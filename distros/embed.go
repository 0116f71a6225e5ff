// Package distros embeds kib's distro definitions, one YAML file per distro.
package distros

import "embed"

// FS holds the definitions as <name>.yaml files and the keyrings they ship
// under keyrings/.
//
//go:embed *.yaml keyrings/*.gpg
var FS embed.FS
