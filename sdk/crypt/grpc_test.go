package crypt

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
)

// dial serves register's services on an in-memory connection and returns
// a host-side Client for them.
func dial(t *testing.T, register func(*grpc.Server)) *Client {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	s := grpc.NewServer()
	register(s)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient("passthrough:///plugin",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Client{c: pb.NewCryptClient(conn)}
}

// progressCrypt is a crypt plugin whose Create reports three steps, or
// fails with err.
type progressCrypt struct {
	Crypt // only Create is called
	err   error
}

func (p progressCrypt) Create(_ context.Context, r CreateRequest) (CreateResponse, error) {
	for i := uint64(1); i <= 3 && r.OnProgress != nil; i++ {
		r.OnProgress(Progress{Phase: "step", BytesDone: i, BytesTotal: 3})
	}
	return CreateResponse{}, p.err
}

func TestCreateCarriesProgressAndErrors(t *testing.T) {
	c := dial(t, func(s *grpc.Server) { pb.RegisterCryptServer(s, &server{impl: progressCrypt{}}) })
	var seen []Progress
	if _, err := c.Create(context.Background(), CreateRequest{VaultPath: "/v", OnProgress: func(p Progress) { seen = append(seen, p) }}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 3 || seen[2] != (Progress{Phase: "step", BytesDone: 3, BytesTotal: 3}) {
		t.Fatalf("progress across the RPC: %+v", seen)
	}
	c = dial(t, func(s *grpc.Server) {
		pb.RegisterCryptServer(s, &server{impl: progressCrypt{err: sdk.ErrAlreadyExists}})
	})
	_, err := c.Create(context.Background(), CreateRequest{VaultPath: "/v", OnProgress: func(Progress) {}})
	if !errors.Is(err, sdk.ErrAlreadyExists) {
		t.Fatalf("error across the progress stream: %v, want sdk.ErrAlreadyExists", err)
	}
	// A plugin's own "unsupported" is its answer, not a missing method:
	// no second, plain Create.
	calls := 0
	c = dial(t, func(s *grpc.Server) {
		pb.RegisterCryptServer(s, &server{impl: countingCrypt{calls: &calls, err: sdk.ErrUnsupported}})
	})
	_, err = c.Create(context.Background(), CreateRequest{VaultPath: "/v", OnProgress: func(Progress) {}})
	if !errors.Is(err, sdk.ErrUnsupported) || calls != 1 {
		t.Fatalf("Create answered unsupported: %v after %d calls; want sdk.ErrUnsupported after 1", err, calls)
	}
}

type countingCrypt struct {
	Crypt
	calls *int
	err   error
}

func (c countingCrypt) Create(context.Context, CreateRequest) (CreateResponse, error) {
	*c.calls++
	return CreateResponse{}, c.err
}

// oldServer is a crypt plugin built before CreateStream: plain Create only.
type oldServer struct {
	pb.UnimplementedCryptServer
	created []string
}

func (o *oldServer) Create(_ context.Context, r *pb.CryptCreateRequest) (*pb.CryptCreateResponse, error) {
	o.created = append(o.created, r.VaultPath)
	return &pb.CryptCreateResponse{}, nil
}

// A host asking for progress still creates with a plugin that has none
// (a pad carries its plugins, which may be older than the host).
func TestCreateFallsBackForOlderPlugins(t *testing.T) {
	old := &oldServer{}
	c := dial(t, func(s *grpc.Server) { pb.RegisterCryptServer(s, old) })
	called := false
	if _, err := c.Create(context.Background(), CreateRequest{VaultPath: "/v", OnProgress: func(Progress) { called = true }}); err != nil {
		t.Fatal(err)
	}
	if len(old.created) != 1 || old.created[0] != "/v" || called {
		t.Fatalf("created %v, progress called %v: want one plain Create of /v and no progress", old.created, called)
	}
}

// keepingCrypt keeps the credentials its calls are given (a plugin that
// should not, to see what the server does to them afterwards).
type keepingCrypt struct {
	Crypt
	kept *[]Credential
}

func (k keepingCrypt) Unlock(_ context.Context, r UnlockRequest) (UnlockResponse, error) {
	*k.kept = append(*k.kept, r.Credential)
	return UnlockResponse{PlaintextDir: "/p"}, nil
}

func (k keepingCrypt) Create(_ context.Context, r CreateRequest) (CreateResponse, error) {
	*k.kept = append(*k.kept, r.Credential)
	return CreateResponse{}, nil
}

func (k keepingCrypt) AddCredential(_ context.Context, r AddCredentialRequest) (AddCredentialResponse, error) {
	*k.kept = append(*k.kept, r.Existing, r.Add)
	return AddCredentialResponse{}, nil
}

func (k keepingCrypt) RemoveCredential(_ context.Context, r RemoveCredentialRequest) (RemoveCredentialResponse, error) {
	*k.kept = append(*k.kept, r.Existing, r.Remove)
	return RemoveCredentialResponse{}, nil
}

// Once a call returns, the plugin side has zeroed the credentials it
// decoded; the host's own copies are the host's.
func TestServerWipesCredentialsAfterTheCall(t *testing.T) {
	var kept []Credential
	c := dial(t, func(s *grpc.Server) { pb.RegisterCryptServer(s, &server{impl: keepingCrypt{kept: &kept}}) })
	ctx := context.Background()
	cred := func() Credential { return Credential{Passphrase: []byte("correct horse battery staple 42")} }
	key := func() Credential { return Credential{KeyFile: []byte{1, 2, 3, 4}} }
	mine := cred()
	if _, err := c.Unlock(ctx, UnlockRequest{VaultPath: "/v", Credential: mine, MountDir: "/m"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Create(ctx, CreateRequest{VaultPath: "/v", Credential: cred()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddCredential(ctx, AddCredentialRequest{VaultPath: "/v", Existing: cred(), Add: key()}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RemoveCredential(ctx, RemoveCredentialRequest{VaultPath: "/v", Existing: cred(), Remove: key()}); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 6 {
		t.Fatalf("the plugin saw %d credentials, want 6", len(kept))
	}
	for i, k := range kept {
		b := append(bytes.Clone(k.Passphrase), k.KeyFile...)
		if len(b) == 0 {
			t.Fatalf("credential %d reached the plugin empty", i)
		}
		if !bytes.Equal(b, make([]byte, len(b))) {
			t.Errorf("credential %d is intact after the call: %q", i, b)
		}
	}
	if string(mine.Passphrase) != "correct horse battery staple 42" {
		t.Fatal("the host's own passphrase was changed")
	}
}
