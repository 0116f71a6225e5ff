package kojitest

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// The osbuildImage hub method of koji-osbuild's hub plugin: it needs the
// "image" permission, checks its seven arguments against the plugin's JSON
// schema (draft 4) and creates an osbuildImage task in the "image" channel,
// arch "noarch". A bad argument is a ParameterError carrying the text of
// Python jsonschema's ValidationError.

// schema is the subset of JSON Schema draft 4 the plugin's schema uses.
type schema struct {
	typ        string
	minItems   int
	maxItems   int // 0: no limit
	items      *schema
	tuple      []*schema // positional "items"
	oneOf      []*schema
	anyOf      []*schema
	required   []string
	properties map[string]*schema
	order      []string // property order, as the plugin declares them
	closed     bool     // additionalProperties: false
}

func strSchema() *schema { return &schema{typ: "string"} }

func strList() *schema { return &schema{typ: "array", items: strSchema()} }

func object(closed bool, required []string, props ...any) *schema {
	s := &schema{typ: "object", closed: closed, required: required, properties: map[string]*schema{}}
	for i := 0; i+1 < len(props); i += 2 {
		name := props[i].(string)
		s.properties[name] = props[i+1].(*schema)
		s.order = append(s.order, name)
	}
	return s
}

// osbuildImageSchema is the plugin's OSBUILD_IMAGE_SCHEMA: name, version,
// distro, image type (a string, or a deprecated one-element list), target,
// arches (at least one) and the options object.
var osbuildImageSchema = func() *schema {
	repo := object(true, []string{"baseurl"}, "baseurl", strSchema(), "package_sets", strList())
	ostree := object(true, nil, "parent", strSchema(), "ref", strSchema(), "url", strSchema())
	upload := &schema{anyOf: []*schema{
		object(true, []string{"region", "share_with_accounts"}, "region", strSchema(), "snapshot_name", strSchema(), "share_with_accounts", strList()),
		object(true, []string{"region"}, "region", strSchema()),
		object(true, []string{"region"}, "region", strSchema(), "bucket", strSchema(), "image_name", strSchema(), "share_with_accounts", strList()),
		object(true, []string{"tenant_id", "subscription_id", "resource_group"}, "tenant_id", strSchema(), "subscription_id", strSchema(),
			"resource_group", strSchema(), "location", strSchema(), "image_name", strSchema()),
		object(true, nil, "name", strSchema(), "tag", strSchema()),
	}}
	opts := object(true, nil,
		"customizations", object(false, nil),
		"ostree", ostree,
		"upload_options", upload,
		"repo", &schema{typ: "array", items: &schema{oneOf: []*schema{strSchema(), repo}}},
		"release", strSchema(),
		"skip_tag", &schema{typ: "boolean"},
	)
	return &schema{typ: "array", minItems: 7, tuple: []*schema{
		strSchema(), strSchema(), strSchema(),
		{oneOf: []*schema{strSchema(), {typ: "array", minItems: 1, maxItems: 1, items: strSchema()}}},
		strSchema(),
		{typ: "array", minItems: 1, items: strSchema()},
		opts,
	}}
}()

// schemaError is a jsonschema ValidationError: message, the failing
// keyword, and where in the instance it failed.
type schemaError struct {
	msg, validator string
	path           []any
	instance       any
}

func (e *schemaError) Error() string {
	var p strings.Builder
	for _, el := range e.path {
		p.WriteString("[" + pyRepr(el) + "]")
	}
	return fmt.Sprintf("%s\n\nFailed validating %s in schema\n\nOn instance%s:\n    %s", e.msg, pyRepr(e.validator), p.String(), pyRepr(e.instance))
}

func isType(v any, typ string) bool {
	switch typ {
	case "string":
		_, ok := v.(string)
		return ok
	case "array":
		_, ok := v.([]any)
		return ok
	case "object":
		_, ok := v.(map[string]any)
		return ok
	case "boolean":
		_, ok := v.(bool)
		return ok
	}
	return true
}

// validate returns the first error, in the order jsonschema checks a
// schema's keywords for these schemas.
func (s *schema) validate(v any, path []any) *schemaError {
	fail := func(validator, format string, a ...any) *schemaError {
		return &schemaError{msg: fmt.Sprintf(format, a...), validator: validator, path: slices.Clone(path), instance: v}
	}
	if s.anyOf != nil || s.oneOf != nil {
		alts, kw := s.anyOf, "anyOf"
		if s.oneOf != nil {
			alts, kw = s.oneOf, "oneOf"
		}
		n := 0
		for _, alt := range alts {
			if alt.validate(v, path) == nil {
				n++
			}
		}
		switch {
		case n == 0:
			return fail(kw, "%s is not valid under any of the given schemas", pyRepr(v))
		case n > 1 && kw == "oneOf":
			return fail(kw, "%s is valid under each of the given schemas", pyRepr(v))
		}
		return nil
	}
	if s.typ != "" && !isType(v, s.typ) {
		return fail("type", "%s is not of type %s", pyRepr(v), pyRepr(s.typ))
	}
	switch x := v.(type) {
	case []any:
		if s.tuple != nil {
			for i := 0; i < len(x) && i < len(s.tuple); i++ {
				if err := s.tuple[i].validate(x[i], append(path, i)); err != nil {
					return err
				}
			}
		}
		if s.items != nil {
			for i, el := range x {
				if err := s.items.validate(el, append(path, i)); err != nil {
					return err
				}
			}
		}
		if s.maxItems > 0 && len(x) > s.maxItems {
			return fail("maxItems", "%s is too long", pyRepr(v))
		}
		if len(x) < s.minItems {
			return fail("minItems", "%s is too short", pyRepr(v))
		}
	case map[string]any:
		for _, name := range s.order {
			if pv, ok := x[name]; ok {
				if err := s.properties[name].validate(pv, append(path, name)); err != nil {
					return err
				}
			}
		}
		if s.closed {
			var extra []string
			for k := range x {
				if _, ok := s.properties[k]; !ok {
					extra = append(extra, k)
				}
			}
			if len(extra) > 0 {
				sort.Strings(extra)
				quoted := make([]string, len(extra))
				for i, k := range extra {
					quoted[i] = pyRepr(k)
				}
				verb := "was"
				if len(extra) > 1 {
					verb = "were"
				}
				return fail("additionalProperties", "Additional properties are not allowed (%s %s unexpected)", strings.Join(quoted, ", "), verb)
			}
		}
		for _, r := range s.required {
			if _, ok := x[r]; !ok {
				return fail("required", "%s is a required property", pyRepr(r))
			}
		}
	}
	return nil
}

// pyRepr renders a decoded XML-RPC value as Python's repr would.
func pyRepr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		if strings.Contains(x, "'") && !strings.Contains(x, `"`) {
			return `"` + x + `"`
		}
		return "'" + strings.ReplaceAll(strings.ReplaceAll(x, `\`, `\\`), "'", `\'`) + "'"
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case []any:
		parts := make([]string, len(x))
		for i, el := range x {
			parts[i] = pyRepr(el)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = pyRepr(k) + ": " + pyRepr(x[k])
		}
		return "{" + strings.Join(parts, ", ") + "}"
	}
	return fmt.Sprint(v)
}

func init() {
	methods["osbuildImage"] = (*call).osbuildImage
}

// osbuildImage(name, version, distro, image_type, target, arches, opts=None, priority=None).
func (c *call) osbuildImage() (any, error) {
	u, err := c.user()
	if err != nil {
		return nil, err
	}
	if !c.hasPerm("image") {
		return nil, notAllowed("image permission required")
	}
	names := []string{"name", "version", "distro", "image_type", "target", "arches", "opts", "priority"}
	args := make([]any, 8)
	for i, n := range names {
		args[i] = c.opt(i, n)
	}
	// Koji's call_with_argcheck turns Python's TypeError for a bad call
	// into a ParameterError with its text.
	if len(c.args) > len(names) {
		return nil, paramError("osbuildImage() takes from 6 to 8 positional arguments but %d were given", len(c.args))
	}
	for k := range c.kw {
		if !slices.Contains(names, k) {
			return nil, paramError("osbuildImage() got an unexpected keyword argument '%s'", k)
		}
	}
	var missing []string
	for i := 0; i < 6; i++ {
		if _, ok := c.kw[names[i]]; i >= len(c.args) && !ok {
			missing = append(missing, "'"+names[i]+"'")
		}
	}
	if n := len(missing); n > 0 {
		list := missing[0]
		switch {
		case n == 2:
			list = missing[0] + " and " + missing[1]
		case n > 2:
			list = strings.Join(missing[:n-1], ", ") + ", and " + missing[n-1]
		}
		plural := "argument"
		if n > 1 {
			plural = "arguments"
		}
		return nil, paramError("osbuildImage() missing %d required positional %s: %s", n, plural, list)
	}
	req := args[:7]
	if e := osbuildImageSchema.validate(req, nil); e != nil {
		return nil, paramError("%s", e.Error())
	}
	if l, ok := req[3].([]any); ok {
		req[3] = l[0]
	}
	if p, ok := args[7].(int64); ok && p < 0 && !c.hasPerm("admin") {
		return nil, notAllowed("only admins may create high-priority tasks")
	}
	// The plugin checks priority but, as upstream, does not pass it on.
	t := c.h.newTask(u, "osbuildImage", slices.Clone(req), c.h.channels["image"], "noarch", 20, 0, "")
	c.commit = true
	return t.id, nil
}
