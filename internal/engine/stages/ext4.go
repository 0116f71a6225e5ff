package stages

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("ext4", func(o *stageopt.Ext4) Stage { return (*Ext4)(o) })
}

// mke2fsConf pins mke2fs's defaults (Debian 12's /etc/mke2fs.conf) so the
// host's configuration cannot change the file system.
//
//go:embed mke2fs.conf
var mke2fsConf []byte

// Ext4 is the ext4 stage; its options are stageopt.Ext4.
type Ext4 stageopt.Ext4

// Run makes the file system and normalizes the inode times.
func (o *Ext4) Run(ctx context.Context, env *Env) error {
	src, err := env.Input(o.Source)
	if err != nil {
		return fmt.Errorf("ext4: source: %w", err)
	}
	disk, err := diskPath(env, o.Filename, o.Offset, o.Size)
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	conf, err := writeScratch(env, "mke2fs.conf", mke2fsConf)
	if err != nil {
		return fmt.Errorf("ext4: %w", err)
	}
	log := logger(env)
	extra := []string{"MKE2FS_CONFIG=" + conf, fmt.Sprintf("E2FSPROGS_FAKE_TIME=%d", env.SourceDateEpoch)}
	return inPlace(disk, func(disk string) error {
		log.Info("ext4: making file system", "source", o.Source, "offset", o.Offset, "size", o.Size, "uuid", o.UUID)
		args := []string{"-q", "-F", "-t", "ext4", "-b", "4096", "-U", o.UUID,
			"-E", fmt.Sprintf("hash_seed=%s,root_owner=0:0,offset=%d,nodiscard", o.HashSeed, o.Offset)}
		if o.Label != "" {
			args = append(args, "-L", o.Label)
		}
		args = append(args, "-d", src, disk, fmt.Sprintf("%dk", o.Size/1024))
		start := time.Now()
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "mkfs.ext4", Args: args, Env: extra}); err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		made := time.Now()
		dev := fmt.Sprintf("%s?offset=%d", disk, o.Offset)
		used, err := usedInodes(ctx, env, dev)
		if err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		var script bytes.Buffer
		if err := clampScript(&script, src, env.SourceDateEpoch); err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		for _, ino := range used {
			fmt.Fprintf(&script, "sif <%d> atime @%d\nsif <%d> ctime @%d\n", ino, env.SourceDateEpoch, ino, env.SourceDateEpoch)
		}
		scriptPath, err := writeScratch(env, "ext4-times.debugfs", script.Bytes())
		if err != nil {
			return fmt.Errorf("ext4: %w", err)
		}
		var stderr bytes.Buffer
		logw := io.Writer(&stderr)
		if env.ToolLog != nil {
			logw = io.MultiWriter(&stderr, env.ToolLog)
		}
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "debugfs", Args: []string{"-w", "-f", scriptPath, dev},
			Env: extra, Stdout: io.Discard, Log: logw}); err != nil {
			return fmt.Errorf("ext4: normalizing inode times: %w", err)
		}
		// debugfs exits 0 even when a command fails; it reports on stderr.
		for line := range strings.Lines(stderr.String()) {
			if !strings.HasPrefix(line, "debugfs ") {
				return fmt.Errorf("ext4: normalizing inode times: debugfs: %s", strings.TrimSpace(line))
			}
		}
		log.Info("ext4: inode times normalized", "inodes", len(used),
			"mkfs", made.Sub(start).Round(time.Millisecond), "normalize", time.Since(made).Round(time.Millisecond))
		return nil
	})
}

// clampScript writes debugfs commands setting the mtime of every entry of
// the tree newer than sde to sde.
func clampScript(w io.Writer, root string, sde int64) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().Unix() <= sde {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		name := "/" + filepath.ToSlash(rel)
		if rel == "." {
			name = "/"
		}
		if strings.ContainsAny(name, "\"\n\\") {
			return fmt.Errorf("cannot clamp the mtime of %q: the name has a quote, backslash or newline", name)
		}
		_, err = fmt.Fprintf(w, "sif \"%s\" mtime @%d\n", name, sde)
		return err
	})
}

// usedInodes lists the inode numbers in use, read from dumpe2fs's per-group
// free inode ranges.
func usedInodes(ctx context.Context, env *Env, dev string) ([]uint64, error) {
	out, err := run(ctx, env, hostcmd.Cmd{Path: "dumpe2fs", Args: []string{dev}})
	if err != nil {
		return nil, err
	}
	return parseUsedInodes(out)
}

var groupLineRE = regexp.MustCompile(`^Group [0-9]+:`)

func parseUsedInodes(out []byte) ([]uint64, error) {
	var perGroup uint64
	var used []uint64
	group := -1
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "Inodes per group:"):
			n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "Inodes per group:")), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("dumpe2fs: %q: %w", line, err)
			}
			perGroup = n
		case groupLineRE.MatchString(line):
			group++
		case strings.HasPrefix(strings.TrimSpace(line), "Free inodes:") && group >= 0:
			if perGroup == 0 {
				return nil, errors.New("dumpe2fs: no \"Inodes per group\" before the groups")
			}
			first := uint64(group)*perGroup + 1
			last := first + perGroup - 1
			free := map[uint64]bool{}
			list := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "Free inodes:"))
			for r := range strings.SplitSeq(list, ",") {
				r = strings.TrimSpace(r)
				if r == "" {
					continue
				}
				lo, hi, isRange := strings.Cut(r, "-")
				a, err := strconv.ParseUint(lo, 10, 64)
				if err != nil {
					return nil, fmt.Errorf("dumpe2fs: %q: %w", line, err)
				}
				b := a
				if isRange {
					if b, err = strconv.ParseUint(hi, 10, 64); err != nil {
						return nil, fmt.Errorf("dumpe2fs: %q: %w", line, err)
					}
				}
				if a < first || b > last || a > b {
					return nil, fmt.Errorf("dumpe2fs: free range %q outside group %d (%d-%d)", r, group, first, last)
				}
				for i := a; i <= b; i++ {
					free[i] = true
				}
			}
			for i := first; i <= last; i++ {
				if !free[i] {
					used = append(used, i)
				}
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if group < 0 {
		return nil, errors.New("dumpe2fs: no groups in output")
	}
	return used, nil
}
