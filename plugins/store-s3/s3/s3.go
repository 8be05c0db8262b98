// Package s3 is SoulPad's store plugin for any object store that speaks
// the S3 API (AWS S3, Ceph RGW, MinIO, SeaweedFS, Garage), through
// minio-go. A pad called NAME lives under PREFIX/NAME/ in the bucket:
//
//	lease.json              who has it checked out (created with If-None-Match: *)
//	versions/%020d.json     one manifest per version (created with If-None-Match: *)
//	chunks/SHA256           content-addressed chunks of the locked pad
package s3

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// Version of the plugin.
const Version = "0.1.0"

// Config is the plugin's block in site.hcl.
type Config struct {
	// Endpoint is host:port of the S3 service.
	Endpoint string `json:"endpoint"`
	// Secure uses HTTPS (default true).
	Secure *bool  `json:"secure"`
	Region string `json:"region"`
	Bucket string `json:"bucket"`
	// Prefix goes before every key (e.g. "soulpad/").
	Prefix string `json:"prefix"`
	// AccessKey and SecretKeyFile are the credentials. Required, unless
	// Anonymous says the bucket takes requests without any (a public test
	// server): a plugin is never given soulpad's environment, so there is
	// no silent fallback to AWS_* variables.
	AccessKey     string `json:"access_key"`
	SecretKeyFile string `json:"secret_key_file"`
	Anonymous     bool   `json:"anonymous"`
	// Parallel is how many chunks move at once (default 8).
	Parallel int `json:"parallel"`
}

// Plugin is store-s3.
type Plugin struct {
	mu  sync.Mutex
	cfg Config
	c   *minio.Client
	// probed: the server was seen to refuse a second create-only write.
	probed bool
}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

var _ store.Store = (*Plugin)(nil)

// Info implements sdk.Plugin.
func (p *Plugin) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "store-s3", Kind: sdk.KindStore, Version: Version, APIVersions: []int{store.APIVersion},
		Description: "versions of the locked pad on an S3 object store (AWS S3, Ceph RGW, MinIO, SeaweedFS, Garage): lease, chunks, manifests"}, nil
}

// Configure implements sdk.Plugin.
func (p *Plugin) Configure(_ context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	var c Config
	if err := req.Decode(&c); err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: %w", err)
	}
	// Relative paths are the site config's (the plugin's working directory).
	c.SecretKeyFile = sdk.ConfigPath(c.SecretKeyFile)
	if c.Endpoint == "" || c.Bucket == "" {
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: endpoint and bucket must be set (e.g. endpoint = \"s3.example.org\", bucket = \"soulpad\"): %w", sdk.ErrInvalidConfig)
	}
	if c.Parallel <= 0 {
		c.Parallel = 8
	}
	if c.Parallel > 64 {
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: parallel = %d: at most 64: %w", c.Parallel, sdk.ErrInvalidConfig)
	}
	secure := c.Secure == nil || *c.Secure
	creds := credentials.NewStatic("", "", "", credentials.SignatureAnonymous)
	switch {
	case c.AccessKey != "" || c.SecretKeyFile != "":
		if c.AccessKey == "" || c.SecretKeyFile == "" {
			return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: access_key and secret_key_file go together: %w", sdk.ErrInvalidConfig)
		}
		secret, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: secret_key_file: %v: %w", err, sdk.ErrInvalidConfig)
		}
		creds = credentials.NewStaticV4(c.AccessKey, strings.TrimSpace(string(secret)), "")
	case !c.Anonymous:
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: no credentials: set access_key and secret_key_file (a key scoped to this bucket and prefix), or anonymous = true for a bucket that takes anonymous requests: %w", sdk.ErrInvalidConfig)
	}
	cl, err := minio.New(c.Endpoint, &minio.Options{Creds: creds, Secure: secure, Region: c.Region})
	if err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: endpoint %q: %v: %w", c.Endpoint, err, sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg, p.c, p.probed = c, cl, false
	p.mu.Unlock()
	return sdk.ConfigureResponse{}, nil
}

func (p *Plugin) client(name string) (*minio.Client, Config, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.c == nil {
		return nil, Config{}, fmt.Errorf("store-s3: not configured: %w", sdk.ErrInvalidConfig)
	}
	if !store.ValidName(name) {
		return nil, Config{}, fmt.Errorf("store-s3: %q cannot name a pad on the store (lower-case letters, digits, '.', '_', '-'): %w", name, sdk.ErrInvalidArgument)
	}
	return p.c, p.cfg, nil
}

func (c Config) key(name string, parts ...string) string {
	return c.Prefix + path.Join(append([]string{name}, parts...)...)
}

// wrap turns S3 answers into the SDK's errors.
func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	r := minio.ToErrorResponse(err)
	switch {
	case r.StatusCode == http.StatusNotFound || r.Code == "NoSuchKey" || r.Code == "NoSuchBucket":
		return fmt.Errorf("store-s3: %s: %s: %w", op, describe(err), sdk.ErrNotFound)
	case r.StatusCode == http.StatusPreconditionFailed || r.Code == "PreconditionFailed":
		return fmt.Errorf("store-s3: %s: %s: %w", op, describe(err), sdk.ErrAlreadyExists)
	}
	return fmt.Errorf("store-s3: %s: %s", op, describe(err))
}

func describe(err error) string {
	r := minio.ToErrorResponse(err)
	if r.Message != "" {
		return r.Message
	}
	return err.Error()
}

// Versions implements store.Store.
func (p *Plugin) Versions(ctx context.Context, r store.VersionsRequest) (store.VersionsResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.VersionsResponse{}, err
	}
	var out store.VersionsResponse
	prefix := cfg.key(r.Name, "versions") + "/"
	for obj := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return store.VersionsResponse{}, wrap("list versions", obj.Err)
		}
		base := strings.TrimSuffix(strings.TrimPrefix(obj.Key, prefix), ".json")
		seq, err := strconv.ParseUint(base, 10, 64)
		if err != nil || len(base) != 20 {
			continue // not one of ours
		}
		out.Versions = append(out.Versions, store.Version{Seq: seq, Created: obj.LastModified.UTC(), ManifestBytes: uint64(obj.Size)})
	}
	sort.Slice(out.Versions, func(i, j int) bool { return out.Versions[i].Seq < out.Versions[j].Seq })
	return out, nil
}

func versionKey(cfg Config, name string, seq uint64) string {
	return cfg.key(name, "versions", fmt.Sprintf("%020d.json", seq))
}

// maxManifest bounds a manifest (a 1 TiB pad in 1 MiB chunks is about
// 70 MiB of JSON).
const maxManifest = 256 << 20

// GetVersion implements store.Store.
func (p *Plugin) GetVersion(ctx context.Context, r store.GetVersionRequest) (store.GetVersionResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.GetVersionResponse{}, err
	}
	b, err := getAll(ctx, c, cfg.Bucket, versionKey(cfg, r.Name, r.Seq), maxManifest)
	return store.GetVersionResponse{Manifest: b}, err
}

// PutVersion implements store.Store.
func (p *Plugin) PutVersion(ctx context.Context, r store.PutVersionRequest) (store.PutVersionResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.PutVersionResponse{}, err
	}
	held, _, err := p.readLease(ctx, c, cfg, r.Name)
	if err != nil {
		return store.PutVersionResponse{}, err
	}
	if held == nil || held.Released || held.Holder != r.Holder {
		if held == nil || held.Released {
			return store.PutVersionResponse{}, fmt.Errorf("store-s3: %s is not checked out; a version needs the lease: %w", r.Name, sdk.ErrBusy)
		}
		return store.PutVersionResponse{}, busy(r.Name, &held.Lease)
	}
	return store.PutVersionResponse{}, putNew(ctx, c, cfg.Bucket, versionKey(cfg, r.Name, r.Seq), r.Manifest)
}

func (p *Plugin) chunkKeys(ctx context.Context, c *minio.Client, cfg Config, name string) (map[string]bool, error) {
	have := map[string]bool{}
	prefix := cfg.key(name, "chunks") + "/"
	for obj := range c.ListObjects(ctx, cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return nil, wrap("list chunks", obj.Err)
		}
		if s := strings.TrimPrefix(obj.Key, prefix); store.ValidSum(s) {
			have[s] = true
		}
	}
	return have, nil
}

// Missing implements store.Store.
func (p *Plugin) Missing(ctx context.Context, r store.MissingRequest) (store.MissingResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.MissingResponse{}, err
	}
	have, err := p.chunkKeys(ctx, c, cfg, r.Name)
	if err != nil {
		return store.MissingResponse{}, err
	}
	var out store.MissingResponse
	seen := map[string]bool{}
	for _, s := range r.Sums {
		if !have[s] && !seen[s] {
			seen[s] = true
			out.Sums = append(out.Sums, s)
		}
	}
	return out, nil
}

// Chunks implements store.Store.
func (p *Plugin) Chunks(ctx context.Context, r store.ChunksRequest) (store.ChunksResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.ChunksResponse{}, err
	}
	have, err := p.chunkKeys(ctx, c, cfg, r.Name)
	if err != nil {
		return store.ChunksResponse{}, err
	}
	var out store.ChunksResponse
	for s := range have {
		out.Sums = append(out.Sums, s)
	}
	sort.Strings(out.Sums)
	return out, nil
}

// Delete implements store.Store.
func (p *Plugin) Delete(ctx context.Context, r store.DeleteRequest) (store.DeleteResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.DeleteResponse{}, err
	}
	for _, v := range r.Versions {
		if err := c.RemoveObject(ctx, cfg.Bucket, versionKey(cfg, r.Name, v), minio.RemoveObjectOptions{}); err != nil {
			return store.DeleteResponse{}, wrap("delete a version", err)
		}
	}
	err = p.each(ctx, cfg.Parallel, len(r.Sums), func(i int) error {
		if !store.ValidSum(r.Sums[i]) {
			return fmt.Errorf("store-s3: %q is not a chunk name: %w", r.Sums[i], sdk.ErrInvalidArgument)
		}
		return wrap("delete a chunk", c.RemoveObject(ctx, cfg.Bucket, cfg.key(r.Name, "chunks", r.Sums[i]), minio.RemoveObjectOptions{}))
	})
	return store.DeleteResponse{}, err
}
