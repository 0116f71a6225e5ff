// Package awss3 uploads images to an S3 bucket (the Cloud API's "aws.s3"
// target): a multipart upload of parallel parts that resumes after a cut,
// and a public or presigned URL of the object. Any S3-compatible store
// works (Config.Endpoint).
package awss3

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/kib-project/kib/internal/upload"
)

// Config is the service side of the target: where objects go and how kib
// reaches the store. The zero value of each field means its default.
type Config struct {
	// Bucket receives the objects. Required.
	Bucket string
	// Prefix is prepended to every object key (e.g. "images/"). Default "".
	Prefix string
	// Endpoint is the URL of an S3-compatible store (e.g.
	// http://127.0.0.1:9000); requests then use path-style addressing.
	// Default: AWS's endpoint of the region.
	Endpoint string
	// Region is used when the options name none (S3-compatible stores).
	// Default "us-east-1".
	Region string
	// AccessKeyID and SecretAccessKey, when set, replace the SDK's default
	// credential chain (environment, ~/.aws, instance role).
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// PartSize is the size of each part. Default 16 MiB (raised as needed
	// to stay within S3's 10,000 parts).
	PartSize int64
	// Concurrency is the number of parts in flight. Default 8.
	Concurrency int
	// StateDir keeps the state of unfinished uploads (upload id, parts
	// done), so that a cut upload resumes. Default: the user's cache
	// directory + "/kib/uploads".
	StateDir string
	// PresignExpiry is the lifetime of presigned URLs. Default 7 days, the
	// longest SigV4 allows.
	PresignExpiry time.Duration
	// HTTPClient sends the requests. Default: the SDK's.
	HTTPClient *http.Client
}

// Options are the Cloud API's AWSS3UploadOptions.
type Options struct {
	Region string `json:"region"`
	Public bool   `json:"public,omitempty"`
}

// ParseOptions decodes and checks AWSS3UploadOptions: unknown fields are
// refused and region is required.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := DecodeStrict(raw, &o); err != nil {
		return o, err
	}
	if o.Region == "" {
		return o, errors.New("region: required")
	}
	return o, nil
}

// DecodeStrict decodes upload options into v, refusing unknown fields; an
// empty input is {}.
func DecodeStrict(raw json.RawMessage, v any) error {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("upload options: %w", err)
	}
	return nil
}

// Uploader is the aws.s3 target. It is safe for concurrent use.
type Uploader struct {
	cfg Config
}

var _ upload.Uploader = (*Uploader)(nil)

// New returns the uploader of cfg; it does no I/O.
func New(cfg Config) (*Uploader, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("aws.s3: bucket: required")
	}
	if cfg.Endpoint != "" {
		if u, err := url.Parse(cfg.Endpoint); err != nil || u.Scheme == "" || u.Host == "" {
			return nil, fmt.Errorf("aws.s3: endpoint %q: must be an absolute URL", cfg.Endpoint)
		}
	}
	return &Uploader{cfg: cfg}, nil
}

// Config returns the configuration the uploader was made with.
func (u *Uploader) Config() Config { return u.cfg }

// Upload puts the artifact into the bucket and returns {"url": ...}: the
// object's URL when options ask for public, a presigned GET URL otherwise.
func (u *Uploader) Upload(ctx context.Context, a upload.Artifact, options json.RawMessage, progress upload.Progress) (upload.Result, error) {
	o, err := ParseOptions(options)
	if err != nil {
		return upload.Result{}, err
	}
	c, err := u.Client(ctx, o.Region)
	if err != nil {
		return upload.Result{}, err
	}
	key := u.Key(a)
	if err := u.Put(ctx, c, a, key, o.Public, progress); err != nil {
		return upload.Result{}, err
	}
	var link string
	if o.Public {
		link = ObjectURL(c, u.cfg.Bucket, key)
	} else {
		link, err = u.Presign(ctx, c, key)
		if err != nil {
			return upload.Result{}, err
		}
	}
	return upload.Result{Type: upload.TargetAWSS3, Options: map[string]any{"url": link}}, nil
}

// Key is the object key of an artifact: Prefix + the first 16 hex digits
// of its sha256 + "-" + its file name. The same image always gets the same
// key, which is what lets a cut upload resume.
func (u *Uploader) Key(a upload.Artifact) string {
	sum := a.SHA256
	if len(sum) > 16 {
		sum = sum[:16]
	}
	name := a.Filename
	if name == "" {
		name = "image"
	}
	return u.cfg.Prefix + "kib-" + sum + "-" + name
}

// Client returns an S3 client for region (Config.Region if empty).
func (u *Uploader) Client(ctx context.Context, region string) (*s3.Client, error) {
	ac, err := LoadAWS(ctx, Credentials{u.cfg.AccessKeyID, u.cfg.SecretAccessKey, u.cfg.SessionToken}, region, u.cfg.Region, u.cfg.HTTPClient)
	if err != nil {
		return nil, err
	}
	return s3.NewFromConfig(ac, func(o *s3.Options) {
		if u.cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(u.cfg.Endpoint)
			o.UsePathStyle = true
		}
		// Checksums only where S3 requires them: the SigV4 payload hash
		// already protects each part, and S3-compatible stores differ in
		// which flexible checksums they know.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// Credentials are static AWS credentials; empty means the SDK's default
// chain.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// LoadAWS loads the SDK configuration: region (or fallback, or us-east-1),
// static credentials when given, the SDK's default chain otherwise.
func LoadAWS(ctx context.Context, cr Credentials, region, fallback string, hc *http.Client) (aws.Config, error) {
	if region == "" {
		region = fallback
	}
	if region == "" {
		region = "us-east-1"
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(region)}
	if cr.AccessKeyID != "" || cr.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cr.AccessKeyID, cr.SecretAccessKey, cr.SessionToken)))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if hc != nil {
		// Set after loading: a CA bundle of the shared config applies to
		// the SDK's own client only.
		ac.HTTPClient = hc
	}
	return ac, nil
}

// ObjectURL is the plain (virtual-hosted or, with a custom endpoint,
// path-style) URL of an object.
func ObjectURL(c *s3.Client, bucket, key string) string {
	o := c.Options()
	esc := (&url.URL{Path: key}).EscapedPath()
	if o.BaseEndpoint != nil {
		return strings.TrimRight(*o.BaseEndpoint, "/") + "/" + bucket + "/" + esc
	}
	return "https://" + bucket + ".s3." + o.Region + ".amazonaws.com/" + esc
}

// Presign returns a GET URL of the object valid for Config.PresignExpiry.
func (u *Uploader) Presign(ctx context.Context, c *s3.Client, key string) (string, error) {
	exp := u.cfg.PresignExpiry
	if exp <= 0 {
		exp = 7 * 24 * time.Hour
	}
	req, err := s3.NewPresignClient(c, s3.WithPresignExpires(exp)).PresignGetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(u.cfg.Bucket), Key: aws.String(key),
	})
	if err != nil {
		return "", fmt.Errorf("presigning s3://%s/%s: %w", u.cfg.Bucket, key, err)
	}
	return req.URL, nil
}

// Delete removes an object (the aws target's staging copy).
func (u *Uploader) Delete(ctx context.Context, c *s3.Client, key string) error {
	_, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(u.cfg.Bucket), Key: aws.String(key)})
	if err != nil {
		return fmt.Errorf("deleting s3://%s/%s: %w", u.cfg.Bucket, key, err)
	}
	return nil
}
