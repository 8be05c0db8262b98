package store

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/rpc"
)

func init() {
	rpc.RegisterKind(rpc.KindGlue[Store]{Kind: sdk.KindStore, APIVersion: APIVersion, Order: 15, Interface: "store.Store",
		Serve: func(impl Store, s *grpc.Server) { pb.RegisterStoreServer(s, &server{impl: impl}) },
		Client: func(base rpc.BaseClient, c *grpc.ClientConn) any {
			return &Client{BaseClient: base, c: pb.NewStoreClient(c)}
		},
	})
}

func leaseToPB(l *Lease) *pb.Lease {
	if l == nil {
		return nil
	}
	pl := &pb.Lease{Holder: l.Holder, Host: l.Host, AcquiredUnixNano: l.Acquired.UnixNano()}
	if !l.Expires.IsZero() {
		pl.ExpiresUnixNano = l.Expires.UnixNano()
	}
	return pl
}

func leaseFromPB(l *pb.Lease) *Lease {
	if l == nil {
		return nil
	}
	out := &Lease{Holder: l.Holder, Host: l.Host, Acquired: time.Unix(0, l.AcquiredUnixNano).UTC()}
	if l.ExpiresUnixNano != 0 {
		out.Expires = time.Unix(0, l.ExpiresUnixNano).UTC()
	}
	return out
}

func piecesToPB(ps []Piece) []*pb.Piece {
	out := make([]*pb.Piece, len(ps))
	for i, p := range ps {
		out[i] = &pb.Piece{Sum: p.Sum, Path: p.Path, Offset: p.Offset, Length: p.Length}
	}
	return out
}

func piecesFromPB(ps []*pb.Piece) []Piece {
	out := make([]Piece, len(ps))
	for i, p := range ps {
		out[i] = Piece{Sum: p.Sum, Path: p.Path, Offset: p.Offset, Length: p.Length}
	}
	return out
}

func progressToPB(p Progress) *pb.TransferProgress {
	return &pb.TransferProgress{BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, PiecesDone: p.PiecesDone, PiecesTotal: p.PiecesTotal}
}

func progressFromPB(p *pb.TransferProgress) Progress {
	return Progress{BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, PiecesDone: p.PiecesDone, PiecesTotal: p.PiecesTotal}
}

type server struct {
	pb.UnimplementedStoreServer
	impl Store
}

func (s *server) Acquire(ctx context.Context, r *pb.AcquireRequest) (*pb.AcquireResponse, error) {
	l := leaseFromPB(r.Lease)
	if l == nil {
		l = &Lease{}
	}
	out, err := s.impl.Acquire(ctx, AcquireRequest{Name: r.Name, Lease: *l, Break: r.Break})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.AcquireResponse{Lease: leaseToPB(&out.Lease), Replaced: leaseToPB(out.Replaced)}, nil
}

func (s *server) Release(ctx context.Context, r *pb.ReleaseRequest) (*pb.ReleaseResponse, error) {
	if _, err := s.impl.Release(ctx, ReleaseRequest{Name: r.Name, Holder: r.Holder}); err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.ReleaseResponse{}, nil
}

func (s *server) Versions(ctx context.Context, r *pb.VersionsRequest) (*pb.VersionsResponse, error) {
	out, err := s.impl.Versions(ctx, VersionsRequest{Name: r.Name})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &pb.VersionsResponse{}
	for _, v := range out.Versions {
		resp.Versions = append(resp.Versions, &pb.StoreVersion{Seq: v.Seq, CreatedUnixNano: v.Created.UnixNano(), ManifestBytes: v.ManifestBytes})
	}
	return resp, nil
}

func (s *server) GetVersion(ctx context.Context, r *pb.GetVersionRequest) (*pb.GetVersionResponse, error) {
	out, err := s.impl.GetVersion(ctx, GetVersionRequest{Name: r.Name, Seq: r.Seq})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.GetVersionResponse{Manifest: out.Manifest}, nil
}

func (s *server) PutVersion(ctx context.Context, r *pb.PutVersionRequest) (*pb.PutVersionResponse, error) {
	if _, err := s.impl.PutVersion(ctx, PutVersionRequest{Name: r.Name, Seq: r.Seq, Manifest: r.Manifest, Holder: r.Holder}); err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.PutVersionResponse{}, nil
}

func (s *server) Missing(ctx context.Context, r *pb.MissingRequest) (*pb.MissingResponse, error) {
	out, err := s.impl.Missing(ctx, MissingRequest{Name: r.Name, Sums: r.Sums})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.MissingResponse{Sums: out.Sums}, nil
}

type transferStream interface {
	Context() context.Context
	Send(*pb.TransferMessage) error
}

func (s *server) transfer(r *pb.TransferRequest, stream transferStream, do func(context.Context, TransferRequest) (TransferResponse, error)) error {
	out, err := do(stream.Context(), TransferRequest{Name: r.Name, Pieces: piecesFromPB(r.Pieces), OnProgress: func(p Progress) {
		_ = stream.Send(&pb.TransferMessage{Msg: &pb.TransferMessage_Progress{Progress: progressToPB(p)}})
	}})
	if err != nil {
		return rpc.ToStatus(err)
	}
	return stream.Send(&pb.TransferMessage{Msg: &pb.TransferMessage_Result{Result: progressToPB(out.Progress)}})
}

func (s *server) Push(r *pb.TransferRequest, stream pb.Store_PushServer) error {
	return s.transfer(r, stream, s.impl.Push)
}

func (s *server) Fetch(r *pb.TransferRequest, stream pb.Store_FetchServer) error {
	return s.transfer(r, stream, s.impl.Fetch)
}

func (s *server) Chunks(ctx context.Context, r *pb.ChunksRequest) (*pb.ChunksResponse, error) {
	out, err := s.impl.Chunks(ctx, ChunksRequest{Name: r.Name})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.ChunksResponse{Sums: out.Sums}, nil
}

func (s *server) Delete(ctx context.Context, r *pb.DeleteRequest) (*pb.DeleteResponse, error) {
	if _, err := s.impl.Delete(ctx, DeleteRequest{Name: r.Name, Versions: r.Versions, Sums: r.Sums}); err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.DeleteResponse{}, nil
}

// Client is the host's view of a store plugin.
type Client struct {
	rpc.BaseClient
	c pb.StoreClient
}

var _ Store = (*Client)(nil)

// Acquire implements Store.
func (c *Client) Acquire(ctx context.Context, r AcquireRequest) (AcquireResponse, error) {
	out, err := c.c.Acquire(ctx, &pb.AcquireRequest{Name: r.Name, Lease: leaseToPB(&r.Lease), Break: r.Break})
	if err != nil {
		return AcquireResponse{}, rpc.FromStatus(err)
	}
	resp := AcquireResponse{Replaced: leaseFromPB(out.Replaced)}
	if l := leaseFromPB(out.Lease); l != nil {
		resp.Lease = *l
	}
	return resp, nil
}

// Release implements Store.
func (c *Client) Release(ctx context.Context, r ReleaseRequest) (ReleaseResponse, error) {
	_, err := c.c.Release(ctx, &pb.ReleaseRequest{Name: r.Name, Holder: r.Holder})
	return ReleaseResponse{}, rpc.FromStatus(err)
}

// Versions implements Store.
func (c *Client) Versions(ctx context.Context, r VersionsRequest) (VersionsResponse, error) {
	out, err := c.c.Versions(ctx, &pb.VersionsRequest{Name: r.Name})
	if err != nil {
		return VersionsResponse{}, rpc.FromStatus(err)
	}
	var resp VersionsResponse
	for _, v := range out.Versions {
		resp.Versions = append(resp.Versions, Version{Seq: v.Seq, Created: time.Unix(0, v.CreatedUnixNano).UTC(), ManifestBytes: v.ManifestBytes})
	}
	return resp, nil
}

// GetVersion implements Store.
func (c *Client) GetVersion(ctx context.Context, r GetVersionRequest) (GetVersionResponse, error) {
	out, err := c.c.GetVersion(ctx, &pb.GetVersionRequest{Name: r.Name, Seq: r.Seq})
	if err != nil {
		return GetVersionResponse{}, rpc.FromStatus(err)
	}
	return GetVersionResponse{Manifest: out.Manifest}, nil
}

// PutVersion implements Store.
func (c *Client) PutVersion(ctx context.Context, r PutVersionRequest) (PutVersionResponse, error) {
	_, err := c.c.PutVersion(ctx, &pb.PutVersionRequest{Name: r.Name, Seq: r.Seq, Manifest: r.Manifest, Holder: r.Holder})
	return PutVersionResponse{}, rpc.FromStatus(err)
}

// Missing implements Store.
func (c *Client) Missing(ctx context.Context, r MissingRequest) (MissingResponse, error) {
	out, err := c.c.Missing(ctx, &pb.MissingRequest{Name: r.Name, Sums: r.Sums})
	if err != nil {
		return MissingResponse{}, rpc.FromStatus(err)
	}
	return MissingResponse{Sums: out.Sums}, nil
}

type transferClient interface {
	Recv() (*pb.TransferMessage, error)
}

func receive(stream transferClient, err error, onProgress func(Progress)) (TransferResponse, error) {
	if err != nil {
		return TransferResponse{}, rpc.FromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return TransferResponse{}, rpc.FromStatus(err)
		}
		switch x := m.Msg.(type) {
		case *pb.TransferMessage_Progress:
			if onProgress != nil {
				onProgress(progressFromPB(x.Progress))
			}
		case *pb.TransferMessage_Result:
			return TransferResponse{Progress: progressFromPB(x.Result)}, nil
		default:
			return TransferResponse{}, fmt.Errorf("store: unexpected message %T from plugin", m.Msg)
		}
	}
}

// Push implements Store.
func (c *Client) Push(ctx context.Context, r TransferRequest) (TransferResponse, error) {
	stream, err := c.c.Push(ctx, &pb.TransferRequest{Name: r.Name, Pieces: piecesToPB(r.Pieces)})
	return receive(stream, err, r.OnProgress)
}

// Fetch implements Store.
func (c *Client) Fetch(ctx context.Context, r TransferRequest) (TransferResponse, error) {
	stream, err := c.c.Fetch(ctx, &pb.TransferRequest{Name: r.Name, Pieces: piecesToPB(r.Pieces)})
	return receive(stream, err, r.OnProgress)
}

// Chunks implements Store.
func (c *Client) Chunks(ctx context.Context, r ChunksRequest) (ChunksResponse, error) {
	out, err := c.c.Chunks(ctx, &pb.ChunksRequest{Name: r.Name})
	if err != nil {
		return ChunksResponse{}, rpc.FromStatus(err)
	}
	return ChunksResponse{Sums: out.Sums}, nil
}

// Delete implements Store.
func (c *Client) Delete(ctx context.Context, r DeleteRequest) (DeleteResponse, error) {
	_, err := c.c.Delete(ctx, &pb.DeleteRequest{Name: r.Name, Versions: r.Versions, Sums: r.Sums})
	return DeleteResponse{}, rpc.FromStatus(err)
}
