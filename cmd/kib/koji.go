package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kib-project/kib/internal/koji"
	"github.com/kib-project/kib/internal/kojiimport"
	"github.com/kib-project/kib/internal/kojimeta"
	"github.com/kib-project/kib/internal/redact"
)

func newKojiCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "koji",
		Short: "Import builds into Koji and talk to a Koji hub",
	}
	cmd.AddCommand(newKojiImportCmd(), newKojiCallCmd())
	cmd.AddCommand(newKojiImageBuilderBuildCmd(), newKojiWatchTaskCmd(), newKojiDownloadTaskCmd())
	cmd.AddCommand(newKojiOSBuildImageCmd())
	return cmd
}

// kojiConnOptions are the flags saying how to reach and log in to a hub.
type kojiConnOptions struct {
	Server       string
	User         string
	PasswordFile string
	Cert         string
	Key          string
	CA           string
	TLS13        bool
	Principal    string
	Keytab       string
	Krb5Conf     string
	Retries      int
	Verbose      bool
}

func (o *kojiConnOptions) bind(fs *pflag.FlagSet) { o.bindPrefixed(fs, "") }

// bindPrefixed binds the connection flags with prefix before each name
// ("koji-" for kib serve).
func (o *kojiConnOptions) bindPrefixed(fs *pflag.FlagSet, prefix string) {
	fs.StringVar(&o.Server, prefix+"server", "", "Koji hub URL, e.g. https://koji.example.com/kojihub (required)")
	fs.StringVar(&o.User, prefix+"user", "", "log in with this user name and a password (from --password-file or $KIB_KOJI_PASSWORD)")
	fs.StringVar(&o.PasswordFile, prefix+"password-file", "", "file holding the password for --user")
	fs.StringVar(&o.Cert, prefix+"cert", "", "log in with this client certificate (PEM; may also hold the key)")
	fs.StringVar(&o.Key, prefix+"key", "", "private key of --cert, if not in the same file")
	fs.StringVar(&o.CA, prefix+"ca", "", "CA certificates to trust for the hub (default: system roots)")
	fs.BoolVar(&o.TLS13, prefix+"tls13", false, "allow TLS 1.3 for certificate login (only if the hub asks for the certificate at connection time)")
	fs.StringVar(&o.Principal, prefix+"principal", "", "log in with Kerberos (GSSAPI) as this principal, e.g. kib/builder.example.com@EXAMPLE.COM")
	fs.StringVar(&o.Keytab, prefix+"keytab", "", "keytab of --principal")
	fs.StringVar(&o.Krb5Conf, prefix+"krb5-conf", "", "Kerberos configuration (default /etc/krb5.conf)")
	fs.IntVar(&o.Retries, prefix+"retries", 0, "retries after transport errors (default 30)")
	fs.BoolVar(&o.Verbose, prefix+"verbose", false, "log calls and retries to stderr")
}

func (o *kojiConnOptions) validate() error {
	if o.Server == "" {
		return errors.New("--server: a hub URL is required")
	}
	n := 0
	for _, set := range []bool{o.User != "", o.Cert != "", o.Principal != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return errors.New("--user, --cert and --principal: choose one way to log in")
	}
	if (o.Principal == "") != (o.Keytab == "") {
		return errors.New("--principal and --keytab go together")
	}
	return nil
}

// connect makes a client and logs in; anonymous when no credentials are
// given.
func (o *kojiConnOptions) connect(ctx context.Context, stderr io.Writer, chunk, parallel int) (*koji.Client, error) {
	// Uploads end with a size check only: CGImport has the hub verify the
	// sha256 of every output against the metadata, so a second whole-file
	// hash on the hub would only double its work.
	opts := koji.Options{Retry: koji.RetryPolicy{MaxRetries: o.Retries}, UploadChunkSize: chunk, UploadParallel: parallel}
	if o.Verbose {
		opts.Logger = slog.New(redact.Handler(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	if o.Cert != "" || o.CA != "" {
		cfg, err := koji.CertTLSConfig(o.Cert, o.Key, o.CA, o.TLS13)
		if err != nil {
			return nil, err
		}
		opts.TLSConfig = cfg
	}
	c, err := koji.New(o.Server, opts)
	if err != nil {
		return nil, err
	}
	switch {
	case o.User != "":
		pw := os.Getenv("KIB_KOJI_PASSWORD")
		if o.PasswordFile != "" {
			b, err := os.ReadFile(o.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("--password-file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		}
		if pw == "" {
			return nil, errors.New("--user: no password (give --password-file or set KIB_KOJI_PASSWORD)")
		}
		if err := c.Login(ctx, o.User, pw); err != nil {
			return nil, fmt.Errorf("logging in as %s: %w", o.User, err)
		}
	case o.Cert != "":
		if err := c.SSLLogin(ctx); err != nil {
			return nil, fmt.Errorf("logging in with certificate %s: %w", o.Cert, err)
		}
	case o.Principal != "":
		n, err := koji.NewKeytabNegotiator(o.Principal, o.Keytab, o.Krb5Conf)
		if err != nil {
			return nil, err
		}
		if err := c.GSSAPILogin(ctx, n); err != nil {
			return nil, fmt.Errorf("logging in as %s: %w", o.Principal, err)
		}
	}
	return c, nil
}

type kojiImportOptions struct {
	conn      kojiConnOptions
	Name      string
	Version   string
	Release   string
	CG        string
	TaskID    int64
	UploadDir string
	ChunkSize int
	Parallel  int
}

func newKojiImportCmd() *cobra.Command {
	o := &kojiImportOptions{}
	cmd := &cobra.Command{
		Use:   "import --server URL [auth flags] --name N --version V [--release R] IMAGE...",
		Short: "Import locally built images into Koji as a Content Generator build",
		Long: `Import images built by "kib build" into Koji as one Content Generator build.

Each IMAGE is an export directory OUTDIR/<export_name>/ (or the image file in
it) holding build-info.json, the image, <image>.manifest.json and, if present,
<image>.image-os.spdx.json. The build is reserved (CGInitBuild), the files are
uploaded to a fresh upload directory, and the build is imported (CGImport); on
failure the reservation is refunded. Without --release the hub's next release
is used.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKojiImport(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	fs := cmd.Flags()
	o.conn.bind(fs)
	fs.StringVar(&o.Name, "name", "", "build name (required)")
	fs.StringVar(&o.Version, "version", "", "build version (required)")
	fs.StringVar(&o.Release, "release", "", "build release (default: the hub's next release)")
	fs.StringVar(&o.CG, "cg", kojimeta.CGName, "content generator name")
	fs.Int64Var(&o.TaskID, "task-id", 0, "Koji task the build belongs to")
	fs.StringVar(&o.UploadDir, "upload-dir", "kib-import", "prefix of the fresh upload directory on the hub")
	fs.IntVar(&o.ChunkSize, "chunk-size", koji.DefaultUploadChunkSize, "upload chunk size in bytes")
	fs.IntVar(&o.Parallel, "parallel", 4, "files uploaded at once")
	return cmd
}

func (o *kojiImportOptions) validate() error {
	if err := o.conn.validate(); err != nil {
		return err
	}
	if o.conn.User == "" && o.conn.Cert == "" && o.conn.Principal == "" {
		return errors.New("import needs a login: give --user, --cert or --principal/--keytab")
	}
	if o.Name == "" || o.Version == "" {
		return errors.New("--name and --version are required")
	}
	if o.ChunkSize <= 0 || o.Parallel <= 0 {
		return errors.New("--chunk-size and --parallel must be positive")
	}
	return nil
}

func runKojiImport(ctx context.Context, o *kojiImportOptions, args []string, stdout, stderr io.Writer) (err error) {
	if err := o.validate(); err != nil {
		return err
	}
	start := time.Now()
	var images []*kojiimport.Image
	for _, a := range args {
		img, err := kojiimport.ReadImage(a)
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	c, err := o.conn.connect(ctx, stderr, o.ChunkSize, o.Parallel)
	if err != nil {
		return err
	}
	defer func() {
		if lerr := c.Logout(context.WithoutCancel(ctx)); lerr != nil && err == nil {
			fmt.Fprintln(stderr, "kib: koji logout:", lerr)
		}
	}()
	release := o.Release
	if release == "" {
		if release, err = c.GetNextRelease(ctx, o.Name, o.Version); err != nil {
			return fmt.Errorf("choosing the next release: %w", err)
		}
	}
	var mu sync.Mutex
	im := &kojiimport.Importer{Client: c, CG: o.CG, UploadDir: o.UploadDir, Progress: func(p koji.UploadProgress) {
		if p.Sent == p.Total {
			mu.Lock()
			fmt.Fprintf(stderr, "uploaded %s (%d bytes)\n", p.Name, p.Total)
			mu.Unlock()
		}
	}}
	nvr := koji.NVR{Name: o.Name, Version: o.Version, Release: release}
	res, err := im.Reserve(ctx, nvr)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			if rerr := im.Refund(context.WithoutCancel(ctx), res.BuildID, res.Token); rerr != nil {
				fmt.Fprintln(stderr, "kib:", rerr)
			}
		}
	}()
	b, err := im.Import(ctx, kojiimport.Build{NVR: nvr, BuildID: res.BuildID, Token: res.Token, TaskID: o.TaskID,
		Start: start, End: time.Now(), Images: images})
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "imported build %d %s-%s-%s (%d images)\n", b.ID, b.Name, b.Version, b.Release, len(images))
	return err
}

type kojiCallOptions struct {
	conn kojiConnOptions
}

var kwargPattern = regexp.MustCompile(`^([A-Za-z_][A-Za-z0-9_]*)=(.*)$`)

func newKojiCallCmd() *cobra.Command {
	o := &kojiCallOptions{}
	cmd := &cobra.Command{
		Use:   "call --server URL [auth flags] METHOD [ARG...] [NAME=VALUE...]",
		Short: "Call a hub method and print the result as JSON (for debugging)",
		Long: `Call a hub method and print the result as JSON.

Each ARG is parsed as JSON if it can be (123, true, null, "s", [..], {..}) and
is a string otherwise; NAME=VALUE arguments are keyword arguments.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runKojiCall(cmd.Context(), o, args, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	o.conn.bind(cmd.Flags())
	return cmd
}

// parseArg parses s as JSON if it is JSON (integers exactly, see
// koji.DecodeJSON), else keeps it a string. JSON with an integer XML-RPC
// cannot carry is an error rather than a rounded number.
func parseArg(s string) (any, error) {
	if !json.Valid([]byte(s)) {
		return s, nil
	}
	v, err := koji.DecodeJSON([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("argument %s: %w", s, err)
	}
	return v, nil
}

func runKojiCall(ctx context.Context, o *kojiCallOptions, args []string, stdout, stderr io.Writer) error {
	if err := o.conn.validate(); err != nil {
		return err
	}
	c, err := o.conn.connect(ctx, stderr, 0, 0)
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(context.WithoutCancel(ctx)) }()
	var params []any
	kw := koji.Kwargs{}
	for _, a := range args[1:] {
		if m := kwargPattern.FindStringSubmatch(a); m != nil {
			v, err := parseArg(m[2])
			if err != nil {
				return err
			}
			kw[m[1]] = v
			continue
		}
		v, err := parseArg(a)
		if err != nil {
			return err
		}
		params = append(params, v)
	}
	if len(kw) > 0 {
		params = append(params, kw)
	}
	v, err := c.Call(ctx, args[0], params...)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
