package main

import (
	"context"
	"fmt"

	"github.com/BurntSushi/toml"

	"github.com/kib-project/kib/internal/artifacts"
)

// artifactSettings is the [artifacts] table of kib.toml: how kib serve and
// kib worker reach the artifact store that `kib serve --artifacts
// s3://BUCKET/PREFIX` names, with the keys of [upload."aws.s3"]. Without
// the table the AWS SDK's defaults apply (AWS_ENDPOINT_URL_S3,
// AWS_ACCESS_KEY_ID, ~/.aws, an instance role).
//
//	[artifacts]
//	endpoint = "https://minio.example.org:9000"
//	region = "us-east-1"
//	access_key_id = "..."
//	secret_access_key = "..."
//	part_size_mib = 16
//	concurrency = 8
type artifactSettings struct {
	Endpoint        string `toml:"endpoint"`
	Region          string `toml:"region"`
	AccessKeyID     string `toml:"access_key_id"`
	SecretAccessKey string `toml:"secret_access_key"`
	PartSizeMiB     int64  `toml:"part_size_mib"`
	Concurrency     int    `toml:"concurrency"`
}

// readArtifactSettings reads the [artifacts] table of a kib.toml; unknown
// keys are errors.
func readArtifactSettings(path, stateDir string) (artifacts.Config, error) {
	var doc struct {
		Artifacts artifactSettings `toml:"artifacts"`
	}
	if path != "" {
		md, err := toml.DecodeFile(path, &doc)
		if err != nil {
			return artifacts.Config{}, fmt.Errorf("--config %s: %w", path, err)
		}
		for _, k := range md.Undecoded() {
			if len(k) > 0 && k[0] == "artifacts" {
				return artifacts.Config{}, fmt.Errorf("--config %s: %s: unknown setting (the [artifacts] table has endpoint, region, access_key_id, secret_access_key, part_size_mib, concurrency)", path, k)
			}
		}
	}
	s := doc.Artifacts
	if s.PartSizeMiB < 0 || s.Concurrency < 0 {
		return artifacts.Config{}, fmt.Errorf("--config %s: [artifacts] part_size_mib and concurrency: must not be negative", path)
	}
	if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
		return artifacts.Config{}, fmt.Errorf("--config %s: [artifacts] access_key_id and secret_access_key: give both or neither", path)
	}
	return artifacts.Config{
		Endpoint: s.Endpoint, Region: s.Region, AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey,
		PartSize: s.PartSizeMiB << 20, Concurrency: s.Concurrency, StateDir: stateDir + "/uploads",
	}, nil
}

// parseArtifactsFlag checks --artifacts before anything starts.
func parseArtifactsFlag(raw string) (artifacts.Location, error) {
	loc, err := artifacts.ParseURL(raw)
	if err != nil {
		return loc, fmt.Errorf("--artifacts %q: %w", raw, err)
	}
	return loc, nil
}

// openArtifactStore connects to the store of --artifacts and checks that
// its bucket is there.
func openArtifactStore(ctx context.Context, raw, config, stateDir string) (*artifacts.Store, error) {
	loc, err := parseArtifactsFlag(raw)
	if err != nil {
		return nil, err
	}
	cfg, err := readArtifactSettings(config, stateDir)
	if err != nil {
		return nil, err
	}
	st, err := artifacts.New(ctx, loc, cfg)
	if err != nil {
		return nil, fmt.Errorf("--artifacts %s: %w", raw, err)
	}
	if err := st.Check(ctx); err != nil {
		return nil, fmt.Errorf("--artifacts %s: %w", raw, err)
	}
	return st, nil
}
