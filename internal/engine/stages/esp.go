package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
	"github.com/kib-project/kib/internal/stageopt"
)

func init() {
	register("esp", func(o *stageopt.ESP) Stage { return (*ESP)(o) })
}

// ESP is the esp stage; its options are stageopt.ESP.
type ESP stageopt.ESP

// clusterSectors picks the largest cluster (at most 4 KiB) that still gives
// FAT32 the 65525 clusters it needs.
func (o *ESP) clusterSectors() int {
	for s := 8; s > 1; s /= 2 {
		if o.Size/SectorSize/uint64(s) >= 66000 {
			return s
		}
	}
	return 1
}

// Run makes the file system.
func (o *ESP) Run(ctx context.Context, env *Env) error {
	disk, err := diskPath(env, o.Filename, o.Offset, o.Size)
	if err != nil {
		return fmt.Errorf("esp: %w", err)
	}
	fat := o.FATSize
	if fat == 0 {
		fat = 32
	}
	return inPlace(disk, func(disk string) error {
		logger(env).Info("esp: making FAT file system", "offset", o.Offset, "size", o.Size, "fat", fat, "volume_id", o.VolumeID)
		args := []string{"--invariant", "-F", fmt.Sprint(fat), "-i", strings.ToUpper(o.VolumeID),
			"-h", fmt.Sprint(o.Offset / SectorSize), "--offset", fmt.Sprint(o.Offset / SectorSize)}
		if fat == 32 {
			args = append(args, "-s", fmt.Sprint(o.clusterSectors()))
		}
		if o.Label != "" {
			args = append(args, "-n", o.Label)
		}
		args = append(args, disk, fmt.Sprint(o.Size/1024))
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "mkfs.vfat", Args: args}); err != nil {
			return fmt.Errorf("esp: %w", err)
		}
		if len(o.Directories) > 0 {
			args := []string{"-i", fatImage(disk, o.Offset)}
			for _, d := range o.Directories {
				args = append(args, "::"+d)
			}
			if _, err := run(ctx, env, hostcmd.Cmd{Path: "mmd", Args: args, Env: mtoolsEnv}); err != nil {
				return fmt.Errorf("esp: directories: %w", err)
			}
		}
		return nil
	})
}

// mtoolsEnv lets mtools accept images whose geometry it does not like.
var mtoolsEnv = []string{"MTOOLS_SKIP_CHECK=1"}

// fatImage is mtools' name for a FAT file system at offset bytes into file.
func fatImage(file string, offset uint64) string {
	return fmt.Sprintf("%s@@%d", file, offset)
}

// mcopyFiles copies host files into the FAT file system at offset in disk,
// creating missing parent directories. files maps ESP paths ("/EFI/BOOT/X")
// to host paths; they are copied in sorted order so directory entries come
// out the same on every build.
func mcopyFiles(ctx context.Context, env *Env, disk string, offset uint64, files map[string]string) error {
	img := fatImage(disk, offset)
	made, err := fatDirs(ctx, env, img)
	if err != nil {
		return err
	}
	var mkdirs []string
	for _, dst := range slices.Sorted(maps.Keys(files)) {
		parts := strings.Split(strings.Trim(dst, "/"), "/")
		for i := 1; i < len(parts); i++ {
			dir := "/" + strings.Join(parts[:i], "/")
			if !made[strings.ToUpper(dir)] {
				made[strings.ToUpper(dir)] = true
				mkdirs = append(mkdirs, "::"+dir)
			}
		}
	}
	if len(mkdirs) > 0 {
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "mmd", Args: append([]string{"-i", img}, mkdirs...), Env: mtoolsEnv}); err != nil {
			return err
		}
	}
	for _, dst := range slices.Sorted(maps.Keys(files)) {
		if _, err := run(ctx, env, hostcmd.Cmd{Path: "mcopy", Args: []string{"-o", "-i", img, files[dst], "::" + dst}, Env: mtoolsEnv}); err != nil {
			return err
		}
	}
	return nil
}

// fatDirs lists the directories of a FAT image, upper-cased, without the
// trailing slash.
func fatDirs(ctx context.Context, env *Env, img string) (map[string]bool, error) {
	dirs := map[string]bool{"/": true}
	out, err := run(ctx, env, hostcmd.Cmd{Path: "mdir", Args: []string{"-/", "-b", "-i", img, "::/"}, Env: mtoolsEnv})
	if err != nil {
		// mdir fails on an empty root directory.
		var herr *hostcmd.Error
		if errors.As(err, &herr) && strings.Contains(herr.Stderr, "not found") && len(bytes.TrimSpace(out)) == 0 {
			return dirs, nil
		}
		return nil, err
	}
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSpace(line)
		if d, ok := strings.CutSuffix(strings.TrimPrefix(line, "::"), "/"); ok {
			dirs[strings.ToUpper(d)] = true
		}
	}
	return dirs, nil
}
