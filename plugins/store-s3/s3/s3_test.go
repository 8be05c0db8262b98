package s3_test

import (
	"context"
	"errors"
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
