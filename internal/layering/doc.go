// Package layering has no code: its test enforces the package layering of
// docs/architecture.md (cmd/kib → services → jobs → engine, upload, Koji →
// resolver → manifest, distro, depsolve, blueprint → store, hostcmd), as
// go-containerregistry's depcheck tests do.
package layering
