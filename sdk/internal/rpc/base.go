package rpc

import (
	"context"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
)

// BaseServer serves the Base service for any plugin.
type BaseServer struct {
	pb.UnimplementedBaseServer
	Impl sdk.Plugin
}

// Info implements pb.BaseServer.
func (s *BaseServer) Info(ctx context.Context, _ *pb.InfoRequest) (*pb.InfoResponse, error) {
	r, err := s.Impl.Info(ctx, sdk.InfoRequest{})
	if err != nil {
		return nil, ToStatus(err)
	}
	out := &pb.InfoResponse{Name: r.Name, Kind: string(r.Kind), Version: r.Version, Capabilities: r.Capabilities, Description: r.Description}
	for _, v := range r.APIVersions {
		out.ApiVersions = append(out.ApiVersions, uint32(v))
	}
	return out, nil
}

// Configure implements pb.BaseServer.
func (s *BaseServer) Configure(ctx context.Context, req *pb.ConfigureRequest) (*pb.ConfigureResponse, error) {
	if _, err := s.Impl.Configure(ctx, sdk.ConfigureRequest{Config: req.GetConfigJson()}); err != nil {
		return nil, ToStatus(err)
	}
	return &pb.ConfigureResponse{}, nil
}

// BaseClient is the host side of the Base service; kind clients embed it.
type BaseClient struct {
	Base pb.BaseClient
}

// Info implements sdk.Plugin.
func (c *BaseClient) Info(ctx context.Context, _ sdk.InfoRequest) (sdk.InfoResponse, error) {
	r, err := c.Base.Info(ctx, &pb.InfoRequest{})
	if err != nil {
		return sdk.InfoResponse{}, FromStatus(err)
	}
	out := sdk.InfoResponse{Name: r.Name, Kind: sdk.Kind(r.Kind), Version: r.Version, Capabilities: r.Capabilities, Description: r.Description}
	for _, v := range r.ApiVersions {
		out.APIVersions = append(out.APIVersions, int(v))
	}
	return out, nil
}

// Configure implements sdk.Plugin.
func (c *BaseClient) Configure(ctx context.Context, req sdk.ConfigureRequest) (sdk.ConfigureResponse, error) {
	if _, err := c.Base.Configure(ctx, &pb.ConfigureRequest{ConfigJson: req.Config}); err != nil {
		return sdk.ConfigureResponse{}, FromStatus(err)
	}
	return sdk.ConfigureResponse{}, nil
}
