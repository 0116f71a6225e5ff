package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojiwatch"
)

// kojiOSBuildImageOptions are the flags of `kib koji osbuild-image`, named
// as koji-osbuild's CLI plugin names them.
type kojiOSBuildImageOptions struct {
	conn           kojiConnOptions
	ImageTypes     []string
	repos          repoList
	Release        string
	SkipTag        bool
	NoWait, Wait   bool
	UploadOptions  string
	Customizations string
	ostree         ostreeFlags
	Quiet          bool
	Poll           time.Duration
}

// repoList is opts.repo as the plugin builds it: --repo appends a URL,
// --repo-package-sets turns the last one into {baseurl, package_sets}.
type repoList struct{ items []any }

type repoFlag struct{ l *repoList }

func (f repoFlag) String() string { return "" }
func (f repoFlag) Type() string   { return "URL" }
func (f repoFlag) Set(v string) error {
	if v == "" {
		return errors.New("a repository URL is required")
	}
	f.l.items = append(f.l.items, v)
	return nil
}

type packageSetsFlag struct{ l *repoList }

func (f packageSetsFlag) String() string { return "" }
func (f packageSetsFlag) Type() string   { return "SETS" }
func (f packageSetsFlag) Set(v string) error {
	n := len(f.l.items)
	if n == 0 {
		return errors.New("needs a --repo before it")
	}
	repo, ok := f.l.items[n-1].(map[string]any)
	if !ok {
		repo = map[string]any{"baseurl": f.l.items[n-1]}
	}
	sets := map[string]bool{}
	if old, ok := repo["package_sets"].([]any); ok {
		for _, s := range old {
			sets[s.(string)] = true
		}
	}
	for _, s := range strings.Split(v, ";") {
		if s = strings.TrimSpace(s); s != "" {
			sets[s] = true
		}
	}
	var list []string
	for s := range sets {
		list = append(list, s)
	}
	sort.Strings(list)
	ps := make([]any, len(list))
	for i, s := range list {
		ps[i] = s
	}
	repo["package_sets"] = ps
	f.l.items[n-1] = repo
	return nil
}

func newKojiOSBuildImageCmd() *cobra.Command {
	o := &kojiOSBuildImageOptions{}
	cmd := &cobra.Command{
		Use:   "osbuild-image --server URL [auth flags] NAME VERSION DISTRO TARGET ARCH... [flags]",
		Short: "Build an image in Koji with an osbuildImage task (koji osbuild-image)",
		Long: `Create an osbuildImage task on the hub (koji-osbuild's hub plugin, or kib's)
and watch it, like koji-osbuild's "koji osbuild-image". A build host running
kib kojid (or kojid with koji-osbuild's builder plugin) builds the image for
each ARCH, imports it as build NAME-VERSION-RELEASE and tags it into TARGET's
destination tag.`,
		Args: cobra.MinimumNArgs(5),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKojiOSBuildImage(cmd.Context(), o, args, cmd.OutOrStdout())
		},
	}
	fs := cmd.Flags()
	o.conn.bind(fs)
	fs.StringArrayVar(&o.ImageTypes, "image-type", nil, "image type to build (default guest-image); osbuildImage takes one per task")
	fs.Var(repoFlag{&o.repos}, "repo", "repository to install packages from instead of the build tag's repo (repeatable; $arch is substituted)")
	fs.Var(packageSetsFlag{&o.repos}, "repo-package-sets", "package sets of the last --repo, separated by ';' (repeatable)")
	fs.StringVar(&o.Release, "release", "", "release of the build (default: the hub's next release)")
	fs.BoolVar(&o.SkipTag, "skip-tag", false, "do not tag the build")
	fs.BoolVar(&o.NoWait, "nowait", false, "do not wait for the task")
	fs.BoolVar(&o.Wait, "wait", false, "wait for the task (the default)")
	fs.StringVar(&o.UploadOptions, "upload-options", "", "JSON file with the cloud upload options")
	fs.StringVar(&o.Customizations, "customizations", "", "JSON file with customizations passed to the compose")
	o.ostree.bind(fs)
	fs.BoolVar(&o.Quiet, "quiet", false, "print only the task id and the result")
	fs.DurationVar(&o.Poll, "poll", time.Second, "how often to check the task")
	return cmd
}

func readJSONObject(flag, path string) (map[string]any, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flag, err)
	}
	v, err := koji.DecodeJSON(data)
	m, ok := v.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("--%s: %s is not a JSON object: %v", flag, path, err)
	}
	return m, nil
}

// request builds the osbuildImage arguments from the flags.
func (o *kojiOSBuildImageOptions) request(args []string) ([]any, error) {
	if err := o.conn.validate(); err != nil {
		return nil, err
	}
	if o.NoWait && o.Wait {
		return nil, errors.New("--wait and --nowait: choose one")
	}
	imageType := "guest-image"
	switch len(o.ImageTypes) {
	case 0:
	case 1:
		imageType = o.ImageTypes[0]
	default:
		return nil, fmt.Errorf("--image-type given %d times: an osbuildImage task builds one image type (the hub plugin's schema); run once per type", len(o.ImageTypes))
	}
	for i, name := range []string{"NAME", "VERSION", "DISTRO", "TARGET"} {
		if args[i] == "" {
			return nil, fmt.Errorf("%s: must not be empty", name)
		}
	}
	opts := map[string]any{}
	if o.Release != "" {
		opts["release"] = o.Release
	}
	if len(o.repos.items) > 0 {
		opts["repo"] = slices.Clone(o.repos.items)
	}
	if o.SkipTag {
		opts["skip_tag"] = true
	}
	o.ostree.set(opts)
	if o.Customizations != "" {
		m, err := readJSONObject("customizations", o.Customizations)
		if err != nil {
			return nil, err
		}
		opts["customizations"] = m
	}
	if o.UploadOptions != "" {
		m, err := readJSONObject("upload-options", o.UploadOptions)
		if err != nil {
			return nil, err
		}
		opts["upload_options"] = m
	}
	return []any{args[0], args[1], args[2], imageType, args[3], toAnyList(args[4:]), opts}, nil
}

func runKojiOSBuildImage(ctx context.Context, o *kojiOSBuildImageOptions, args []string, stdout io.Writer) error {
	req, err := o.request(args)
	if err != nil {
		return err
	}
	c, err := o.conn.connect(ctx, os.Stderr, 0, 0)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	target, err := c.GetBuildTarget(ctx, args[3])
	if err != nil {
		return err
	}
	if target == nil {
		return fmt.Errorf("unknown build target: %s", args[3])
	}
	if tag, err := c.GetTag(ctx, target.DestTag); err != nil {
		return err
	} else if tag == nil {
		return fmt.Errorf("unknown destination tag: %s", target.DestTagName)
	}
	if !o.Quiet {
		opts, _ := json.MarshalIndent(req[6], "", "  ")
		fmt.Fprintf(stdout, "name: %s\nversion: %s\ndistro: %s\narches: %s\ntarget: %s\nimage type: %s\noptions: %s\n",
			args[0], args[1], args[2], strings.Join(args[4:], ", "), args[3], req[3], opts)
	}
	var id int64
	if err := c.CallInto(ctx, &id, "osbuildImage", req...); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Created task: %d\n", id)
	if o.NoWait {
		return nil
	}
	return watchOSBuildTask(ctx, c, id, o.Poll, o.Quiet, stdout)
}

// watchOSBuildTask follows the task and its tagBuild subtask with the
// shared watcher, then prints the task's result; a failed or canceled task
// is an error wrapping the hub's fault.
func watchOSBuildTask(ctx context.Context, c *koji.Client, id int64, poll time.Duration, quiet bool, stdout io.Writer) error {
	tasks, err := kojiwatch.Watch(ctx, c, []int64{id}, kojiwatch.Options{Interval: poll, Out: stdout, Quiet: quiet})
	if fe := (*kojiwatch.FailedError)(nil); errors.As(err, &fe) {
		t := tasks[id]
		if t.State == koji.TaskCanceled {
			return fmt.Errorf("task %d was canceled", id)
		}
		_, ferr := c.GetTaskResult(ctx, id)
		if ferr == nil {
			ferr = errors.New(t.Failure)
		}
		return fmt.Errorf("task %d failed: %w", id, ferr)
	}
	if err != nil {
		return err
	}
	res, err := c.GetTaskResult(ctx, id)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintf(stdout, "%s\n", out)
	return nil
}
