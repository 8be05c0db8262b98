// Package tests3 gives tests a real S3 server on 127.0.0.1: SeaweedFS,
// started by scripts/s3server.sh in the test's own directory and stopped
// when the test ends, with a bucket made for it.
package tests3

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/soulpad/soulpad/internal/testbin"
)

// Server is a running S3 server and a bucket on it.
type Server struct {
	Endpoint, AccessKey, SecretKeyFile, Bucket string
	Dir                                        string
}

// Config is store-s3's config block for the server, as JSON.
func (s Server) Config() []byte {
	return fmt.Appendf(nil, `{"endpoint": %q, "secure": false, "bucket": %q, "access_key": %q, "secret_key_file": %q, "prefix": "pads/"}`,
		s.Endpoint, s.Bucket, s.AccessKey, s.SecretKeyFile)
}

// HCL is store-s3's config block for the server, for a site.hcl.
func (s Server) HCL() string {
	return fmt.Sprintf("plugin \"store-s3\" {\n  endpoint = %q\n  secure = false\n  bucket = %q\n  prefix = \"pads/\"\n  access_key = %q\n  secret_key_file = %q\n}\n",
		s.Endpoint, s.Bucket, s.AccessKey, s.SecretKeyFile)
}

// Weed is the SeaweedFS binary scripts/s3server.sh builds and caches, or
// "" when it has not been built.
func Weed(t testing.TB) string {
	script, err := os.ReadFile(filepath.Join(testbin.Root(t), "scripts", "s3server.sh"))
	if err != nil {
		t.Fatal(err)
	}
	var version string
	for _, l := range strings.Split(string(script), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION="); ok {
			version = v
		}
	}
	cache := os.Getenv("SOULPAD_CACHE")
	if cache == "" {
		if x := os.Getenv("XDG_CACHE_HOME"); x != "" {
			cache = filepath.Join(x, "soulpad")
		} else {
			home, _ := os.UserHomeDir()
			cache = filepath.Join(home, ".cache", "soulpad")
		}
	}
	weed := filepath.Join(cache, "seaweedfs-"+version, "weed")
	if _, err := os.Stat(weed); err != nil {
		return ""
	}
	return weed
}

// Start starts a server for the test. Without the SeaweedFS binary the
// test is skipped (`scripts/s3server.sh build` makes it; `make test` does),
// except in CI, where that is a failure.
func Start(t testing.TB) Server {
	t.Helper()
	if Weed(t) == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("SeaweedFS is not built; `make test` builds it (scripts/s3server.sh build)")
		}
		t.Skip("SeaweedFS is not built: run scripts/s3server.sh build (about 16 CPU-minutes, once)")
	}
	dir := t.TempDir()
	script := filepath.Join(testbin.Root(t), "scripts", "s3server.sh")
	out, err := exec.Command(script, "start", dir).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg += ": " + string(ee.Stderr)
		}
		t.Fatalf("scripts/s3server.sh start: %s", msg)
	}
	t.Cleanup(func() { exec.Command(script, "stop", dir).Run() })
	f := strings.Fields(strings.TrimSpace(string(out)))
	if len(f) != 3 {
		t.Fatalf("scripts/s3server.sh start printed %q", out)
	}
	s := Server{Endpoint: f[0], AccessKey: f[1], SecretKeyFile: f[2], Bucket: "soulpad", Dir: dir}
	secret, err := os.ReadFile(s.SecretKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	c, err := minio.New(s.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, strings.TrimSpace(string(secret)), "")})
	if err != nil {
		t.Fatal(err)
	}
	// The script asks the server for the bucket; make sure it is there.
	if err := c.MakeBucket(context.Background(), s.Bucket, minio.MakeBucketOptions{}); err != nil {
		if ok, _ := c.BucketExists(context.Background(), s.Bucket); !ok {
			t.Fatalf("make bucket: %v", err)
		}
	}
	return s
}
