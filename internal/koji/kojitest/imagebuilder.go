package kojitest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// imageBuilderBuild is the koji-image-builder hub plugin's call:
// imageBuilderBuild(target, arches, types, name, version, opts=None,
// priority=None). It needs permission image, validates its arguments
// against the plugin's JSON schema (ParameterError with jsonschema's text)
// and makes a task in channel image, arch noarch, priority 20.
func (c *call) imageBuilderBuild() (any, error) {
	if _, err := c.user(); err != nil {
		return nil, err
	}
	if !c.hasPerm("image") {
		return nil, notAllowed("image permission required")
	}
	if len(c.args) > 7 {
		return nil, paramError("imageBuilderBuild() takes from 5 to 7 positional arguments but %d were given", len(c.args))
	}
	args := slices.Clone(c.args)
	if len(args) < 5 {
		return nil, pyError("TypeError", "imageBuilderBuild() missing %d required positional argument(s)", 5-len(args))
	}
	opts := c.opt(5, "opts")
	if opts == nil {
		opts = map[string]any{}
	}
	args = append(args[:5], opts)
	if msg := validateImageBuilderArgs(args); msg != "" {
		return nil, paramError("%s", msg)
	}
	if p := c.opt(6, "priority"); p != nil {
		n, err := toInt(p, "priority")
		if err != nil {
			return nil, err
		}
		if n < 0 && !c.hasPerm("admin") {
			return nil, notAllowed("only admins may create high-priority tasks")
		}
	}
	t := c.h.newTask(c.sess.user, "imageBuilderBuild", args, c.h.channels["image"], "noarch", 20, 0, "")
	c.commit = true
	return t.id, nil
}

// validateImageBuilderArgs checks args against IMAGE_BUILDER_BUILD_SCHEMA
// (draft 4) and returns the first error as python-jsonschema words it, or "".
func validateImageBuilderArgs(args []any) string {
	strT := map[string]any{"type": "string"}
	strList := map[string]any{"type": "array", "items": strT}
	items := []map[string]any{
		strT,
		strList,
		{"type": "array", "minItems": 1, "maxItems": 1, "items": strT},
		strT,
		strT,
		{"type": "object", "properties": map[string]any{
			"scratch": map[string]any{"type": "boolean"}, "repos": strList, "release": strT, "distro": strT,
			"skip_tag": map[string]any{"type": "boolean"},
			"ostree":   map[string]any{"type": "object", "properties": map[string]any{"parent": strT, "ref": strT, "url": strT}},
			"bootc": map[string]any{"type": "object", "properties": map[string]any{
				"ref": strT, "build-ref": strT, "installer-payload-ref": strT, "default-fs": strT}},
			"blueprint": map[string]any{"type": "object"}, "seed": map[string]any{"type": "integer"},
			"preview": map[string]any{"type": "boolean"}, "failable_arches": strList,
		}},
	}
	if len(args) < 6 {
		return fmt.Sprintf("%s is too short", pyRepr(args))
	}
	for i, it := range items {
		if msg := validateValue(args[i], it, fmt.Sprintf("[%d]", i)); msg != "" {
			return msg
		}
	}
	return ""
}

func validateValue(v any, schema map[string]any, where string) string {
	fail := func(kind, msg string) string {
		return fmt.Sprintf("%s\n\nFailed validating '%s' in schema\n\nOn instance%s:\n    %s", msg, kind, where, pyRepr(v))
	}
	switch schema["type"] {
	case "string":
		if _, ok := v.(string); !ok {
			return fail("type", fmt.Sprintf("%s is not of type 'string'", pyRepr(v)))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return fail("type", fmt.Sprintf("%s is not of type 'boolean'", pyRepr(v)))
		}
	case "integer":
		if _, ok := v.(int64); !ok {
			return fail("type", fmt.Sprintf("%s is not of type 'integer'", pyRepr(v)))
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return fail("type", fmt.Sprintf("%s is not of type 'array'", pyRepr(v)))
		}
		if n, ok := schema["minItems"].(int); ok && len(l) < n {
			return fail("minItems", fmt.Sprintf("%s is too short", pyRepr(v)))
		}
		if n, ok := schema["maxItems"].(int); ok && len(l) > n {
			return fail("maxItems", fmt.Sprintf("%s is too long", pyRepr(v)))
		}
		if it, ok := schema["items"].(map[string]any); ok {
			for i, x := range l {
				if msg := validateValue(x, it, fmt.Sprintf("%s[%d]", where, i)); msg != "" {
					return msg
				}
			}
		}
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return fail("type", fmt.Sprintf("%s is not of type 'object'", pyRepr(v)))
		}
		props, closed := schema["properties"].(map[string]any)
		if !closed {
			return ""
		}
		var extra []string
		for _, k := range sortedKeys(m) {
			if _, ok := props[k]; !ok {
				extra = append(extra, pyRepr(k))
			}
		}
		if len(extra) == 1 {
			return fail("additionalProperties", fmt.Sprintf("Additional properties are not allowed (%s was unexpected)", extra[0]))
		} else if len(extra) > 1 {
			return fail("additionalProperties", fmt.Sprintf("Additional properties are not allowed (%s were unexpected)", strings.Join(extra, ", ")))
		}
		for _, k := range sortedKeys(m) {
			if msg := validateValue(m[k], props[k].(map[string]any), fmt.Sprintf("%s['%s']", where, k)); msg != "" {
				return msg
			}
		}
	}
	return ""
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// TaskIDs returns the ids of the tasks of a method, in creation order.
func (h *Hub) TaskIDs(method string) []int {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []int
	for _, id := range sortedTaskIDs(h) {
		if h.tasks[id].method == method {
			out = append(out, id)
		}
	}
	return out
}

// listBuilds supports the filters taskID and state.
func (c *call) listBuilds() (any, error) {
	var taskID, state *int
	for k, dst := range map[string]**int{"taskID": &taskID, "state": &state} {
		if v, ok := c.kw[k]; ok && v != nil {
			n, err := toInt(v, k)
			if err != nil {
				return nil, err
			}
			*dst = &n
		}
	}
	ids := make([]int, 0, len(c.h.builds))
	for id := range c.h.builds {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	out := []any{}
	for _, id := range ids {
		b := c.h.builds[id]
		if (taskID != nil && b.taskID != *taskID) || (state != nil && b.state != *state) {
			continue
		}
		out = append(out, c.h.buildInfo(b))
	}
	return out, nil
}

// listRPMs supports imageID: the components of an image archive.
func (c *call) listRPMs() (any, error) {
	v, ok := c.kw["imageID"]
	if !ok {
		v = c.opt(2, "imageID")
	}
	id, err := toInt(v, "imageID")
	if err != nil {
		return nil, err
	}
	out := []any{}
	for _, r := range c.h.imageRPMs[id] {
		m := map[string]any{"external_repo_name": r["location"], "build_id": nil}
		for k, v := range r {
			if k != "location" {
				m[k] = v
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// ImageComponents returns the rpmlist entries linked to the archive named
// filename.
func (h *Hub) ImageComponents(filename string) []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range h.archives {
		if a.filename == filename {
			return h.imageRPMs[a.id]
		}
	}
	return nil
}
