// Package s3 is SoulPad's store plugin for any object store that speaks
// the S3 API (AWS S3, Ceph RGW, MinIO, SeaweedFS, Garage), through
// minio-go. A pad called NAME lives under PREFIX/NAME/ in the bucket:
//
//	lease.json              who has it checked out (created with If-None-Match: *)
//	versions/%020d.json     one manifest per version (created with If-None-Match: *)
//	chunks/SHA256           content-addressed chunks of the locked pad
package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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
	// AccessKey and SecretKeyFile are the credentials; without them the
	// AWS environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) is used.
	AccessKey     string `json:"access_key"`
	SecretKeyFile string `json:"secret_key_file"`
	// Parallel is how many chunks move at once (default 8).
	Parallel int `json:"parallel"`
}

// Plugin is store-s3.
type Plugin struct {
	mu  sync.Mutex
	cfg Config
	c   *minio.Client
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
	var creds *credentials.Credentials
	if c.AccessKey != "" || c.SecretKeyFile != "" {
		if c.AccessKey == "" || c.SecretKeyFile == "" {
			return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: access_key and secret_key_file go together: %w", sdk.ErrInvalidConfig)
		}
		secret, err := os.ReadFile(c.SecretKeyFile)
		if err != nil {
			return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: secret_key_file: %v: %w", err, sdk.ErrInvalidConfig)
		}
		creds = credentials.NewStaticV4(c.AccessKey, strings.TrimSpace(string(secret)), "")
	} else {
		creds = credentials.NewEnvAWS()
	}
	cl, err := minio.New(c.Endpoint, &minio.Options{Creds: creds, Secure: secure, Region: c.Region})
	if err != nil {
		return sdk.ConfigureResponse{}, fmt.Errorf("store-s3: endpoint %q: %v: %w", c.Endpoint, err, sdk.ErrInvalidConfig)
	}
	p.mu.Lock()
	p.cfg, p.c = c, cl
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

func (p *Plugin) readLease(ctx context.Context, c *minio.Client, cfg Config, name string) (*store.Lease, error) {
	b, err := getAll(ctx, c, cfg.Bucket, cfg.key(name, "lease.json"), 1<<16)
	if errors.Is(err, sdk.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var l store.Lease
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("store-s3: the lease of %s is not readable (%v): break it with `soulpad store break-lease`: %w", name, err, sdk.ErrCorrupt)
	}
	return &l, nil
}

// getAll reads a small object whole (at most limit bytes).
func getAll(ctx context.Context, c *minio.Client, bucket, key string, limit int64) ([]byte, error) {
	obj, err := c.GetObject(ctx, bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, wrap("get "+key, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(io.LimitReader(obj, limit+1))
	if err != nil {
		return nil, wrap("get "+key, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("store-s3: %s is larger than %d bytes: %w", key, limit, sdk.ErrCorrupt)
	}
	return b, nil
}

func putNew(ctx context.Context, c *minio.Client, bucket, key string, b []byte) error {
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	opts.SetMatchETagExcept("*")
	_, err := c.PutObject(ctx, bucket, key, bytes.NewReader(b), int64(len(b)), opts)
	return wrap("create "+key, err)
}

func busy(name string, l *store.Lease) error {
	return fmt.Errorf("store-s3: %s is checked out by %s (holder %s) since %s; if that PC is gone for good, `soulpad store break-lease` takes the lease over: %w",
		name, l.Host, l.Holder, l.Acquired.Format(time.RFC3339), sdk.ErrBusy)
}

// Acquire implements store.Store.
func (p *Plugin) Acquire(ctx context.Context, r store.AcquireRequest) (store.AcquireResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.AcquireResponse{}, err
	}
	if r.Lease.Holder == "" {
		return store.AcquireResponse{}, fmt.Errorf("store-s3: acquire: no holder: %w", sdk.ErrInvalidArgument)
	}
	b, _ := json.Marshal(r.Lease)
	key := cfg.key(r.Name, "lease.json")
	var replaced *store.Lease
	for try := 0; try < 3; try++ {
		err := putNew(ctx, c, cfg.Bucket, key, b)
		if err == nil {
			return store.AcquireResponse{Lease: r.Lease, Replaced: replaced}, nil
		}
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			return store.AcquireResponse{}, err
		}
		held, err := p.readLease(ctx, c, cfg, r.Name)
		if err != nil && !errors.Is(err, sdk.ErrCorrupt) {
			return store.AcquireResponse{}, err
		}
		switch {
		case held == nil && err == nil:
			continue // released meanwhile: try again
		case held != nil && held.Holder == r.Lease.Holder:
			return store.AcquireResponse{Lease: *held}, nil
		case !r.Break:
			if held == nil {
				return store.AcquireResponse{}, err
			}
			return store.AcquireResponse{}, busy(r.Name, held)
		}
		if err := c.RemoveObject(ctx, cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			return store.AcquireResponse{}, wrap("break the lease", err)
		}
		replaced = held
	}
	return store.AcquireResponse{}, fmt.Errorf("store-s3: the lease of %s keeps changing hands; try again: %w", r.Name, sdk.ErrBusy)
}

// Release implements store.Store.
func (p *Plugin) Release(ctx context.Context, r store.ReleaseRequest) (store.ReleaseResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.ReleaseResponse{}, err
	}
	held, err := p.readLease(ctx, c, cfg, r.Name)
	if err != nil {
		return store.ReleaseResponse{}, err
	}
	if held == nil {
		return store.ReleaseResponse{}, nil
	}
	if held.Holder != r.Holder {
		return store.ReleaseResponse{}, busy(r.Name, held)
	}
	return store.ReleaseResponse{}, wrap("release the lease", c.RemoveObject(ctx, cfg.Bucket, cfg.key(r.Name, "lease.json"), minio.RemoveObjectOptions{}))
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
	held, err := p.readLease(ctx, c, cfg, r.Name)
	if err != nil {
		return store.PutVersionResponse{}, err
	}
	if held == nil || held.Holder != r.Holder {
		if held == nil {
			return store.PutVersionResponse{}, fmt.Errorf("store-s3: %s is not checked out; a version needs the lease: %w", r.Name, sdk.ErrBusy)
		}
		return store.PutVersionResponse{}, busy(r.Name, held)
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

// each runs fn for 0..n-1 on up to parallel workers; the first error
// stops the rest.
func (p *Plugin) each(ctx context.Context, parallel, n int, fn func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for w := 0; w < min(parallel, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}

func checkPieces(ps []store.Piece) (uint64, error) {
	var total uint64
	for _, pc := range ps {
		if !store.ValidSum(pc.Sum) || pc.Offset < 0 || pc.Length <= 0 || pc.Length > 64<<20 || !path.IsAbs(pc.Path) {
			return 0, fmt.Errorf("store-s3: bad piece %+v: %w", pc, sdk.ErrInvalidArgument)
		}
		total += uint64(pc.Length)
	}
	return total, nil
}

// transfer moves r's pieces with move, reporting progress.
func (p *Plugin) transfer(ctx context.Context, r store.TransferRequest, move func(*minio.Client, Config, store.Piece, []byte) error) (store.TransferResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.TransferResponse{}, err
	}
	total, err := checkPieces(r.Pieces)
	if err != nil {
		return store.TransferResponse{}, err
	}
	var bytesDone, piecesDone atomic.Uint64
	var progMu sync.Mutex
	last := time.Now()
	bufs := sync.Pool{New: func() any { b := make([]byte, 0, 4<<20); return &b }}
	err = p.each(ctx, cfg.Parallel, len(r.Pieces), func(i int) error {
		pc := r.Pieces[i]
		bp := bufs.Get().(*[]byte)
		defer bufs.Put(bp)
		if int64(cap(*bp)) < pc.Length {
			*bp = make([]byte, 0, pc.Length)
		}
		if err := move(c, cfg, pc, (*bp)[:pc.Length]); err != nil {
			return err
		}
		b, n := bytesDone.Add(uint64(pc.Length)), piecesDone.Add(1)
		if r.OnProgress != nil {
			progMu.Lock()
			if time.Since(last) > 200*time.Millisecond || n == uint64(len(r.Pieces)) {
				last = time.Now()
				r.OnProgress(store.Progress{BytesDone: b, BytesTotal: total, PiecesDone: n, PiecesTotal: uint64(len(r.Pieces))})
			}
			progMu.Unlock()
		}
		return nil
	})
	if err != nil {
		return store.TransferResponse{}, err
	}
	return store.TransferResponse{Progress: store.Progress{BytesDone: bytesDone.Load(), BytesTotal: total, PiecesDone: piecesDone.Load(), PiecesTotal: uint64(len(r.Pieces))}}, nil
}

// Push implements store.Store: each piece is read from its file, checked
// against its sum and uploaded.
func (p *Plugin) Push(ctx context.Context, r store.TransferRequest) (store.TransferResponse, error) {
	return p.transfer(ctx, r, func(c *minio.Client, cfg Config, pc store.Piece, buf []byte) error {
		f, err := os.Open(pc.Path)
		if err != nil {
			return fmt.Errorf("store-s3: push: %w", err)
		}
		defer f.Close()
		if _, err := f.ReadAt(buf, pc.Offset); err != nil {
			return fmt.Errorf("store-s3: push: read %s at %d: %w", pc.Path, pc.Offset, err)
		}
		if s := sha256.Sum256(buf); hex.EncodeToString(s[:]) != pc.Sum {
			return fmt.Errorf("store-s3: push: %s at %d changed since it was summed: %w", pc.Path, pc.Offset, sdk.ErrCorrupt)
		}
		_, err = c.PutObject(ctx, cfg.Bucket, cfg.key(r.Name, "chunks", pc.Sum), bytes.NewReader(buf), int64(len(buf)),
			minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true})
		return wrap("upload a chunk", err)
	})
}

// Fetch implements store.Store: each chunk is downloaded, checked against
// its name and written into its file.
func (p *Plugin) Fetch(ctx context.Context, r store.TransferRequest) (store.TransferResponse, error) {
	return p.transfer(ctx, r, func(c *minio.Client, cfg Config, pc store.Piece, buf []byte) error {
		obj, err := c.GetObject(ctx, cfg.Bucket, cfg.key(r.Name, "chunks", pc.Sum), minio.GetObjectOptions{})
		if err != nil {
			return wrap("download a chunk", err)
		}
		defer obj.Close()
		if _, err := io.ReadFull(obj, buf); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				return fmt.Errorf("store-s3: chunk %s is shorter than %d bytes: %w", pc.Sum, len(buf), sdk.ErrCorrupt)
			}
			return wrap("download chunk "+pc.Sum, err)
		}
		if s := sha256.Sum256(buf); hex.EncodeToString(s[:]) != pc.Sum {
			return fmt.Errorf("store-s3: chunk %s on the store does not match its name (damaged on the store): %w", pc.Sum, sdk.ErrCorrupt)
		}
		f, err := os.OpenFile(pc.Path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("store-s3: fetch: %w", err)
		}
		if _, err := f.WriteAt(buf, pc.Offset); err != nil {
			f.Close()
			return fmt.Errorf("store-s3: fetch: write %s: %w", pc.Path, err)
		}
		return f.Close()
	})
}
