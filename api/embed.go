// Package api holds kib's OpenAPI documents.
package api

import _ "embed"

// ComposeV2 is the OpenAPI 3 document of kib's compose API, compatible with
// osbuild-composer's Cloud API v2 where a client could notice.
//
//go:embed compose-v2.yaml
var ComposeV2 []byte
