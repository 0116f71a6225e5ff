package reproduce

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kib-project/kib/internal/hostcmd"
)

// BIOSBootType is the type GUID of a BIOS boot partition (GRUB's core.img).
const BIOSBootType = "21686148-6449-6E6F-744E-656564454649"

// CompareDisk compares two raw disk images and returns where they first
// differ: the byte offset, the GPT partition and file system it falls in,
// and the file: for ext4 the one that owns the differing block (debugfs
// icheck/ncheck); when no file owns it (file system metadata) or on vfat,
// the first differing entry of the two file trees, dumped into tmp. It
// returns nil when the disks are equal.
func CompareDisk(ctx context.Context, kojiRaw, localRaw, tmp string) (*Difference, error) {
	fa, err := os.Open(kojiRaw)
	if err != nil {
		return nil, err
	}
	defer fa.Close()
	fb, err := os.Open(localRaw)
	if err != nil {
		return nil, err
	}
	defer fb.Close()
	sa, err := fa.Stat()
	if err != nil {
		return nil, err
	}
	sb, err := fb.Stat()
	if err != nil {
		return nil, err
	}
	off, same, err := compareStreams(fa, fb)
	if err != nil {
		return nil, err
	}
	if same {
		return nil, nil
	}
	d := &Difference{Offset: off}
	if off >= min(sa.Size(), sb.Size()) {
		d.Detail = fmt.Sprintf("disk sizes differ: %d bytes in Koji, %d reproduced", sa.Size(), sb.Size())
		return d, nil
	}
	pa, erra := ReadGPT(fa, sa.Size())
	pb, errb := ReadGPT(fb, sb.Size())
	switch {
	case off < sectorSize:
		d.Detail = "protective MBR / boot code (sector 0)"
		return d, nil
	case erra != nil:
		d.Detail = "the Koji image's partition table is unreadable: " + erra.Error()
		return d, nil
	case errb != nil:
		d.Detail = "the reproduced image's partition table is unreadable: " + errb.Error()
		return d, nil
	}
	var p *Partition
	for i := range pb {
		if off >= pb[i].Start && off < pb[i].End {
			p = &pb[i]
		}
	}
	if p == nil {
		d.Detail = "outside every partition (GPT header, entries or backup)"
		if !samePartitions(pa, pb) {
			d.Detail = "the partition tables differ"
		}
		return d, nil
	}
	d.Partition, d.PartitionName, d.Offset = p.Number, p.Name, off-p.Start
	if p.Type == BIOSBootType {
		d.Detail = "BIOS boot partition (GRUB core image)"
		return d, nil
	}
	d.FS = fsType(fb, p.Start)
	if d.FS == "ext4" {
		d.Entry, d.Detail = ext4Owner(ctx, localRaw, fb, p.Start, d.Offset)
		if d.Entry != "" {
			// Name the file in the Koji image too when it is another one.
			if other, _ := ext4Owner(ctx, kojiRaw, fa, p.Start, d.Offset); other != "" && other != d.Entry {
				d.Detail += fmt.Sprintf(" (in the Koji image the block belongs to %s)", other)
			}
			return d, nil
		}
	}
	if d.FS == "" || fsType(fa, p.Start) != d.FS {
		return d, nil
	}
	// Metadata or a vfat: compare the file trees.
	ta, tb := filepath.Join(tmp, fmt.Sprintf("koji-p%d", p.Number)), filepath.Join(tmp, fmt.Sprintf("reproduced-p%d", p.Number))
	defer os.RemoveAll(ta)
	defer os.RemoveAll(tb)
	if err := dumpFS(ctx, d.FS, kojiRaw, p.Start, ta); err != nil {
		d.Detail += "; " + err.Error()
		return d, nil
	}
	if err := dumpFS(ctx, d.FS, localRaw, p.Start, tb); err != nil {
		d.Detail += "; " + err.Error()
		return d, nil
	}
	td, err := CompareTrees(ta, tb)
	if err != nil {
		return nil, err
	}
	if td == nil {
		if d.Detail != "" {
			d.Detail += "; "
		}
		d.Detail += "every file is the same (the difference is in file system metadata)"
		return d, nil
	}
	d.Entry = td.Entry
	if d.Detail != "" {
		td.Detail += " (first differing byte: " + d.Detail + ")"
	}
	d.Detail = td.Detail
	return d, nil
}

func samePartitions(a, b []Partition) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// ext4Owner finds the file owning the block at byte off of the ext4 file
// system that starts at byte start of disk, with debugfs's icheck and
// ncheck. It returns the path (without a leading "/" made absolute) and a
// detail, or "" and what it found instead.
func ext4Owner(ctx context.Context, disk string, r io.ReaderAt, start, off int64) (string, string) {
	sb := make([]byte, 4)
	if _, err := r.ReadAt(sb, start+1024+24); err != nil {
		return "", "ext4 superblock unreadable"
	}
	logBS := binary.LittleEndian.Uint32(sb)
	if logBS > 6 {
		return "", fmt.Sprintf("ext4 block size 2^(10+%d) is not plausible", logBS)
	}
	bs := int64(1024) << logBS
	block := off / bs
	spec := fmt.Sprintf("%s?offset=%d", disk, start)
	out, err := debugfs(ctx, spec, fmt.Sprintf("icheck %d", block))
	if err != nil {
		return "", fmt.Sprintf("block %d (debugfs: %v)", block, err)
	}
	ino := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == strconv.FormatInt(block, 10) {
			ino = f[1]
		}
	}
	if ino == "" || strings.Contains(out, "not found") {
		return "", fmt.Sprintf("block %d: file system metadata or free space", block)
	}
	out, err = debugfs(ctx, spec, "ncheck "+ino)
	if err != nil {
		return "", fmt.Sprintf("block %d of inode %s (debugfs: %v)", block, ino, err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.SplitN(strings.TrimSpace(line), "\t", 2); len(f) == 2 && f[0] == ino {
			return f[1], fmt.Sprintf("content differs in block %d (inode %s)", block, ino)
		}
	}
	return "", fmt.Sprintf("block %d of inode %s (no path: a directory's own block or an unlinked inode)", block, ino)
}

func debugfs(ctx context.Context, spec, request string) (string, error) {
	if err := hostcmd.Check("debugfs"); err != nil {
		return "", err
	}
	out, err := hostcmd.Run(ctx, hostcmd.Cmd{Path: "debugfs", Args: []string{"-R", request, spec}})
	return string(out), err
}
