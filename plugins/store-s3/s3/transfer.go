package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

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
