package stages

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("gpt", func(o *stageopt.GPT) Stage { return (*GPT)(o) })
}

// GPT is the gpt stage; its options are stageopt.GPT.
type GPT stageopt.GPT

// script returns the sfdisk input for the table.
func (o *GPT) script() string {
	first := uint64(2048)
	for _, p := range o.Partitions {
		first = min(first, p.Start/SectorSize)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "label: gpt\nlabel-id: %s\nunit: sectors\nsector-size: %d\nfirst-lba: %d\nlast-lba: %d\ntable-length: 128\n",
		strings.ToUpper(o.UUID), SectorSize, first, (o.Size-gptTrailer)/SectorSize-1)
	for _, p := range o.Partitions {
		fmt.Fprintf(&b, "start=%d, size=%d, type=%s, uuid=%s, name=%q",
			p.Start/SectorSize, p.Size/SectorSize, strings.ToUpper(p.Type), strings.ToUpper(p.UUID), p.Name)
		if p.LegacyBIOSBootable {
			b.WriteString(", attrs=\"LegacyBIOSBootable\"")
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// Run creates the disk file and writes the table.
func (o *GPT) Run(ctx context.Context, env *Env) error {
	logger(env).Info("gpt: writing partition table", "file", o.Filename, "size", o.Size, "partitions", len(o.Partitions))
	return createAtomic(env.Out, o.Filename, func(f *os.File) error {
		if err := f.Truncate(int64(o.Size)); err != nil {
			return fmt.Errorf("gpt: sizing %s: %w", o.Filename, err)
		}
		_, err := run(ctx, env, hostcmd.Cmd{
			Path:  "sfdisk",
			Args:  []string{"--quiet", "--no-reread", "--no-tell-kernel", "--wipe", "never", f.Name()},
			Stdin: strings.NewReader(o.script()),
		})
		if err != nil {
			return fmt.Errorf("gpt: %w", err)
		}
		return nil
	})
}
