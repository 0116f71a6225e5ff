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
	args, err := c.pyArgs("imageBuilderBuild", []string{"target", "arches", "types", "name", "version", "opts", "priority"}, 5)
	if err != nil {
		return nil, err
	}
	priority := args[6]
	if args[5] == nil {
		args[5] = map[string]any{}
	}
	args = args[:6]
	if msg := validateImageBuilderArgs(args); msg != "" {
		return nil, paramError("%s", msg)
	}
	if priority != nil {
		n, err := toInt(priority, "priority")
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

// pyArgs binds the call's positional and keyword arguments to the
// parameters names of a hub function whose first required ones have no
// default, as Python does; a call Python would refuse is the
// ParameterError Koji's call_with_argcheck makes of the TypeError.
// Unset optional parameters are nil.
func (c *call) pyArgs(fn string, names []string, required int) ([]any, error) {
	if len(c.args) > len(names) {
		return nil, paramError("%s() takes from %d to %d positional arguments but %d were given", fn, required, len(names), len(c.args))
	}
	out := make([]any, len(names))
	copy(out, c.args)
	for _, k := range sortedKeys(c.kw) {
		i := slices.Index(names, k)
		switch {
		case i < 0:
			return nil, paramError("%s() got an unexpected keyword argument '%s'", fn, k)
		case i < len(c.args):
			return nil, paramError("%s() got multiple values for argument '%s'", fn, k)
		}
		out[i] = c.kw[k]
	}
	var missing []string
	for i := len(c.args); i < required; i++ {
		if _, ok := c.kw[names[i]]; !ok {
			missing = append(missing, "'"+names[i]+"'")
		}
	}
	switch n := len(missing); {
	case n == 1:
		return nil, paramError("%s() missing 1 required positional argument: %s", fn, missing[0])
	case n == 2:
		return nil, paramError("%s() missing 2 required positional arguments: %s and %s", fn, missing[0], missing[1])
	case n > 2:
		return nil, paramError("%s() missing %d required positional arguments: %s, and %s", fn, n, strings.Join(missing[:n-1], ", "), missing[n-1])
	}
	return out, nil
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

// getImageBuild is getImageBuild(buildInfo, strict=False): {build_id} when
// the build is an image build (host.initImageBuild, or a content generator
// import with typeinfo image), else None ("no such image build" if strict).
// Pungi reads it for the image paths of a non-scratch image task.
func (c *call) getImageBuild() (any, error) {
	if err := c.arity(1, 2); err != nil {
		return nil, err
	}
	strict, _ := c.opt(1, "strict").(bool)
	b := c.h.findBuild(c.args[0])
	if b == nil {
		if strict {
			return nil, errNoSuch("build", c.args[0])
		}
		return nil, nil
	}
	ti, _ := b.extra["typeinfo"].(map[string]any)
	if _, ok := ti["image"]; !b.image && !ok {
		if strict {
			return nil, generic("no such image build: %v", c.args[0])
		}
		return nil, nil
	}
	return map[string]any{"build_id": b.id}, nil
}
