package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

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
	if err := p.probeCreateOnly(ctx, c, cfg); err != nil {
		return store.AcquireResponse{}, err
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

// probeCreateOnly checks, once per plugin process, that the server
// refuses a second create-only write (If-None-Match: *) of one key: the
// lease rests on it, and a server that ignores the condition would let
// two PCs hold the pad at once.
func (p *Plugin) probeCreateOnly(ctx context.Context, c *minio.Client, cfg Config) error {
	p.mu.Lock()
	done := p.probed
	p.mu.Unlock()
	if done {
		return nil
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	key := cfg.Prefix + ".soulpad-probe-" + hex.EncodeToString(id)
	defer func() { _ = c.RemoveObject(context.WithoutCancel(ctx), cfg.Bucket, key, minio.RemoveObjectOptions{}) }()
	if err := putNew(ctx, c, cfg.Bucket, key, []byte("{}")); err != nil {
		return err
	}
	err := putNew(ctx, c, cfg.Bucket, key, []byte("{}"))
	switch {
	case err == nil:
		return fmt.Errorf("store-s3: %s does not refuse a second create-only write of one key (If-None-Match: *), so a lease there would not keep a second PC out: use a server that honours it (AWS S3, MinIO, Ceph RGW, SeaweedFS do): %w", cfg.Endpoint, sdk.ErrUnsupported)
	case !errors.Is(err, sdk.ErrAlreadyExists):
		return err
	}
	p.mu.Lock()
	p.probed = true
	p.mu.Unlock()
	return nil
}
