package store_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/sdktest"
	"github.com/soulpad/soulpad/sdk/store"
)

// memStore keeps one manifest in memory: a test double of a store
// plugin's two calls, to carry a large message over the real gRPC
// transport (the other calls are not implemented).
type memStore struct {
	store.Store
	manifest []byte
}

func (m *memStore) Info(context.Context, sdk.InfoRequest) (sdk.InfoResponse, error) {
	return sdk.InfoResponse{Name: "store-mem", Kind: sdk.KindStore, Version: "0", APIVersions: []int{store.APIVersion}}, nil
}
func (m *memStore) Configure(context.Context, sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	return sdk.ConfigureResponse{}, nil
}
func (m *memStore) PutVersion(_ context.Context, r store.PutVersionRequest) (store.PutVersionResponse, error) {
	m.manifest = r.Manifest
	return store.PutVersionResponse{}, nil
}
func (m *memStore) GetVersion(context.Context, store.GetVersionRequest) (store.GetVersionResponse, error) {
	return store.GetVersionResponse{Manifest: m.manifest}, nil
}

// The manifest of a big pad (every chunk listed: some 100 bytes per MiB,
// so 4 MiB is a pad of about 40 GiB) crosses the RPC both ways.
func TestAManifestAboveFourMiBCrosses(t *testing.T) {
	st := sdktest.InProcess(t, &memStore{}).(store.Store)
	big := bytes.Repeat([]byte("0123456789abcdef"), 12<<20/16)
	ctx := context.Background()
	if _, err := st.PutVersion(ctx, store.PutVersionRequest{Name: "p", Seq: 1, Manifest: big}); err != nil {
		t.Fatalf("put a %d-byte manifest: %v", len(big), err)
	}
	got, err := st.GetVersion(ctx, store.GetVersionRequest{Name: "p", Seq: 1})
	if err != nil || !bytes.Equal(got.Manifest, big) {
		t.Fatalf("get it back: %d bytes, %v", len(got.Manifest), err)
	}
}
