package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kib-project/kib/internal/blueprint"
	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojiwatch"
)

// kojiWatchOptions are the flags shared by the commands that watch tasks.
type kojiWatchOptions struct {
	pollInterval time.Duration
	quiet        bool
}

func (o *kojiWatchOptions) bind(cmd *cobra.Command) {
	cmd.Flags().DurationVar(&o.pollInterval, "poll-interval", 6*time.Second, "time between polls of the task states")
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "print only failures")
}

// watch follows ids as koji watch-task does: state lines on stdout, a
// progress line on a terminal stderr.
func (o *kojiWatchOptions) watch(ctx context.Context, c *koji.Client, ids []int64, stdout, stderr io.Writer) error {
	wo := kojiwatch.Options{Interval: o.pollInterval, Out: stdout, Quiet: o.quiet}
	if isTerminal(stderr) && !o.quiet {
		wo.Progress = stderr
	}
	_, err := kojiwatch.Watch(ctx, c, ids, wo)
	return err
}

type kojiImageBuilderOptions struct {
	conn           kojiConnOptions
	watch          kojiWatchOptions
	arches         []string
	failableArches []string
	repos          []string
	release        string
	scratch        bool
	skipTag        bool
	nowait         bool
	distro         string
	blueprint      string
	seed           int64
	preview        bool
	noPreview      bool
	ostree         ostreeFlags
	priority       int
}

func newKojiImageBuilderBuildCmd() *cobra.Command {
	o := &kojiImageBuilderOptions{}
	cmd := &cobra.Command{
		Use:   "image-builder-build --server URL [auth flags] TARGET NAME VERSION TYPE... [flags]",
		Short: "Build images in Koji with the koji-image-builder hub plugin (imageBuilderBuild)",
		Long: `Create imageBuilderBuild tasks on the hub, as koji's image-builder-build command
(the koji-image-builder CLI plugin) does, and watch them until they finish.

The hub plugin takes one image type per task: with several TYPEs, one task is
created per type. Each task builds an image for every --arch (default: the
arches of the target's build tag), imports it as build NAME-VERSION-RELEASE
(RELEASE from --release or the hub's next release) and tags it into the
target's destination tag, unless --scratch or --skip-tag.

Debian images need Debian repositories: Koji's build tag repositories are RPM
repositories, so give --repo (repeatable; "$arch" is replaced by the arch) or a
--distro whose definition names its mirrors.

The command exits non-zero if a task fails, as koji's does.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKojiImageBuilderBuild(cmd, o, args)
		},
	}
	f := cmd.Flags()
	o.conn.bind(f)
	o.watch.bind(cmd)
	f.StringArrayVar(&o.arches, "arch", nil, "build only this architecture (repeatable)")
	f.StringArrayVar(&o.failableArches, "failable-arch", nil, "allow this architecture to fail without failing the task (repeatable)")
	f.StringArrayVar(&o.repos, "repo", nil, `repository to build from, "[trusted=yes] URL [SUITE [COMPONENT...]]" (repeatable)`)
	f.StringVar(&o.release, "release", "", "release of the build (default: the hub's next release)")
	f.BoolVar(&o.scratch, "scratch", false, "scratch build: no build is created and nothing is tagged")
	f.BoolVar(&o.skipTag, "skip-tag", false, "do not tag the build into the target's destination tag")
	f.BoolVar(&o.nowait, "nowait", false, "print the task ids and do not wait for the tasks")
	f.StringVar(&o.distro, "distro", "", "distro definition to build (default: the build host's)")
	f.StringVar(&o.blueprint, "blueprint", "", "blueprint file (JSON or TOML) with customizations")
	f.Int64Var(&o.seed, "seed", 0, "seed for every generated identifier (filesystem UUIDs, ...)")
	f.BoolVar(&o.preview, "preview", false, "mark the image as a preview (overrides the distro's default)")
	f.BoolVar(&o.noPreview, "no-preview", false, "mark the image as not a preview (overrides the distro's default)")
	o.ostree.bind(f)
	f.IntVar(&o.priority, "priority", 0, "task priority (negative values need admin)")
	return cmd
}

// taskOpts returns the opts struct of the hub plugin's schema.
func (o *kojiImageBuilderOptions) taskOpts(cmd *cobra.Command) (map[string]any, error) {
	opts := map[string]any{"scratch": o.scratch}
	if o.skipTag {
		opts["skip_tag"] = true
	}
	if len(o.repos) > 0 {
		opts["repos"] = toAnyList(o.repos)
	}
	if len(o.failableArches) > 0 {
		opts["failable_arches"] = toAnyList(o.failableArches)
	}
	if o.release != "" {
		opts["release"] = o.release
	}
	if o.distro != "" {
		opts["distro"] = o.distro
	}
	if cmd.Flags().Changed("seed") {
		opts["seed"] = o.seed
	}
	if o.preview && o.noPreview {
		return nil, errors.New("--preview and --no-preview: choose one")
	}
	if o.preview {
		opts["preview"] = true
	} else if o.noPreview {
		opts["preview"] = false
	}
	o.ostree.set(opts)
	if o.blueprint != "" {
		bp, err := readBlueprintObject(o.blueprint)
		if err != nil {
			return nil, err
		}
		opts["blueprint"] = bp
	}
	return opts, nil
}

// ostreeFlags are the --ostree-* flags of both CLI plugins.
type ostreeFlags struct{ url, ref, parent string }

func (o *ostreeFlags) bind(f *pflag.FlagSet) {
	f.StringVar(&o.parent, "ostree-parent", "", "OSTree commit parent (OSTree image types; $arch is substituted)")
	f.StringVar(&o.ref, "ostree-ref", "", "OSTree commit ref (OSTree image types; $arch is substituted)")
	f.StringVar(&o.url, "ostree-url", "", "URL of the OSTree repository (OSTree image types)")
}

// set sets opts.ostree from the flags given, as both hub plugins' schemas
// name them; it sets nothing when none is.
func (o *ostreeFlags) set(opts map[string]any) {
	ostree := map[string]any{}
	for k, v := range map[string]string{"parent": o.parent, "ref": o.ref, "url": o.url} {
		if v != "" {
			ostree[k] = v
		}
	}
	if len(ostree) > 0 {
		opts["ostree"] = ostree
	}
}

// readBlueprintObject reads a JSON or TOML blueprint, checks it as kib
// would build it, and returns it as the JSON object the task carries.
func readBlueprintObject(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--blueprint: %w", err)
	}
	if _, err := blueprint.Parse(bytes.NewReader(raw)); err != nil {
		return nil, fmt.Errorf("--blueprint %s: %w", path, err)
	}
	var m map[string]any
	if json.Valid(raw) {
		err = json.Unmarshal(raw, &m)
	} else {
		_, err = toml.Decode(string(raw), &m)
	}
	if err != nil {
		return nil, fmt.Errorf("--blueprint %s: %w", path, err)
	}
	return normalizeForXMLRPC(m).(map[string]any), nil
}

// normalizeForXMLRPC turns JSON numbers and TOML values into types the
// XML-RPC encoder takes.
func normalizeForXMLRPC(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = normalizeForXMLRPC(e)
		}
		return x
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalizeForXMLRPC(e)
		}
		return out
	case []any:
		for i, e := range x {
			x[i] = normalizeForXMLRPC(e)
		}
		return x
	case float64:
		if x == float64(int64(x)) {
			return int64(x)
		}
	}
	return v
}

func toAnyList(l []string) []any {
	out := make([]any, len(l))
	for i, s := range l {
		out[i] = s
	}
	return out
}

func runKojiImageBuilderBuild(cmd *cobra.Command, o *kojiImageBuilderOptions, args []string) error {
	ctx := cmd.Context()
	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	if len(args) < 4 {
		return fmt.Errorf("need TARGET NAME VERSION TYPE..., got %d argument(s)", len(args))
	}
	if err := o.conn.validate(); err != nil {
		return err
	}
	if o.conn.User == "" && o.conn.Cert == "" && o.conn.Principal == "" {
		return errors.New("image-builder-build needs a login: give --user, --cert or --principal/--keytab")
	}
	target, name, version, types := args[0], args[1], args[2], args[3:]
	opts, err := o.taskOpts(cmd)
	if err != nil {
		return err
	}
	c, err := o.conn.connect(ctx, stderr, koji.DefaultUploadChunkSize, 1)
	if err != nil {
		return err
	}
	defer c.Logout(context.WithoutCancel(ctx))
	if len(types) > 1 {
		fmt.Fprintf(stderr, "The hub's imageBuilderBuild takes one image type per task: creating %d tasks, one per type (%s).\n",
			len(types), strings.Join(types, ", "))
	}
	var ids []int64
	for _, typ := range types {
		call := []any{target, toAnyList(o.arches), []any{typ}, name, version, opts}
		if cmd.Flags().Changed("priority") {
			call = append(call, koji.Kwargs{"priority": o.priority})
		}
		var id int64
		if err := c.CallInto(ctx, &id, "imageBuilderBuild", call...); err != nil {
			return fmt.Errorf("imageBuilderBuild %s: %w", typ, err)
		}
		fmt.Fprintf(stdout, "Created task: %d (%s)\n", id, typ)
		ids = append(ids, id)
	}
	if o.nowait {
		return nil
	}
	return o.watch.watch(ctx, c, ids, stdout, stderr)
}

type kojiTaskOptions struct {
	conn  kojiConnOptions
	watch kojiWatchOptions
	dir   string
	logs  bool
	arch  []string
}

func parseTaskIDs(args []string) ([]int64, error) {
	ids := make([]int64, len(args))
	for i, a := range args {
		n, err := strconv.ParseInt(a, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("task id %q: must be a positive integer", a)
		}
		ids[i] = n
	}
	return ids, nil
}

func newKojiWatchTaskCmd() *cobra.Command {
	o := &kojiTaskOptions{}
	cmd := &cobra.Command{
		Use:   "watch-task --server URL TASK_ID...",
		Short: "Follow Koji tasks and their subtasks until they finish, as koji watch-task does",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseTaskIDs(args)
			if err != nil {
				return err
			}
			if err := o.conn.validate(); err != nil {
				return err
			}
			c, err := o.conn.connect(cmd.Context(), cmd.ErrOrStderr(), koji.DefaultUploadChunkSize, 1)
			if err != nil {
				return err
			}
			return o.watch.watch(cmd.Context(), c, ids, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.conn.bind(cmd.Flags())
	o.watch.bind(cmd)
	return cmd
}

func newKojiDownloadTaskCmd() *cobra.Command {
	o := &kojiTaskOptions{}
	cmd := &cobra.Command{
		Use:   "download-task --server URL TASK_ID",
		Short: "Download the output files of a Koji task and its subtasks",
		Long: `Download what a task and its subtasks uploaded (images, manifests, SBOMs) into
--dir, as koji download-task does. Logs are left out unless --logs is given;
they are saved as <name>.<arch>.log so the subtasks' logs do not collide.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := parseTaskIDs(args)
			if err != nil {
				return err
			}
			if err := o.conn.validate(); err != nil {
				return err
			}
			c, err := o.conn.connect(cmd.Context(), cmd.ErrOrStderr(), koji.DefaultUploadChunkSize, 1)
			if err != nil {
				return err
			}
			return downloadTask(cmd.Context(), c, ids[0], o, cmd.OutOrStdout())
		},
	}
	o.conn.bind(cmd.Flags())
	cmd.Flags().StringVar(&o.dir, "dir", ".", "directory to download into")
	cmd.Flags().BoolVar(&o.logs, "logs", false, "also download the *.log files")
	cmd.Flags().StringArrayVar(&o.arch, "arch", nil, "only the subtasks of this arch (repeatable)")
	return cmd
}

func downloadTask(ctx context.Context, c *koji.Client, id int64, o *kojiTaskOptions, stdout io.Writer) error {
	root, err := c.GetTaskInfo(ctx, id, false)
	if err != nil {
		return err
	}
	if root == nil {
		return fmt.Errorf("no such task: %d", id)
	}
	if root.State != koji.TaskClosed {
		return fmt.Errorf("task %d is not closed (state %d): only the output of a successful task is downloaded", id, root.State)
	}
	tasks := []koji.TaskInfo{*root}
	for i := 0; i < len(tasks); i++ {
		var children []koji.TaskInfo
		if err := c.CallInto(ctx, &children, "getTaskChildren", tasks[i].ID); err != nil {
			return err
		}
		tasks = append(tasks, children...)
	}
	type file struct {
		task       int64
		name, dest string
	}
	var files []file
	seen := map[string]bool{}
	for _, t := range tasks {
		if len(o.arch) > 0 && t.Arch != "noarch" && !containsString(o.arch, t.Arch) {
			continue
		}
		names, err := c.ListTaskOutput(ctx, t.ID)
		if err != nil {
			return err
		}
		for _, n := range names {
			dest := n
			if strings.HasSuffix(n, ".log") {
				if !o.logs {
					continue
				}
				dest = strings.TrimSuffix(n, ".log") + "." + t.Arch + ".log"
			}
			if seen[dest] {
				dest = fmt.Sprintf("%d.%s", t.ID, dest)
			}
			seen[dest] = true
			files = append(files, file{t.ID, n, dest})
		}
	}
	if len(files) == 0 {
		return fmt.Errorf("task %d and its subtasks have no files to download", id)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	for i, f := range files {
		fmt.Fprintf(stdout, "Downloading [%d/%d]: %s\n", i+1, len(files), f.dest)
		if err := downloadOne(ctx, c, f.task, f.name, filepath.Join(o.dir, f.dest)); err != nil {
			return err
		}
	}
	return nil
}

func downloadOne(ctx context.Context, c *koji.Client, task int64, name, dest string) error {
	tmp, err := os.CreateTemp(filepath.Dir(dest), "."+filepath.Base(dest)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := c.DownloadTaskOutput(ctx, task, name, tmp); err != nil {
		tmp.Close()
		return fmt.Errorf("downloading %s of task %d: %w", name, task, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dest)
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}
