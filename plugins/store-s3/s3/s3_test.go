package s3_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/soulpad/soulpad/internal/tests3"
	"github.com/soulpad/soulpad/plugins/store-s3/s3"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/store"
	"github.com/soulpad/soulpad/sdk/store/storetest"
)

// The conformance suite, over gRPC, against a real S3 server (SeaweedFS).
func TestConformance(t *testing.T) {
	srv := tests3.Start(t)
	s := sdktest.InProcess(t, s3.New()).(store.Store)
	if _, err := s.Configure(context.Background(), sdk.ConfigureRequest{Config: srv.Config()}); err != nil {
		t.Fatal(err)
	}
	storetest.Run(t, s)
}

func TestConfigIsChecked(t *testing.T) {
	s := sdktest.InProcess(t, s3.New()).(store.Store)
	for _, cfg := range []string{
		`{}`,
		`{"endpoint": "127.0.0.1:9000"}`,
		`{"endpoint": "127.0.0.1:9000", "bucket": "b", "access_key": "k"}`,
		`{"endpoint": "127.0.0.1:9000", "bucket": "b", "access_key": "k", "secret_key_file": "/nonexistent"}`,
		`{"endpoint": "127.0.0.1:9000", "bucket": "b", "parallel": 1000}`,
		`{"endpoint": "127.0.0.1:9000", "bucket": "b", "bukket": "typo"}`,
		// No credentials is no longer a silent anonymous access.
		`{"endpoint": "127.0.0.1:9000", "bucket": "b"}`,
	} {
		if _, err := s.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(cfg)}); !errors.Is(err, sdk.ErrInvalidConfig) {
			t.Errorf("Configure(%s) = %v; want ErrInvalidConfig", cfg, err)
		}
	}
}

// A store nobody answers at fails with an error, not a hang.
func TestUnreachableStore(t *testing.T) {
	s := sdktest.InProcess(t, s3.New()).(store.Store)
	if _, err := s.Configure(context.Background(), sdk.ConfigureRequest{Config: []byte(`{"endpoint": "127.0.0.1:1", "secure": false, "bucket": "b", "anonymous": true}`)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30e9)
	defer cancel()
	if _, err := s.Versions(ctx, store.VersionsRequest{Name: "alice"}); err == nil {
		t.Fatal("Versions on an unreachable store succeeded")
	}
}

// A server that takes every PUT (a test double of an S3 service that
// ignores If-None-Match: only this behaviour matters, and the real
// server in the other tests honours it): the lease could not keep a
// second PC out, so the plugin refuses to take one there.
func TestServerIgnoringCreateOnlyIsRefused(t *testing.T) {
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodPut:
			puts.Add(1)
			io.Copy(io.Discard, r.Body)
			w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
			w.WriteHeader(http.StatusOK)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	s := testDouble(t, srv.URL)
	_, err := s.Acquire(context.Background(), store.AcquireRequest{Name: "alice", Lease: store.Lease{Holder: "h1", Host: "pc-a"}})
	if !errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), "If-None-Match") {
		t.Fatalf("acquire on a server that ignores create-only writes: %v; want ErrUnsupported naming If-None-Match", err)
	}
	if n := puts.Load(); n != 2 {
		t.Fatalf("%d PUTs reached the server; want the probe's two and no lease", n)
	}
}

// A server that honours create-only writes but ignores If-Match (a test
// double: only this behaviour matters): a PC whose lease was taken over
// could still release or renew it there, so the plugin refuses it.
func TestServerIgnoringIfMatchIsRefused(t *testing.T) {
	var mu sync.Mutex
	objects := map[string]bool{}
	var puts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch r.Method {
		case http.MethodPut:
			puts.Add(1)
			io.Copy(io.Discard, r.Body)
			if r.Header.Get("If-None-Match") == "*" && objects[r.URL.Path] {
				w.WriteHeader(http.StatusPreconditionFailed)
				io.WriteString(w, `<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message></Error>`)
				return
			}
			objects[r.URL.Path] = true
			w.Header().Set("ETag", `"d41d8cd98f00b204e9800998ecf8427e"`)
			w.WriteHeader(http.StatusOK)
		case http.MethodDelete:
			delete(objects, r.URL.Path)
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()
	s := testDouble(t, srv.URL)
	_, err := s.Acquire(context.Background(), store.AcquireRequest{Name: "alice", Lease: store.Lease{Holder: "h1", Host: "pc-a"}})
	if !errors.Is(err, sdk.ErrUnsupported) || !strings.Contains(err.Error(), "If-Match") {
		t.Fatalf("acquire on a server that ignores If-Match: %v; want ErrUnsupported naming If-Match", err)
	}
	if n := puts.Load(); n != 3 {
		t.Fatalf("%d PUTs reached the server; want the probe's three and no lease", n)
	}
}

// testDouble is the plugin configured for an HTTP test double at url.
func testDouble(t *testing.T, url string) store.Store {
	t.Helper()
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cr3t-key-for-a-test-double\n"), 0o600)
	cfg, _ := json.Marshal(map[string]any{"endpoint": strings.TrimPrefix(url, "http://"), "secure": false, "bucket": "pads",
		"region": "us-east-1", "access_key": "k", "secret_key_file": secret})
	s := sdktest.InProcess(t, s3.New()).(store.Store)
	if _, err := s.Configure(context.Background(), sdk.ConfigureRequest{Config: cfg}); err != nil {
		t.Fatal(err)
	}
	return s
}
