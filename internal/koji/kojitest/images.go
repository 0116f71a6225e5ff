package kojitest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/kib-project/kib/internal/koji"
)

// imageResults decodes the results argument of completeImageBuild and
// moveImageBuildToScratch: {"<subtask id>": {task_id, arch, files, logs}}.
type imageResult struct {
	taskID int
	arch   string
	files  []string
	logs   []string
	rpms   []map[string]any
}

func imageResults(v any) ([]imageResult, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, paramError("results must be a struct")
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []imageResult
	for _, k := range keys {
		rm, ok := m[k].(map[string]any)
		if !ok || rm["task_id"] == nil {
			continue
		}
		id, err := toInt(rm["task_id"], "task_id")
		if err != nil {
			return nil, err
		}
		r := imageResult{taskID: id}
		r.arch, _ = rm["arch"].(string)
		r.files = append(r.files, asList(rm["files"])...)
		r.logs = append(r.logs, asList(rm["logs"])...)
		l, _ := rm["rpmlist"].([]any)
		for i, x := range l {
			e, ok := x.(map[string]any)
			if !ok {
				return nil, paramError("rpmlist[%d] must be a struct", i)
			}
			for _, k := range []string{"name", "version", "release", "arch"} {
				if s, _ := e[k].(string); s == "" {
					return nil, keyError(k)
				}
			}
			if e["location"] == nil {
				return nil, generic("No such rpm: %s-%s-%s.%s", e["name"], e["version"], e["release"], e["arch"])
			}
			r.rpms = append(r.rpms, e)
		}
		out = append(out, r)
	}
	return out, nil
}

func asList(v any) []string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		if s, ok := x.(string); ok && !strings.Contains(s, "/") {
			out = append(out, s)
		}
	}
	return out
}

func (c *call) completeImageBuild(ho *host) (any, error) {
	if _, err := c.ownedTask(ho, 0); err != nil {
		return nil, err
	}
	id, err := c.integer(1, "build_id")
	if err != nil {
		return nil, err
	}
	b := c.h.builds[id]
	if b == nil || b.state != StateBuilding {
		return nil, generic("Build %d is not building", id)
	}
	results, err := imageResults(c.opt(2, "results"))
	if err != nil {
		return nil, err
	}
	for _, r := range results {
		for _, f := range r.files {
			if _, ok := archiveType(f); !ok {
				return nil, &koji.Fault{Code: koji.CodeBuild, String: "Unsupported file type: " + f}
			}
		}
	}
	bdir := filepath.Join(c.h.Dir, "packages", b.name, b.version, b.release)
	for _, r := range results {
		src := c.h.taskDir(r.taskID)
		for _, f := range r.files {
			p := filepath.Join(src, f)
			size, sum, err := sha256File(p)
			if err != nil {
				return nil, pyError("FileNotFoundError", "%v", err)
			}
			if err := moveLeavingSymlink(p, filepath.Join(bdir, "images", f)); err != nil {
				return nil, generic("Error importing archive file, %v", err)
			}
			a := &archive{id: len(c.h.archives) + 1, buildID: b.id, filename: f, size: size,
				checksum: sum, ctype: 2, btype: "image", typeName: typeName(f), arch: r.arch}
			c.h.archives = append(c.h.archives, a)
			if !strings.HasSuffix(f, ".xml") && len(r.rpms) > 0 {
				c.h.imageRPMs[a.id] = r.rpms
			}
			b.hasArchives = true
		}
		entries, _ := os.ReadDir(src)
		for _, e := range entries {
			if e.Type().IsRegular() && strings.HasSuffix(e.Name(), ".log") {
				if err := moveLeavingSymlink(filepath.Join(src, e.Name()), filepath.Join(bdir, "data", "logs", "image", r.arch, e.Name())); err != nil {
					return nil, generic("Error importing log, %v", err)
				}
			}
		}
	}
	if b.extra == nil {
		b.extra = map[string]any{"typeinfo": map[string]any{"image": map[string]any{}}}
	}
	b.state, b.completion = StateComplete, c.h.now()
	c.commit = true
	return nil, nil
}

func (c *call) moveImageBuildToScratch(ho *host) (any, error) {
	t, err := c.ownedTask(ho, 0)
	if err != nil {
		return nil, err
	}
	results, err := imageResults(c.opt(1, "results"))
	if err != nil {
		return nil, err
	}
	for _, r := range results {
		dest := filepath.Join(c.h.Dir, "scratch", t.owner.Name, fmt.Sprintf("task_%d", r.taskID))
		for _, f := range slices.Concat(r.files, r.logs) {
			if err := moveLeavingSymlink(filepath.Join(c.h.taskDir(r.taskID), f), filepath.Join(dest, f)); err != nil {
				return nil, generic("Error moving %s: %v", f, err)
			}
		}
	}
	c.commit = true
	return nil, nil
}

func sha256File(p string) (int64, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	return n, hex.EncodeToString(h.Sum(nil)), err
}

func (h *Hub) tagInfo(t *tag) map[string]any {
	return map[string]any{"id": t.id, "name": t.name, "arches": nilIfEmpty(t.arches), "locked": false,
		"perm": nil, "perm_id": nil, "maven_support": false, "maven_include_all": false, "extra": orEmpty(t.extra)}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func (c *call) getTag() (any, error) {
	if err := c.arity(1, 4); err != nil {
		return nil, err
	}
	t := c.h.findTag(c.args[0])
	if t == nil {
		if c.opt(1, "strict") == true {
			return nil, errNoSuch("tag", c.args[0])
		}
		return nil, nil
	}
	return c.h.tagInfo(t), nil
}

// getBuildConfig resolves arches and extra through inheritance.
func (c *call) getBuildConfig() (any, error) {
	if err := c.arity(1, 2); err != nil {
		return nil, err
	}
	t := c.h.findTag(c.args[0])
	if t == nil {
		return nil, errNoSuch("tag", c.args[0])
	}
	info := c.h.tagInfo(t)
	extra := map[string]any{}
	inh := map[string]any{}
	var archesFrom any
	var chain []*tag
	for cur := t; cur != nil; cur = c.h.tags[cur.parent] {
		chain = append(chain, cur)
		if cur.parent == 0 {
			break
		}
	}
	for i := len(chain) - 1; i >= 0; i-- {
		for k, v := range chain[i].extra {
			extra[k] = v
			inh[k] = map[string]any{"id": chain[i].id, "name": chain[i].name}
		}
	}
	for _, cur := range chain {
		if cur.arches != "" {
			info["arches"] = cur.arches
			archesFrom = map[string]any{"id": cur.id, "name": cur.name}
			break
		}
	}
	info["extra"] = extra
	info["config_inheritance"] = map[string]any{"extra": inh, "arches": archesFrom}
	return info, nil
}

func (c *call) getBuildTarget() (any, error) {
	if err := c.arity(1, 3); err != nil {
		return nil, err
	}
	var tg *target
	for _, t := range c.h.targets {
		if id, ok := c.args[0].(int64); (ok && int(id) == t.id) || c.args[0] == t.name {
			tg = t
		}
	}
	if tg == nil {
		if c.opt(2, "strict") == true {
			return nil, errNoSuch("build target", c.args[0])
		}
		return nil, nil
	}
	return map[string]any{"id": tg.id, "name": tg.name, "build_tag": tg.buildTag, "build_tag_name": c.h.tags[tg.buildTag].name,
		"dest_tag": tg.dest, "dest_tag_name": c.h.tags[tg.dest].name}, nil
}

func (c *call) getRepo() (any, error) {
	if err := c.arity(1, 5); err != nil {
		return nil, err
	}
	t := c.h.findTag(c.args[0])
	if t == nil {
		return nil, errNoSuch("tag", c.args[0])
	}
	state := 1
	if v := c.opt(1, "state"); v != nil {
		state, _ = toInt(v, "state")
	}
	for i := len(c.h.repos) - 1; i >= 0; i-- {
		r := c.h.repos[i]
		if r.tag == t.id && r.state == state {
			return map[string]any{"id": r.id, "tag_id": t.id, "tag_name": t.name, "state": r.state, "dist": false,
				"create_event": r.event, "begin_event": r.event, "end_event": nil, "task_id": nil, "opts": map[string]any{}}, nil
		}
	}
	return nil, nil
}
