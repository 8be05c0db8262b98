package detect

import (
	"context"
	"encoding/json"
	"fmt"

	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/rpc"
)

func init() {
	rpc.RegisterKind(rpc.KindGlue[Detect]{Kind: sdk.KindDetect, APIVersion: APIVersion, Order: 10, Interface: "detect.Detect",
		Serve: func(impl Detect, s *grpc.Server) { pb.RegisterDetectServer(s, &server{impl: impl}) },
		Client: func(base rpc.BaseClient, c *grpc.ClientConn) any {
			return &Client{BaseClient: base, c: pb.NewDetectClient(c)}
		},
	})
}

type server struct {
	pb.UnimplementedDetectServer
	impl Detect
}

func (s *server) Probe(ctx context.Context, r *pb.ProbeRequest) (*pb.ProbeResponse, error) {
	out, err := s.impl.Probe(ctx, ProbeRequest{StorageProbe: r.StorageProbe, StoragePaths: r.StoragePaths})
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	b, err := json.Marshal(out.Profile)
	if err != nil {
		return nil, rpc.ToStatus(err)
	}
	return &pb.ProbeResponse{ProfileJson: b}, nil
}

// Client is the host's view of a detect plugin.
type Client struct {
	rpc.BaseClient
	c pb.DetectClient
}

var _ Detect = (*Client)(nil)

// Probe implements Detect.
func (c *Client) Probe(ctx context.Context, r ProbeRequest) (ProbeResponse, error) {
	out, err := c.c.Probe(ctx, &pb.ProbeRequest{StorageProbe: r.StorageProbe, StoragePaths: r.StoragePaths})
	if err != nil {
		return ProbeResponse{}, rpc.FromStatus(err)
	}
	var p HostProfile
	if err := json.Unmarshal(out.ProfileJson, &p); err != nil {
		return ProbeResponse{}, fmt.Errorf("decode host profile: %w", err)
	}
	return ProbeResponse{Profile: p}, nil
}
