package stages

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

func init() { register[ESP]("esp") }

// ESP checks its options when the manifest is decoded.
var _ validator = (*ESP)(nil)

// ESP makes a FAT file system inside a partition of the disk file with
// mkfs.vfat --offset (no copy) and creates directories in it with mtools.
// mkfs.vfat runs with --invariant and a fixed volume ID, and mtools stamps
// files with SOURCE_DATE_EPOCH, so the result is the same on every build.
// FAT cannot be mounted on kib's build hosts; the boot loader stages fill it
// with mtools too.
type ESP struct {
	// Filename is the disk file in the output directory (made by gpt).
	Filename string `json:"filename"`
	// Offset and Size are the partition's byte range, multiples of 512.
	Offset uint64 `json:"offset"`
	Size   uint64 `json:"size"`
	// VolumeID is the FAT serial number, 8 hex digits (see VolumeIDFromSeed).
	VolumeID string `json:"volume_id"`
	// Label is the volume label: at most 11 characters of [A-Z0-9_-].
	Label string `json:"label,omitempty"`
	// FATSize is 12, 16 or 32; 0 means 32. FAT32 needs at least 33 MiB.
	FATSize int `json:"fat_size,omitempty"`
	// Directories to create, parents first, e.g. "/EFI", "/EFI/BOOT".
	Directories []string `json:"directories,omitempty"`
}

var (
	volumeIDRE = regexp.MustCompile(`^[0-9A-Fa-f]{8}$`)
	fatLabelRE = regexp.MustCompile(`^[A-Z0-9_-]{0,11}$`)
	fatPathRE  = regexp.MustCompile(`^(/[A-Za-z0-9_.-]+)+$`)
)

// Validate checks the options.
func (o *ESP) Validate() error {
	if err := checkFilename("filename", o.Filename); err != nil {
		return err
	}
	if err := checkExtent("", o.Offset, o.Size, SectorSize); err != nil {
		return err
	}
	if !volumeIDRE.MatchString(o.VolumeID) {
		return optErr("volume_id", "must be 8 hex digits, got %q", o.VolumeID)
	}
	if !fatLabelRE.MatchString(o.Label) {
		return optErr("label", "must be at most 11 characters of [A-Z0-9_-], got %q", o.Label)
	}
	switch o.FATSize {
	case 0, 32:
		if o.Size < 33*MiB {
			return optErr("size", "must be at least 33 MiB for FAT32, got %d", o.Size)
		}
	case 12, 16:
	default:
		return optErr("fat_size", "must be 12, 16 or 32, got %d", o.FATSize)
	}
	for i, d := range o.Directories {
		if !fatPathRE.MatchString(d) {
			return optErr(fmt.Sprintf("directories[%d]", i), "must be an absolute path of [A-Za-z0-9_.-] components, got %q", d)
		}
	}
	return nil
}

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
