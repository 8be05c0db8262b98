package crypt

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/rpc"
)

func init() {
	rpc.RegisterKind(rpc.KindGlue[Crypt]{Kind: sdk.KindCrypt, APIVersion: APIVersion, Order: 20, Interface: "crypt.Crypt",
		Serve: func(impl Crypt, s *grpc.Server) { pb.RegisterCryptServer(s, &server{impl: impl}) },
		Client: func(base rpc.BaseClient, c *grpc.ClientConn) any {
			return &Client{BaseClient: base, c: pb.NewCryptClient(c)}
		},
	})
}

func toPB(c Credential) *pb.Credential {
	return &pb.Credential{Passphrase: c.Passphrase, KeyFile: c.KeyFile}
}

func fromPB(c *pb.Credential) Credential {
	return Credential{Passphrase: c.GetPassphrase(), KeyFile: c.GetKeyFile()}
}

type server struct {
	pb.UnimplementedCryptServer
	impl Crypt
}

// Each handler wipes the credentials it decoded once the plugin is done
// with them (the wire bytes are cleared by the codec, wire.NewServer).

func (s *server) Create(ctx context.Context, r *pb.CryptCreateRequest) (*pb.CryptCreateResponse, error) {
	defer fromPB(r.Credential).Wipe()
	_, err := s.impl.Create(ctx, CreateRequest{VaultPath: r.VaultPath, Credential: fromPB(r.Credential), SizeBytes: r.SizeBytes})
	return &pb.CryptCreateResponse{}, rpc.ToStatus(err)
}

func (s *server) CreateStream(r *pb.CryptCreateRequest, stream pb.Crypt_CreateStreamServer) error {
	defer fromPB(r.Credential).Wipe()
	_, err := s.impl.Create(stream.Context(), CreateRequest{VaultPath: r.VaultPath, Credential: fromPB(r.Credential), SizeBytes: r.SizeBytes,
		OnProgress: func(p Progress) {
			_ = stream.Send(&pb.CryptCreateMessage{Msg: &pb.CryptCreateMessage_Progress{Progress: &pb.CryptProgress{
				Phase: p.Phase, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal}}})
		}})
	if err != nil {
		return rpc.ToStatus(err)
	}
	return stream.Send(&pb.CryptCreateMessage{Msg: &pb.CryptCreateMessage_Result{Result: &pb.CryptCreateResponse{}}})
}

func (s *server) Unlock(ctx context.Context, r *pb.UnlockRequest) (*pb.UnlockResponse, error) {
	defer fromPB(r.Credential).Wipe()
	out, err := s.impl.Unlock(ctx, UnlockRequest{VaultPath: r.VaultPath, Credential: fromPB(r.Credential), MountDir: r.MountDir})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.UnlockResponse{PlaintextDir: out.PlaintextDir}, nil
}

func (s *server) Lock(ctx context.Context, r *pb.LockRequest) (*pb.LockResponse, error) {
	_, err := s.impl.Lock(ctx, LockRequest{VaultPath: r.VaultPath})
	return &pb.LockResponse{}, rpc.ToStatus(err)
}

func (s *server) AddCredential(ctx context.Context, r *pb.AddCredentialRequest) (*pb.AddCredentialResponse, error) {
	defer fromPB(r.Existing).Wipe()
	defer fromPB(r.Add).Wipe()
	m, ok := s.impl.(CredentialManager)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	_, err := m.AddCredential(ctx, AddCredentialRequest{VaultPath: r.VaultPath, Existing: fromPB(r.Existing), Add: fromPB(r.Add)})
	return &pb.AddCredentialResponse{}, rpc.ToStatus(err)
}

func (s *server) RemoveCredential(ctx context.Context, r *pb.RemoveCredentialRequest) (*pb.RemoveCredentialResponse, error) {
	defer fromPB(r.Existing).Wipe()
	defer fromPB(r.Remove).Wipe()
	m, ok := s.impl.(CredentialManager)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	_, err := m.RemoveCredential(ctx, RemoveCredentialRequest{VaultPath: r.VaultPath, Existing: fromPB(r.Existing), Remove: fromPB(r.Remove)})
	return &pb.RemoveCredentialResponse{}, rpc.ToStatus(err)
}

// Client is the host's view of a crypt plugin. It implements Crypt and
// CredentialManager; the latter fails with sdk.ErrUnsupported when the
// plugin lacks it (check Info capabilities first).
type Client struct {
	rpc.BaseClient
	c pb.CryptClient
}

var (
	_ Crypt             = (*Client)(nil)
	_ CredentialManager = (*Client)(nil)
)

// Create implements Crypt. With OnProgress set it takes the progress
// stream, falling back to the plain call for a plugin without it.
func (c *Client) Create(ctx context.Context, r CreateRequest) (CreateResponse, error) {
	req := &pb.CryptCreateRequest{VaultPath: r.VaultPath, Credential: toPB(r.Credential), SizeBytes: r.SizeBytes}
	if r.OnProgress != nil {
		stream, err := c.c.CreateStream(ctx, req)
		got := false
		for err == nil {
			var m *pb.CryptCreateMessage
			if m, err = stream.Recv(); err != nil {
				break
			}
			got = true
			switch x := m.Msg.(type) {
			case *pb.CryptCreateMessage_Progress:
				r.OnProgress(Progress{Phase: x.Progress.Phase, BytesDone: x.Progress.BytesDone, BytesTotal: x.Progress.BytesTotal})
			case *pb.CryptCreateMessage_Result:
				return CreateResponse{}, nil
			default:
				return CreateResponse{}, fmt.Errorf("crypt: unexpected message %T from plugin", m.Msg)
			}
		}
		// gRPC's own "unknown method" (no details: a plugin's errors carry
		// their sentinel) from a plugin that answered nothing yet.
		if st := status.Convert(err); got || st.Code() != codes.Unimplemented || len(st.Details()) > 0 {
			return CreateResponse{}, rpc.FromStatus(err)
		}
	}
	_, err := c.c.Create(ctx, req)
	return CreateResponse{}, rpc.FromStatus(err)
}

// Unlock implements Crypt.
func (c *Client) Unlock(ctx context.Context, r UnlockRequest) (UnlockResponse, error) {
	out, err := c.c.Unlock(ctx, &pb.UnlockRequest{VaultPath: r.VaultPath, Credential: toPB(r.Credential), MountDir: r.MountDir})
	if err != nil {
		return UnlockResponse{}, rpc.FromStatus(err)
	}
	return UnlockResponse{PlaintextDir: out.PlaintextDir}, nil
}

// Lock implements Crypt.
func (c *Client) Lock(ctx context.Context, r LockRequest) (LockResponse, error) {
	_, err := c.c.Lock(ctx, &pb.LockRequest{VaultPath: r.VaultPath})
	return LockResponse{}, rpc.FromStatus(err)
}

// AddCredential implements CredentialManager.
func (c *Client) AddCredential(ctx context.Context, r AddCredentialRequest) (AddCredentialResponse, error) {
	_, err := c.c.AddCredential(ctx, &pb.AddCredentialRequest{VaultPath: r.VaultPath, Existing: toPB(r.Existing), Add: toPB(r.Add)})
	return AddCredentialResponse{}, rpc.FromStatus(err)
}

// RemoveCredential implements CredentialManager.
func (c *Client) RemoveCredential(ctx context.Context, r RemoveCredentialRequest) (RemoveCredentialResponse, error) {
	_, err := c.c.RemoveCredential(ctx, &pb.RemoveCredentialRequest{VaultPath: r.VaultPath, Existing: toPB(r.Existing), Remove: toPB(r.Remove)})
	return RemoveCredentialResponse{}, rpc.FromStatus(err)
}
