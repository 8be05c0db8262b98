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

// leaseRecord is lease.json: the lease, or what is left of it once
// released (the object stays, so that every change to it is a write
// conditional on the one before: If-Match on its ETag).
type leaseRecord struct {
	store.Lease
	Released bool `json:"released,omitempty"`
}

// readLease reads lease.json and its ETag (nil when there is none).
func (p *Plugin) readLease(ctx context.Context, c *minio.Client, cfg Config, name string) (*leaseRecord, string, error) {
	for try := 0; ; try++ {
		l, etag, err := p.readLeaseOnce(ctx, c, cfg, name)
		// The object changed between its ETag and its bytes (the read
		// is conditional on the ETag): read it again.
		if !errors.Is(err, sdk.ErrAlreadyExists) || try == 4 {
			return l, etag, err
		}
	}
}

func (p *Plugin) readLeaseOnce(ctx context.Context, c *minio.Client, cfg Config, name string) (*leaseRecord, string, error) {
	key := cfg.key(name, "lease.json")
	obj, err := c.GetObject(ctx, cfg.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, "", wrap("get "+key, err)
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		if err := wrap("get "+key, err); errors.Is(err, sdk.ErrNotFound) {
			return nil, "", nil
		}
		return nil, "", wrap("get "+key, err)
	}
	b, err := io.ReadAll(io.LimitReader(obj, 1<<16+1))
	if err != nil {
		return nil, "", wrap("get "+key, err)
	}
	var l leaseRecord
	if len(b) > 1<<16 || json.Unmarshal(b, &l) != nil {
		return nil, st.ETag, fmt.Errorf("store-s3: the lease of %s is not readable: break it with `soulpad store break-lease`: %w", name, sdk.ErrCorrupt)
	}
	return &l, st.ETag, nil
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
	return putIf(ctx, c, bucket, key, b, "")
}

// putIf writes key only if it still has the ETag etag ("": only if it
// does not exist); otherwise sdk.ErrAlreadyExists.
func putIf(ctx context.Context, c *minio.Client, bucket, key string, b []byte, etag string) error {
	opts := minio.PutObjectOptions{ContentType: "application/json"}
	if etag == "" {
		opts.SetMatchETagExcept("*")
	} else {
		opts.SetMatchETag(etag)
	}
	_, err := c.PutObject(ctx, bucket, key, bytes.NewReader(b), int64(len(b)), opts)
	return wrap("write "+key, err)
}

func busy(name string, l *store.Lease) error {
	return fmt.Errorf("store-s3: %s is checked out by %s (holder %s) since %s; if that PC is gone for good, `soulpad store break-lease` takes the lease over: %w",
		name, l.Host, l.Holder, l.Acquired.Format(time.RFC3339), sdk.ErrBusy)
}

// Acquire implements store.Store. Every change to lease.json is
// conditional on what was read (created only if absent, replaced only if
// its ETag is unchanged), so of two PCs racing, one wins and the other
// reads again.
func (p *Plugin) Acquire(ctx context.Context, r store.AcquireRequest) (store.AcquireResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.AcquireResponse{}, err
	}
	if r.Lease.Holder == "" {
		return store.AcquireResponse{}, fmt.Errorf("store-s3: acquire: no holder: %w", sdk.ErrInvalidArgument)
	}
	if err := p.probeConditional(ctx, c, cfg); err != nil {
		return store.AcquireResponse{}, err
	}
	b, _ := json.Marshal(leaseRecord{Lease: r.Lease})
	key := cfg.key(r.Name, "lease.json")
	for try := 0; try < 5; try++ {
		held, etag, err := p.readLease(ctx, c, cfg, r.Name)
		if err != nil && (!errors.Is(err, sdk.ErrCorrupt) || !r.Break) {
			return store.AcquireResponse{}, err
		}
		var replaced *store.Lease
		switch {
		case held == nil && err == nil, held != nil && (held.Released || held.Holder == r.Lease.Holder):
		case held != nil && (r.Break || held.Lapsed(time.Now())):
			replaced = &held.Lease
		case !r.Break:
			return store.AcquireResponse{}, busy(r.Name, &held.Lease)
		}
		err = putIf(ctx, c, cfg.Bucket, key, b, etag)
		if err == nil {
			return store.AcquireResponse{Lease: r.Lease, Replaced: replaced}, nil
		}
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			return store.AcquireResponse{}, err
		}
		// Changed since it was read: read it again.
	}
	return store.AcquireResponse{}, fmt.Errorf("store-s3: the lease of %s keeps changing hands; try again: %w", r.Name, sdk.ErrBusy)
}

// Release implements store.Store: the lease is marked released, if this
// holder still holds it (a write conditional on the lease read).
func (p *Plugin) Release(ctx context.Context, r store.ReleaseRequest) (store.ReleaseResponse, error) {
	c, cfg, err := p.client(r.Name)
	if err != nil {
		return store.ReleaseResponse{}, err
	}
	for try := 0; try < 5; try++ {
		held, etag, err := p.readLease(ctx, c, cfg, r.Name)
		if err != nil {
			return store.ReleaseResponse{}, err
		}
		if held == nil || held.Released {
			return store.ReleaseResponse{}, nil
		}
		if held.Holder != r.Holder {
			return store.ReleaseResponse{}, busy(r.Name, &held.Lease)
		}
		b, _ := json.Marshal(leaseRecord{Lease: store.Lease{Holder: held.Holder, Host: held.Host, Acquired: held.Acquired}, Released: true})
		err = putIf(ctx, c, cfg.Bucket, cfg.key(r.Name, "lease.json"), b, etag)
		if !errors.Is(err, sdk.ErrAlreadyExists) {
			return store.ReleaseResponse{}, err
		}
	}
	return store.ReleaseResponse{}, fmt.Errorf("store-s3: the lease of %s keeps changing hands; try again: %w", r.Name, sdk.ErrBusy)
}

// probeConditional checks, once per plugin process, that the server
// refuses a second create-only write (If-None-Match: *) of one key and a
// write conditional on an ETag the object does not have (If-Match): the
// lease rests on both, and a server that ignores them would let two PCs
// hold the pad at once, or a PC release a lease another took over.
func (p *Plugin) probeConditional(ctx context.Context, c *minio.Client, cfg Config) error {
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
	err = putIf(ctx, c, cfg.Bucket, key, []byte("{}"), `"00000000000000000000000000000000"`)
	switch {
	case err == nil:
		return fmt.Errorf("store-s3: %s does not refuse a write conditional on an ETag the object does not have (If-Match), so a lease there could be released or renewed after another PC took it over: use a server that honours it (AWS S3, MinIO, SeaweedFS do): %w", cfg.Endpoint, sdk.ErrUnsupported)
	case !errors.Is(err, sdk.ErrAlreadyExists):
		return err
	}
	p.mu.Lock()
	p.probed = true
	p.mu.Unlock()
	return nil
}
