// Package gcp uploads a GCE image (a gzip'd tarball holding disk.raw) to
// Google Cloud as composer's org.osbuild.gcp target does: it uploads the
// tarball to a Cloud Storage bucket, creates a Compute Engine image from
// it (images.insert, waiting on the global operation), shares the image
// with share_with_accounts through its IAM policy and deletes the staging
// object. The result is {"image_name", "project_id"}, as the Cloud API's
// GCPUploadStatus.
package gcp

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"cloud.google.com/go/auth"
	"cloud.google.com/go/auth/credentials"
	"github.com/google/uuid"
	"google.golang.org/api/option"

	"github.com/kib-project/kib/internal/upload"
)

// Config holds what the service or the CLI knows beyond the per-request
// upload_options. The zero value uses Application Default Credentials
// (GOOGLE_APPLICATION_CREDENTIALS, gcloud's credentials, the metadata
// server) and Google's public endpoints.
type Config struct {
	// CredentialsFile is a service account key file (composer's worker
	// credentials); empty means Application Default Credentials.
	CredentialsFile string
	// ProjectID overrides the project the credentials name.
	ProjectID string
	// Bucket receives the staging object when the request names none.
	Bucket string
	// StorageEndpoint and ComputeEndpoint override Google's endpoints,
	// e.g. http://127.0.0.1:4443/storage/v1/ for fake-gcs-server.
	StorageEndpoint string
	ComputeEndpoint string
	Logger          *slog.Logger
}

// Uploader uploads GCE images to Google Cloud. It is safe for concurrent use.
type Uploader struct {
	cfg   Config
	chunk int64 // the resumable upload's chunk; 0 means chunkSize
}

var _ upload.Uploader = (*Uploader)(nil)

// New returns an Uploader with cfg; it does no I/O.
func New(cfg Config) *Uploader {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Uploader{cfg: cfg}
}

// Options is the Cloud API's GCPUploadOptions.
type Options struct {
	Region            string   `json:"region"`
	Bucket            string   `json:"bucket,omitempty"`
	ImageName         string   `json:"image_name,omitempty"`
	ShareWithAccounts []string `json:"share_with_accounts,omitempty"`
}

// imageNameRE is Compute Engine's rule for resource names (RFC 1035).
var imageNameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

// memberPrefixes are the IAM member kinds an image can be shared with.
var memberPrefixes = []string{"user:", "serviceAccount:", "group:", "domain:"}

// ParseOptions decodes and checks GCPUploadOptions; errors name the field.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("gcp upload options: %w", err)
	}
	if strings.TrimSpace(o.Region) == "" {
		return o, fmt.Errorf("gcp upload options: region: required")
	}
	if o.ImageName != "" && !imageNameRE.MatchString(o.ImageName) {
		return o, fmt.Errorf("gcp upload options: image_name %q: must be 1-63 characters of lower-case letters, digits and hyphens, starting with a letter and not ending with a hyphen", o.ImageName)
	}
	for i, m := range o.ShareWithAccounts {
		ok := false
		for _, p := range memberPrefixes {
			if strings.HasPrefix(m, p) && len(m) > len(p) {
				ok = true
			}
		}
		if !ok {
			return o, fmt.Errorf("gcp upload options: share_with_accounts[%d] %q: must be user:EMAIL, serviceAccount:EMAIL, group:EMAIL or domain:DOMAIN", i, m)
		}
	}
	return o, nil
}

// GuestOSFeatures lists the guest OS features the image is created with.
// Composer picks them by distribution (nil for Debian); kib picks them by
// the image's boot mode: UEFI_COMPATIBLE for uefi and hybrid images (GCE
// then boots them with UEFI, Shielded VM included), and the multiqueue SCSI
// and gVNIC drivers every Debian kernel has.
func GuestOSFeatures(bootMode string) ([]string, error) {
	switch bootMode {
	case "uefi", "hybrid":
		return []string{"UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE", "GVNIC"}, nil
	case "legacy":
		return []string{"VIRTIO_SCSI_MULTIQUEUE", "GVNIC"}, nil
	default:
		return nil, fmt.Errorf("gcp: image boot mode %q is not bootable on Compute Engine (want legacy, uefi or hybrid)", bootMode)
	}
}

// checkArtifact refuses what Compute Engine cannot import: another image
// type than gce, or a file that is not a gzip'd tar whose first member is
// disk.raw.
func checkArtifact(a upload.Artifact) error {
	if a.ImageType != "gce" {
		return fmt.Errorf("gcp: image type %q cannot be uploaded to gcp: it takes a GCE tarball (image type gce)", a.ImageType)
	}
	f, err := os.Open(a.Path)
	if err != nil {
		return fmt.Errorf("gcp: %w", err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("gcp: %s is not a gzip'd tarball: %w", a.Path, err)
	}
	h, err := tar.NewReader(zr).Next()
	if err != nil {
		return fmt.Errorf("gcp: %s is not a gzip'd tarball: %w", a.Path, err)
	}
	if strings.TrimPrefix(h.Name, "./") != "disk.raw" {
		return fmt.Errorf("gcp: %s: the tarball's first member is %q; Compute Engine needs disk.raw", a.Path, h.Name)
	}
	return nil
}

const scope = "https://www.googleapis.com/auth/cloud-platform"

func (u *Uploader) credentials(ctx context.Context) (*auth.Credentials, string, error) {
	opts := &credentials.DetectOptions{Scopes: []string{scope}}
	if u.cfg.CredentialsFile != "" {
		b, err := os.ReadFile(u.cfg.CredentialsFile)
		if err != nil {
			return nil, "", fmt.Errorf("gcp: credentials: %w", err)
		}
		creds, err := credentialsFromJSON(b, opts)
		if err != nil {
			return nil, "", fmt.Errorf("gcp: credentials %s: %w", u.cfg.CredentialsFile, err)
		}
		return u.project(ctx, creds)
	}
	creds, err := credentials.DetectDefault(opts)
	if err != nil {
		return nil, "", fmt.Errorf("gcp: credentials: %w", err)
	}
	return u.project(ctx, creds)
}

// project returns creds with the project images go to: the configured
// one, else the credentials' own.
func (u *Uploader) project(ctx context.Context, creds *auth.Credentials) (*auth.Credentials, string, error) {
	project := u.cfg.ProjectID
	if project == "" {
		var err error
		if project, err = creds.ProjectID(ctx); err != nil {
			return nil, "", fmt.Errorf("gcp: project of the credentials: %w", err)
		}
	}
	if project == "" {
		return nil, "", errors.New("gcp: the credentials name no project; set the project id in kib.toml")
	}
	return creds, project, nil
}

// credentialsFromJSON reads a credentials file of a type kib accepts
// (the "type" field): a service account key, a user's, or workload identity
// federation. Other types are refused rather than trusted blindly.
func credentialsFromJSON(b []byte, opts *credentials.DetectOptions) (*auth.Credentials, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(b, &head); err != nil {
		return nil, fmt.Errorf("not a JSON credentials file: %w", err)
	}
	switch t := credentials.CredType(head.Type); t {
	case credentials.ServiceAccount, credentials.AuthorizedUser, credentials.ExternalAccount, credentials.ImpersonatedServiceAccount:
		return credentials.NewCredentialsFromJSON(t, b, opts)
	default:
		return nil, fmt.Errorf("type %q: must be service_account, authorized_user, external_account or impersonated_service_account", head.Type)
	}
}

// Upload uploads a (a GCE tarball) with the GCPUploadOptions in options.
func (u *Uploader) Upload(ctx context.Context, a upload.Artifact, options json.RawMessage, progress upload.Progress) (upload.Result, error) {
	o, err := ParseOptions(options)
	if err != nil {
		return upload.Result{}, err
	}
	if err := checkArtifact(a); err != nil {
		return upload.Result{}, err
	}
	features, err := GuestOSFeatures(a.BootMode)
	if err != nil {
		return upload.Result{}, err
	}
	bucket := o.Bucket
	if bucket == "" {
		bucket = u.cfg.Bucket
	}
	if bucket == "" {
		return upload.Result{}, errors.New("gcp upload options: bucket: required, as kib.toml names no default bucket")
	}
	imageName := o.ImageName
	if imageName == "" {
		imageName = "kib-" + uuid.NewString()
	}
	object := imageName + ".tar.gz"
	log := u.cfg.Logger.With("target", upload.TargetGCP, "image_name", imageName)

	creds, project, err := u.credentials(ctx)
	if err != nil {
		return upload.Result{}, err
	}
	authOpt := option.WithAuthCredentials(creds)

	log.Info("gcp: uploading the image", "bucket", bucket, "object", object)
	if err := u.uploadObject(ctx, creds, a, bucket, object, imageName, progress); err != nil {
		return upload.Result{}, fmt.Errorf("gcp: uploading %s to gs://%s/%s: %w", a.Path, bucket, object, cloudError(err))
	}

	c, err := u.newCompute(ctx, authOpt, project)
	if err != nil {
		return upload.Result{}, err
	}
	defer c.close()
	log.Info("gcp: importing the image into Compute Engine", "project", project, "guest_os_features", features)
	insertErr := c.insertImage(ctx, imageName, bucket, object, o.Region, features)
	// The staging object goes whether or not the import worked.
	if err := u.deleteObject(context.WithoutCancel(ctx), authOpt, bucket, object); err != nil {
		log.Error("gcp: deleting the staging object", "bucket", bucket, "object", object, "error", cloudError(err))
	}
	if insertErr != nil {
		return upload.Result{}, fmt.Errorf("gcp: creating image %q: %w", imageName, cloudError(insertErr))
	}
	if len(o.ShareWithAccounts) > 0 {
		log.Info("gcp: sharing the image", "with", o.ShareWithAccounts)
		if err := c.shareImage(ctx, imageName, o.ShareWithAccounts); err != nil {
			return upload.Result{}, fmt.Errorf("gcp: sharing image %q: %w", imageName, cloudError(err))
		}
	}
	return upload.Result{Type: upload.TargetGCP, Options: map[string]any{"image_name": imageName, "project_id": project}}, nil
}
