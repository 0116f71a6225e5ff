package koji

import (
	"context"
	"fmt"
	"strings"

	"github.com/kib-project/kib/internal/adler"
)

// UploadReplace writes data to <dir>/<name> under the hub's work directory,
// replacing a file of that name (rawUpload with overwrite, as kojid's
// fast_incremental_upload does for task files rewritten while the task runs,
// such as compose-status.json). It is meant for small documents: no resume.
func (c *Client) UploadReplace(ctx context.Context, dir, name string, data []byte) error {
	if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("koji: upload name %q: must be a bare file name not starting with '.'", name)
	}
	if !c.LoggedIn() {
		return fmt.Errorf("koji: upload %s: not logged in", name)
	}
	for off := 0; off == 0 || off < len(data); {
		end := min(off+c.chunk, len(data))
		chunk := data[off:end]
		if err := c.uploadChunk(ctx, dir, name, int64(off), chunk, off == 0, func() uint32 { return adler.Checksum(chunk) }); err != nil {
			return fmt.Errorf("koji: upload %s: %w", name, err)
		}
		if end == len(data) {
			break
		}
		off = end
	}
	return nil
}
