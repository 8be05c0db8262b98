// Package ctxio makes long reads stop when a context ends.
package ctxio

import (
	"context"
	"io"
)

// Reader reads from R until Ctx ends; then each Read returns Ctx's error.
type Reader struct {
	Ctx context.Context
	R   io.Reader
}

func (c Reader) Read(b []byte) (int, error) {
	if err := c.Ctx.Err(); err != nil {
		return 0, err
	}
	return c.R.Read(b)
}
