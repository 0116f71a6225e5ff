// Package aws publishes images as EC2 AMIs (the Cloud API's "aws" target):
// the image goes to a staging object in S3, EC2 imports it as a snapshot
// (ImportSnapshot, polled with DescribeImportSnapshotTasks), the snapshot is
// registered as an AMI with the image's boot mode (RegisterImage) and
// shared with the accounts the options name.
package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/kib-project/kib/internal/upload"
	"github.com/kib-project/kib/internal/upload/awss3"
)

// Config is the service side of the target. The zero value of each field
// means its default.
type Config struct {
	// S3 is where the image is staged for the import: its Bucket is
	// required, and its credentials and HTTP client are used for EC2 too.
	S3 awss3.Config
	// EC2Endpoint is the URL of the EC2 API. Default: AWS's endpoint of
	// the region.
	EC2Endpoint string
	// PollInterval is how often the import task and the new AMI are
	// checked. Default 15s.
	PollInterval time.Duration
	// KeepStaging keeps the staging object after the import. Default:
	// it is deleted.
	KeepStaging bool
}

// Options are the Cloud API's AWSEC2UploadOptions.
type Options struct {
	Region            string    `json:"region"`
	ShareWithAccounts *[]string `json:"share_with_accounts"`
	SnapshotName      string    `json:"snapshot_name,omitempty"`
}

// ParseOptions decodes and checks AWSEC2UploadOptions: unknown fields are
// refused; region and share_with_accounts (possibly empty) are required.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := decodeStrict(raw, &o); err != nil {
		return o, err
	}
	if o.Region == "" {
		return o, errors.New("region: required")
	}
	if o.ShareWithAccounts == nil {
		return o, errors.New("share_with_accounts: required (may be [])")
	}
	for i, a := range *o.ShareWithAccounts {
		if len(a) != 12 || strings.Trim(a, "0123456789") != "" {
			return o, fmt.Errorf("share_with_accounts[%d]: %q is not a 12-digit AWS account id", i, a)
		}
	}
	return o, nil
}

func decodeStrict(raw json.RawMessage, v any) error { return awss3.DecodeStrict(raw, v) }

// Uploader is the aws target. It is safe for concurrent use.
type Uploader struct {
	cfg Config
	s3  *awss3.Uploader
}

var _ upload.Uploader = (*Uploader)(nil)

// New returns the uploader of cfg; it does no I/O.
func New(cfg Config) (*Uploader, error) {
	s, err := awss3.New(cfg.S3)
	if err != nil {
		return nil, fmt.Errorf("aws: staging %w", err)
	}
	return &Uploader{cfg: cfg, s3: s}, nil
}

// BootMode is EC2's boot mode for a kib boot mode: hybrid images boot
// either way and prefer UEFI.
func BootMode(kib string) (types.BootModeValues, error) {
	switch kib {
	case "hybrid":
		return types.BootModeValuesUefiPreferred, nil
	case "uefi":
		return types.BootModeValuesUefi, nil
	case "legacy":
		return types.BootModeValuesLegacyBios, nil
	}
	return "", fmt.Errorf("boot mode %q: an AMI needs legacy, uefi or hybrid", kib)
}

func architecture(arch string) (types.ArchitectureValues, error) {
	switch arch {
	case "x86_64":
		return types.ArchitectureValuesX8664, nil
	case "aarch64":
		return types.ArchitectureValuesArm64, nil
	}
	return "", fmt.Errorf("architecture %q: EC2 takes x86_64 or aarch64", arch)
}

func diskFormat(name string) (string, error) {
	switch strings.ToLower(path.Ext(name)) {
	case ".raw", ".img":
		return "raw", nil
	case ".vhd":
		return "vhd", nil
	case ".vmdk":
		return "vmdk", nil
	}
	return "", fmt.Errorf("%s: EC2 imports raw, vhd or vmdk disks", name)
}

// Upload imports the artifact as an AMI and returns {"ami", "region"}.
func (u *Uploader) Upload(ctx context.Context, a upload.Artifact, options json.RawMessage, progress upload.Progress) (upload.Result, error) {
	o, err := ParseOptions(options)
	if err != nil {
		return upload.Result{}, err
	}
	bm, err := BootMode(a.BootMode)
	if err != nil {
		return upload.Result{}, err
	}
	arch, err := architecture(a.Arch)
	if err != nil {
		return upload.Result{}, err
	}
	format, err := diskFormat(a.Filename)
	if err != nil {
		return upload.Result{}, err
	}
	s3c, err := u.s3.Client(ctx, o.Region)
	if err != nil {
		return upload.Result{}, err
	}
	key := u.s3.Key(a)
	if err := u.s3.Put(ctx, s3c, a, key, false, progress); err != nil {
		return upload.Result{}, err
	}
	if !u.cfg.KeepStaging {
		defer func() { _ = u.s3.Delete(context.WithoutCancel(ctx), s3c, key) }()
	}
	c, err := u.client(ctx, o.Region)
	if err != nil {
		return upload.Result{}, err
	}
	name := o.SnapshotName
	if name == "" {
		name = strings.TrimSuffix(key[strings.LastIndex(key, "/")+1:], path.Ext(key))
	}
	snap, err := u.importSnapshot(ctx, c, key, format, name)
	if err != nil {
		return upload.Result{}, err
	}
	reg, err := c.RegisterImage(ctx, &ec2.RegisterImageInput{
		Name:               aws.String(name),
		Architecture:       arch,
		BootMode:           bm,
		EnaSupport:         aws.Bool(true),
		VirtualizationType: aws.String("hvm"),
		RootDeviceName:     aws.String("/dev/xvda"),
		BlockDeviceMappings: []types.BlockDeviceMapping{{
			DeviceName: aws.String("/dev/xvda"),
			Ebs:        &types.EbsBlockDevice{SnapshotId: aws.String(snap), DeleteOnTermination: aws.Bool(true), VolumeType: types.VolumeTypeGp3},
		}},
	})
	if err != nil {
		return upload.Result{}, fmt.Errorf("registering AMI %s from %s: %w", name, snap, err)
	}
	ami := aws.ToString(reg.ImageId)
	if err := u.waitImage(ctx, c, ami); err != nil {
		return upload.Result{}, err
	}
	if accts := *o.ShareWithAccounts; len(accts) > 0 {
		if err := share(ctx, c, ami, snap, accts); err != nil {
			return upload.Result{}, err
		}
	}
	return upload.Result{Type: upload.TargetAWS, Options: map[string]any{"ami": ami, "region": o.Region}}, nil
}

func (u *Uploader) client(ctx context.Context, region string) (*ec2.Client, error) {
	sc := u.cfg.S3
	ac, err := awss3.LoadAWS(ctx, awss3.Credentials{AccessKeyID: sc.AccessKeyID, SecretAccessKey: sc.SecretAccessKey, SessionToken: sc.SessionToken}, region, sc.Region, sc.HTTPClient)
	if err != nil {
		return nil, err
	}
	return ec2.NewFromConfig(ac, func(o *ec2.Options) {
		if u.cfg.EC2Endpoint != "" {
			o.BaseEndpoint = aws.String(u.cfg.EC2Endpoint)
		}
	}), nil
}

func (u *Uploader) poll() time.Duration {
	if u.cfg.PollInterval > 0 {
		return u.cfg.PollInterval
	}
	return 15 * time.Second
}

func (u *Uploader) sleep(ctx context.Context) error {
	t := time.NewTimer(u.poll())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// importSnapshot imports the staging object and waits for the snapshot.
func (u *Uploader) importSnapshot(ctx context.Context, c *ec2.Client, key, format, name string) (string, error) {
	out, err := c.ImportSnapshot(ctx, &ec2.ImportSnapshotInput{
		Description: aws.String(name),
		DiskContainer: &types.SnapshotDiskContainer{
			Format:     aws.String(format),
			UserBucket: &types.UserBucket{S3Bucket: aws.String(u.cfg.S3.Bucket), S3Key: aws.String(key)},
		},
		TagSpecifications: []types.TagSpecification{{
			ResourceType: types.ResourceTypeImportSnapshotTask,
			Tags:         []types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}},
		}},
	})
	if err != nil {
		return "", fmt.Errorf("importing s3://%s/%s as a snapshot: %w", u.cfg.S3.Bucket, key, err)
	}
	task := aws.ToString(out.ImportTaskId)
	for {
		if err := u.sleep(ctx); err != nil {
			return "", fmt.Errorf("waiting for import task %s: %w", task, err)
		}
		d, err := c.DescribeImportSnapshotTasks(ctx, &ec2.DescribeImportSnapshotTasksInput{ImportTaskIds: []string{task}})
		if err != nil {
			return "", fmt.Errorf("checking import task %s: %w", task, err)
		}
		if len(d.ImportSnapshotTasks) != 1 || d.ImportSnapshotTasks[0].SnapshotTaskDetail == nil {
			return "", fmt.Errorf("checking import task %s: EC2 does not know it", task)
		}
		det := d.ImportSnapshotTasks[0].SnapshotTaskDetail
		switch aws.ToString(det.Status) {
		case "completed":
			snap := aws.ToString(det.SnapshotId)
			if _, err := c.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{snap}, Tags: []types.Tag{{Key: aws.String("Name"), Value: aws.String(name)}}}); err != nil {
				return "", fmt.Errorf("naming snapshot %s: %w", snap, err)
			}
			return snap, nil
		case "deleted", "deleting":
			return "", fmt.Errorf("import task %s failed: %s", task, aws.ToString(det.StatusMessage))
		}
	}
}

// waitImage waits until the AMI is available.
func (u *Uploader) waitImage(ctx context.Context, c *ec2.Client, ami string) error {
	for {
		d, err := c.DescribeImages(ctx, &ec2.DescribeImagesInput{ImageIds: []string{ami}})
		if err != nil {
			return fmt.Errorf("checking AMI %s: %w", ami, err)
		}
		if len(d.Images) == 1 {
			switch d.Images[0].State {
			case types.ImageStateAvailable:
				return nil
			case types.ImageStateFailed, types.ImageStateError, types.ImageStateInvalid, types.ImageStateDeregistered:
				msg := ""
				if r := d.Images[0].StateReason; r != nil {
					msg = ": " + aws.ToString(r.Message)
				}
				return fmt.Errorf("AMI %s is %s%s", ami, d.Images[0].State, msg)
			}
		}
		if err := u.sleep(ctx); err != nil {
			return fmt.Errorf("waiting for AMI %s: %w", ami, err)
		}
	}
}

// share lets the accounts launch the AMI and create volumes from its
// snapshot.
func share(ctx context.Context, c *ec2.Client, ami, snap string, accounts []string) error {
	var snapPerm []types.CreateVolumePermission
	var launch []types.LaunchPermission
	for _, a := range accounts {
		snapPerm = append(snapPerm, types.CreateVolumePermission{UserId: aws.String(a)})
		launch = append(launch, types.LaunchPermission{UserId: aws.String(a)})
	}
	if _, err := c.ModifySnapshotAttribute(ctx, &ec2.ModifySnapshotAttributeInput{
		SnapshotId: aws.String(snap), Attribute: types.SnapshotAttributeNameCreateVolumePermission,
		CreateVolumePermission: &types.CreateVolumePermissionModifications{Add: snapPerm},
	}); err != nil {
		return fmt.Errorf("sharing snapshot %s with %s: %w", snap, strings.Join(accounts, ", "), err)
	}
	if _, err := c.ModifyImageAttribute(ctx, &ec2.ModifyImageAttributeInput{
		ImageId: aws.String(ami), LaunchPermission: &types.LaunchPermissionModifications{Add: launch},
	}); err != nil {
		return fmt.Errorf("sharing AMI %s with %s: %w", ami, strings.Join(accounts, ", "), err)
	}
	return nil
}
