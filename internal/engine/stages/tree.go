package stages

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// imagePath returns the host path of the absolute image path p inside tree,
// refusing paths that leave it.
func imagePath(tree, p string) (string, error) {
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return "", fmt.Errorf("path %q must be absolute and clean", p)
	}
	return filepath.Join(tree, p), nil
}

// writeTreeFile writes data to the image path p with mode, replacing a
// symbolic link rather than following it out of the tree.
func writeTreeFile(tree, p string, data []byte, mode os.FileMode) error {
	hp, err := imagePath(tree, p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		return err
	}
	if fi, err := os.Lstat(hp); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		if err := os.Remove(hp); err != nil {
			return err
		}
	}
	tmp := hp + ".kib-new"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, hp)
}

// lookupID finds name in the tree's /etc/passwd or /etc/group and returns its
// numeric id (and, for passwd, the primary group id and home directory).
func lookupID(tree, file, name string) (id, gid int, home string, err error) {
	f, err := os.Open(filepath.Join(tree, "etc", file))
	if err != nil {
		return 0, 0, "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		id, err = strconv.Atoi(fields[2])
		if err != nil {
			return 0, 0, "", fmt.Errorf("/etc/%s: bad id for %q", file, name)
		}
		if file == "passwd" && len(fields) >= 6 {
			gid, _ = strconv.Atoi(fields[3])
			home = fields[5]
		}
		return id, gid, home, nil
	}
	return 0, 0, "", fmt.Errorf("%q not found in the image's /etc/%s", name, file)
}
