package koji

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/adler"
)

// UploadReplace writes data to <dir>/<name> under the hub's work directory,
// replacing a file of that name (rawUpload with overwrite, as kojid's
// fast_incremental_upload does for task files rewritten while the task runs,
// such as compose-status.json). It is meant for small documents: after a
// transport error it starts again from the beginning, within the client's
// retry policy; a hub fault is returned as is.
func (c *Client) UploadReplace(ctx context.Context, dir, name string, data []byte) error {
	if name == "" || strings.Contains(name, "/") || strings.HasPrefix(name, ".") {
		return fmt.Errorf("koji: upload name %q: must be a bare file name not starting with '.'", name)
	}
	if !c.LoggedIn() {
		return fmt.Errorf("koji: upload %s: not logged in", name)
	}
	deadline := time.Now().Add(c.retry.Deadline)
	for failures := 0; ; {
		err := c.replaceOnce(ctx, dir, name, data)
		var f *Fault
		if err == nil || errors.As(err, &f) || ctx.Err() != nil {
			return err
		}
		// A transport error: start again from offset 0, whose overwrite
		// truncates whatever the failed attempt left.
		failures++
		if failures > c.retry.MaxRetries || time.Now().After(deadline) {
			return fmt.Errorf("koji: upload %s: giving up after %d failures: %w", name, failures, err)
		}
		c.log.DebugContext(ctx, "koji upload failed, starting again", "name", name, "err", err)
		if serr := c.sleepF(ctx, c.retry.wait(failures)); serr != nil {
			return fmt.Errorf("koji: upload %s: %w (after %w)", name, serr, err)
		}
	}
}

func (c *Client) replaceOnce(ctx context.Context, dir, name string, data []byte) error {
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
