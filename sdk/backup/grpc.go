package backup

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
	rpc.RegisterKind(rpc.KindGlue[Backup]{Kind: sdk.KindBackup, APIVersion: APIVersion, Order: 40, Interface: "backup.Backup",
		Serve: func(impl Backup, s *grpc.Server) { pb.RegisterBackupServer(s, &server{impl: impl}) },
		Client: func(base rpc.BaseClient, c *grpc.ClientConn) any {
			return &Client{BaseClient: base, c: pb.NewBackupClient(c)}
		},
	})
}

func progressToPB(p Progress) *pb.Progress {
	return &pb.Progress{Phase: p.Phase, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, Current: p.Current}
}

func progressFromPB(p *pb.Progress) Progress {
	return Progress{Phase: p.Phase, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, Current: p.Current}
}

type server struct {
	pb.UnimplementedBackupServer
	impl Backup
}

func (s *server) Backup(r *pb.BackupRequest, stream pb.Backup_BackupServer) error {
	out, err := s.impl.Backup(stream.Context(), BackupRequest{SourceDir: r.SourceDir, Tags: r.Tags, OnProgress: func(p Progress) {
		_ = stream.Send(&pb.BackupMessage{Msg: &pb.BackupMessage_Progress{Progress: progressToPB(p)}})
	}})
	if err != nil {
		return rpc.ToStatus(err)
	}
	return stream.Send(&pb.BackupMessage{Msg: &pb.BackupMessage_Result{Result: &pb.BackupResult{
		SnapshotId: out.SnapshotID, BytesScanned: out.BytesScanned, BytesSent: out.BytesSent, Files: out.Files}}})
}

func (s *server) List(ctx context.Context, _ *pb.ListRequest) (*pb.ListResponse, error) {
	out, err := s.impl.List(ctx, ListRequest{})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	resp := &pb.ListResponse{}
	for _, sn := range out.Snapshots {
		resp.Snapshots = append(resp.Snapshots, &pb.Snapshot{Id: sn.ID, UnixNano: sn.Time.UnixNano(), SizeBytes: sn.SizeBytes, Tags: sn.Tags})
	}
	return resp, nil
}

func (s *server) Verify(ctx context.Context, r *pb.VerifyRequest) (*pb.VerifyResponse, error) {
	v, ok := s.impl.(Verifier)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	out, err := v.Verify(ctx, VerifyRequest{SnapshotID: r.SnapshotId})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.VerifyResponse{Details: out.Details}, nil
}

func (s *server) Restore(r *pb.RestoreRequest, stream pb.Backup_RestoreServer) error {
	out, err := s.impl.Restore(stream.Context(), RestoreRequest{SnapshotID: r.SnapshotId, TargetDir: r.TargetDir, OnProgress: func(p Progress) {
		_ = stream.Send(&pb.RestoreMessage{Msg: &pb.RestoreMessage_Progress{Progress: progressToPB(p)}})
	}})
	if err != nil {
		return rpc.ToStatus(err)
	}
	return stream.Send(&pb.RestoreMessage{Msg: &pb.RestoreMessage_Result{Result: &pb.RestoreResult{BytesRestored: out.BytesRestored, Files: out.Files}}})
}

func (s *server) Prune(ctx context.Context, r *pb.PruneRequest) (*pb.PruneResponse, error) {
	p, ok := s.impl.(Pruner)
	if !ok {
		return nil, rpc.ToStatus(sdk.ErrUnsupported)
	}
	out, err := p.Prune(ctx, PruneRequest{KeepLast: int(r.KeepLast)})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.PruneResponse{Removed: out.Removed}, nil
}

// Client is the host's view of a backup plugin. It implements Backup,
// Verifier and Pruner (the optional ones fail with sdk.ErrUnsupported when
// the plugin lacks them).
type Client struct {
	rpc.BaseClient
	c pb.BackupClient
}

var (
	_ Backup   = (*Client)(nil)
	_ Verifier = (*Client)(nil)
	_ Pruner   = (*Client)(nil)
)

// Backup implements Backup.
func (c *Client) Backup(ctx context.Context, r BackupRequest) (BackupResponse, error) {
	stream, err := c.c.Backup(ctx, &pb.BackupRequest{SourceDir: r.SourceDir, Tags: r.Tags})
	if err != nil {
		return BackupResponse{}, rpc.FromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return BackupResponse{}, rpc.FromStatus(err)
		}
		switch x := m.Msg.(type) {
		case *pb.BackupMessage_Progress:
			if r.OnProgress != nil {
				r.OnProgress(progressFromPB(x.Progress))
			}
		case *pb.BackupMessage_Result:
			return BackupResponse{SnapshotID: x.Result.SnapshotId, BytesScanned: x.Result.BytesScanned, BytesSent: x.Result.BytesSent, Files: x.Result.Files}, nil
		default:
			return BackupResponse{}, fmt.Errorf("backup: unexpected message %T from plugin", m.Msg)
		}
	}
}

// List implements Backup.
func (c *Client) List(ctx context.Context, _ ListRequest) (ListResponse, error) {
	out, err := c.c.List(ctx, &pb.ListRequest{})
	if err != nil {
		return ListResponse{}, rpc.FromStatus(err)
	}
	var resp ListResponse
	for _, s := range out.Snapshots {
		resp.Snapshots = append(resp.Snapshots, Snapshot{ID: s.Id, Time: time.Unix(0, s.UnixNano), SizeBytes: s.SizeBytes, Tags: s.Tags})
	}
	return resp, nil
}

// Verify implements Verifier.
func (c *Client) Verify(ctx context.Context, r VerifyRequest) (VerifyResponse, error) {
	out, err := c.c.Verify(ctx, &pb.VerifyRequest{SnapshotId: r.SnapshotID})
	if err != nil {
		return VerifyResponse{}, rpc.FromStatus(err)
	}
	return VerifyResponse{Details: out.Details}, nil
}

// Restore implements Backup.
func (c *Client) Restore(ctx context.Context, r RestoreRequest) (RestoreResponse, error) {
	stream, err := c.c.Restore(ctx, &pb.RestoreRequest{SnapshotId: r.SnapshotID, TargetDir: r.TargetDir})
	if err != nil {
		return RestoreResponse{}, rpc.FromStatus(err)
	}
	for {
		m, err := stream.Recv()
		if err != nil {
			return RestoreResponse{}, rpc.FromStatus(err)
		}
		switch x := m.Msg.(type) {
		case *pb.RestoreMessage_Progress:
			if r.OnProgress != nil {
				r.OnProgress(progressFromPB(x.Progress))
			}
		case *pb.RestoreMessage_Result:
			return RestoreResponse{BytesRestored: x.Result.BytesRestored, Files: x.Result.Files}, nil
		default:
			return RestoreResponse{}, fmt.Errorf("restore: unexpected message %T from plugin", m.Msg)
		}
	}
}

// Prune implements Pruner.
func (c *Client) Prune(ctx context.Context, r PruneRequest) (PruneResponse, error) {
	out, err := c.c.Prune(ctx, &pb.PruneRequest{KeepLast: uint32(r.KeepLast)})
	if err != nil {
		return PruneResponse{}, rpc.FromStatus(err)
	}
	return PruneResponse{Removed: out.Removed}, nil
}
