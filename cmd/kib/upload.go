package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/spf13/cobra"

	"github.com/kib-project/kib/internal/buildinfo"
	"github.com/kib-project/kib/internal/engine"
	"github.com/kib-project/kib/internal/progress"
	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/aws"
	"github.com/kib-project/kib/internal/upload/awss3"
	"github.com/kib-project/kib/internal/upload/azure"
	"github.com/kib-project/kib/internal/upload/container"
	"github.com/kib-project/kib/internal/upload/gcp"
)

// uploadSettings is the [upload] table of kib.toml: one sub-table per cloud
// target, with where images go and, optionally, credentials (otherwise
// each cloud SDK's default chain applies). A target without a table is not
// supported by this kib.
//
//	[upload.aws]             # bucket (staging), region, endpoint, ec2_endpoint, ...
//	[upload."aws.s3"]        # bucket, prefix, region, endpoint, ...
//	[upload.container]       # registry, ca_file, plain_http
//	[upload.azure]           # client_id, client_secret, storage_account, ...
//	[upload.gcp]             # credentials, project_id, bucket, ...
//
// docs/uploads-azure-gcp.md describes the azure and gcp keys.
type uploadSettings struct {
	AWS       *awsSettings       `toml:"aws"`
	AWSS3     *s3Settings        `toml:"aws.s3"`
	Container *containerSettings `toml:"container"`
	Azure     *azureSettings     `toml:"azure"`
	GCP       *gcpSettings       `toml:"gcp"`
}

type azureSettings struct {
	ClientID        string `toml:"client_id"`
	ClientSecret    string `toml:"client_secret"`
	StorageAccount  string `toml:"storage_account"`
	Container       string `toml:"container"`
	Parallel        int    `toml:"parallel"`
	ResourceManager string `toml:"resource_manager"`
	AuthorityHost   string `toml:"authority_host"`
	// CAFile is a PEM file of CAs trusted besides the system's (a private
	// ARM endpoint such as Azure Stack Hub's).
	CAFile          string `toml:"ca_file"`
	PollIntervalSec int    `toml:"poll_interval_seconds"`
}

func (s *azureSettings) config() (azure.Config, error) {
	cfg := azure.Config{
		ClientID: s.ClientID, ClientSecret: s.ClientSecret, StorageAccount: s.StorageAccount,
		Container: s.Container, Parallel: s.Parallel, ResourceManager: s.ResourceManager,
		AuthorityHost: s.AuthorityHost, PollFrequency: time.Duration(s.PollIntervalSec) * time.Second,
	}
	if (s.ClientID == "") != (s.ClientSecret == "") {
		return cfg, errors.New("client_id and client_secret: give both or neither")
	}
	if s.Parallel < 0 || s.PollIntervalSec < 0 {
		return cfg, errors.New("parallel and poll_interval_seconds: must not be negative")
	}
	if s.CAFile != "" {
		pem, err := os.ReadFile(s.CAFile)
		if err != nil {
			return cfg, fmt.Errorf("ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return cfg, fmt.Errorf("ca_file %s: no PEM certificate", s.CAFile)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		cfg.HTTPClient = &http.Client{Transport: tr}
	}
	return cfg, nil
}

type gcpSettings struct {
	Credentials     string `toml:"credentials"`
	ProjectID       string `toml:"project_id"`
	Bucket          string `toml:"bucket"`
	StorageEndpoint string `toml:"storage_endpoint"`
	ComputeEndpoint string `toml:"compute_endpoint"`
}

type s3Settings struct {
	Bucket          string `toml:"bucket"`
	Prefix          string `toml:"prefix"`
	Region          string `toml:"region"`
	Endpoint        string `toml:"endpoint"`
	AccessKeyID     string `toml:"access_key_id"`
	SecretAccessKey string `toml:"secret_access_key"`
	PartSizeMiB     int64  `toml:"part_size_mib"`
	Concurrency     int    `toml:"concurrency"`
	StateDir        string `toml:"state_dir"`
}

func (s *s3Settings) config() awss3.Config {
	return awss3.Config{
		Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, Endpoint: s.Endpoint,
		AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
		PartSize: s.PartSizeMiB << 20, Concurrency: s.Concurrency, StateDir: s.StateDir,
	}
}

type awsSettings struct {
	s3Settings
	EC2Endpoint     string `toml:"ec2_endpoint"`
	PollIntervalSec int    `toml:"poll_interval_seconds"`
}

type containerSettings struct {
	Registry  string `toml:"registry"`
	CAFile    string `toml:"ca_file"`
	PlainHTTP bool   `toml:"plain_http"`
}

// readUploadSettings reads the [upload] table of a kib.toml; "" or a file
// without the table means no targets.
func readUploadSettings(path string) (*uploadSettings, error) {
	var doc struct {
		Upload uploadSettings `toml:"upload"`
	}
	if path == "" {
		return &doc.Upload, nil
	}
	md, err := toml.DecodeFile(path, &doc)
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "upload" {
			return nil, fmt.Errorf("--config %s: %s: unknown setting", path, k)
		}
	}
	return &doc.Upload, nil
}

// uploaders makes the uploader of every configured target. This is where
// a target becomes supported: by the compose API (refused at POST
// otherwise) and by `kib upload`.
func (s *uploadSettings) uploaders() (upload.Uploaders, error) {
	u := upload.Uploaders{}
	if s.AWSS3 != nil {
		up, err := awss3.New(s.AWSS3.config())
		if err != nil {
			return nil, fmt.Errorf("[upload.\"aws.s3\"]: %w", err)
		}
		u[upload.TargetAWSS3] = up
	}
	if s.AWS != nil {
		up, err := aws.New(aws.Config{S3: s.AWS.config(), EC2Endpoint: s.AWS.EC2Endpoint, PollInterval: time.Duration(s.AWS.PollIntervalSec) * time.Second})
		if err != nil {
			return nil, fmt.Errorf("[upload.aws]: %w", err)
		}
		u[upload.TargetAWS] = up
	}
	if s.Container != nil {
		up, err := container.New(container.Config{Registry: s.Container.Registry, CAFile: s.Container.CAFile, PlainHTTP: s.Container.PlainHTTP})
		if err != nil {
			return nil, fmt.Errorf("[upload.container]: %w", err)
		}
		u[upload.TargetContainer] = up
	}
	if s.Azure != nil {
		cfg, err := s.Azure.config()
		if err != nil {
			return nil, fmt.Errorf("[upload.azure]: %w", err)
		}
		u[upload.TargetAzure] = azure.New(cfg)
	}
	if s.GCP != nil {
		if s.GCP.Credentials != "" && !fileExists(s.GCP.Credentials) {
			return nil, fmt.Errorf("[upload.gcp]: credentials %s: no such file", s.GCP.Credentials)
		}
		u[upload.TargetGCP] = gcp.New(gcp.Config{
			CredentialsFile: s.GCP.Credentials, ProjectID: s.GCP.ProjectID, Bucket: s.GCP.Bucket,
			StorageEndpoint: s.GCP.StorageEndpoint, ComputeEndpoint: s.GCP.ComputeEndpoint,
		})
	}
	return u, nil
}

type uploadOptions struct {
	config  string
	target  string
	options string
}

func newUploadCmd() *cobra.Command {
	var o uploadOptions
	cmd := &cobra.Command{
		Use:   "upload --target TARGET --options FILE [--config kib.toml] IMAGE",
		Short: "Upload an image kib built to its cloud (aws, aws.s3, container, ...)",
		Long: `Upload an image that 'kib build' made (the image file or its export directory,
with build-info.json beside it) to a cloud target. The target must fit the
image type (ami → aws, vhd → azure, gce → gcp, container → container,
other disks and archives → aws.s3). FILE holds the Cloud API's upload_options for the target, e.g.
{"region": "eu-west-1", "share_with_accounts": []} for aws. Where images go
(bucket, registry) comes from the [upload.<target>] table of --config;
credentials from each cloud's default chain. Prints the result as JSON.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.config, "config", defaultConfigPath(), "TOML configuration file with [upload.<target>] tables")
	f.StringVar(&o.target, "target", "", "upload target: aws, aws.s3, gcp, azure or container (default: the image type's)")
	f.StringVar(&o.options, "options", "", "JSON file with the target's upload_options (required)")
	return cmd
}

func defaultConfigPath() string {
	if p := "/etc/kib/kib.toml"; fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// readArtifact reads the image at path (file or export directory) with its
// build-info.json.
func readArtifact(path string) (upload.Artifact, error) {
	dir := path
	st, err := os.Stat(path)
	if err != nil {
		return upload.Artifact{}, err
	}
	if !st.IsDir() {
		dir = filepath.Dir(path)
	}
	bi, err := buildinfo.Read(filepath.Join(dir, "build-info.json"))
	if err != nil {
		return upload.Artifact{}, fmt.Errorf("%s: %w", path, err)
	}
	img := filepath.Join(dir, bi.ExportFilename)
	if !st.IsDir() && filepath.Base(path) != bi.ExportFilename {
		return upload.Artifact{}, fmt.Errorf("%s: build-info.json in %s describes %s", path, dir, bi.ExportFilename)
	}
	ist, err := os.Stat(img)
	if err != nil {
		return upload.Artifact{}, err
	}
	if ist.Size() != bi.Size {
		return upload.Artifact{}, fmt.Errorf("%s: %d bytes, build-info.json says %d", img, ist.Size(), bi.Size)
	}
	return upload.Artifact{
		Path: img, Filename: bi.ExportFilename, ImageType: bi.ImageType, Arch: bi.Arch,
		BootMode: bi.BootMode, SHA256: bi.SHA256, Size: bi.Size, Distro: bi.Distro,
	}, nil
}

func (o *uploadOptions) run(cmd *cobra.Command, path string) error {
	if o.options == "" {
		return errors.New("--options: required (a JSON file with the target's upload_options)")
	}
	raw, err := os.ReadFile(o.options)
	if err != nil {
		return fmt.Errorf("--options: %w", err)
	}
	if !json.Valid(raw) {
		return fmt.Errorf("--options %s: not valid JSON", o.options)
	}
	a, err := readArtifact(path)
	if err != nil {
		return err
	}
	target := o.target
	if target == "" {
		target = upload.TargetFor(a.ImageType)
	}
	if !upload.Allowed(a.ImageType, target) {
		return fmt.Errorf("--target %s: a %s image can be uploaded to %q only", target, a.ImageType, upload.TargetFor(a.ImageType))
	}
	settings, err := readUploadSettings(o.config)
	if err != nil {
		return err
	}
	ups, err := settings.uploaders()
	if err != nil {
		return err
	}
	up, err := ups.For(target)
	if err != nil {
		return fmt.Errorf("--target: %w (add an [upload.%q] table to --config)", err, target)
	}
	raw, err = containerDefaults(target, raw, a)
	if err != nil {
		return fmt.Errorf("--options %s: %w", o.options, err)
	}
	res, err := uploadWithProgress(cmd, up, a, json.RawMessage(raw), target)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(res, "", "  ")
	fmt.Fprintln(cmd.OutOrStdout(), string(out))
	return nil
}

// containerDefaults names a container after its distro when the options
// name none, as the compose service does.
func containerDefaults(target string, raw []byte, a upload.Artifact) ([]byte, error) {
	if target != upload.TargetContainer {
		return raw, nil
	}
	var o map[string]any
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	if o == nil {
		o = map[string]any{}
	}
	if o["name"] == nil || o["name"] == "" {
		o["name"] = a.Distro
	}
	return json.Marshal(o)
}

// uploadWithProgress runs one upload with a progress bar on a terminal and
// structured logs otherwise.
func uploadWithProgress(cmd *cobra.Command, up upload.Uploader, a upload.Artifact, opts json.RawMessage, target string) (upload.Result, error) {
	stderr := cmd.ErrOrStderr()
	var bar *progress.Bar
	var log *slog.Logger
	if isTerminal(stderr) {
		bar = progress.NewBar(stderr)
		bar.Step(1, 1, "upload to "+target)
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	log.Info("upload started", "target", target, "image", a.Path, "size", a.Size)
	start := time.Now()
	var last time.Time
	res, err := up.Upload(cmd.Context(), a, opts, func(sent, total int64) {
		if bar != nil {
			bar.Bytes(sent, total)
		} else if time.Since(last) >= 5*time.Second || sent == total {
			last = time.Now()
			log.Info("uploading", "target", target, "sent", sent, "total", total)
		}
	})
	if bar != nil {
		bar.Stop()
	}
	if err != nil {
		return res, fmt.Errorf("uploading %s to %s: %w", a.Path, target, err)
	}
	log.Info("upload finished", "target", target, "seconds", time.Since(start).Seconds())
	return res, nil
}

// afterBuild uploads the images `kib build` just made (those with a
// build-info.json) with --upload-options.
func (o *uploadOptions) afterBuild(cmd *cobra.Command, arts []engine.Artifact) error {
	n := 0
	for _, a := range arts {
		if a.Info == "" {
			continue
		}
		if err := o.run(cmd, a.Path); err != nil {
			return err
		}
		n++
	}
	if n == 0 {
		return errors.New("--upload-options: the build made no image with a build-info.json to upload")
	}
	return nil
}
