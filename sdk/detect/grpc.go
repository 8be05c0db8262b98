package detect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/registry"
	"github.com/soulpad/soulpad/sdk/internal/rpc"
)

func init() {
	registry.Register(registry.Kind{Name: string(sdk.KindDetect), APIVersion: APIVersion, Order: 10, Maker: func(impl any) (plugin.Plugin, error) {
		if impl == nil {
			return &grpcPlugin{}, nil
		}
		d, ok := impl.(Detect)
		if !ok {
			return nil, errors.New("Info says kind detect but the plugin does not implement detect.Detect")
		}
		return &grpcPlugin{impl: d}, nil
	}})
}

type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl Detect
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	pb.RegisterBaseServer(s, &rpc.BaseServer{Impl: p.impl})
	pb.RegisterDetectServer(s, &server{impl: p.impl})
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return &Client{BaseClient: rpc.BaseClient{Base: pb.NewBaseClient(c)}, c: pb.NewDetectClient(c)}, nil
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
