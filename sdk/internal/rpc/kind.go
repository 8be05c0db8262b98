package rpc

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/pb"
	"github.com/soulpad/soulpad/sdk/internal/registry"
)

// KindGlue is what a kind package says about its gRPC service; RegisterKind
// makes the go-plugin glue from it, the same for every kind.
type KindGlue[I sdk.Plugin] struct {
	Kind       sdk.Kind
	APIVersion int
	// Order places the kind in a session (see registry.Kind).
	Order int
	// Interface names I for the error a plugin of the wrong shape gets
	// ("vmm.VMM").
	Interface string
	// Serve registers the kind's service for impl (the Base service is
	// registered beside it).
	Serve func(impl I, s *grpc.Server)
	// Client is the kind's host-side client over c; base answers Info
	// and Configure.
	Client func(base BaseClient, c *grpc.ClientConn) any
}

// RegisterKind registers a kind in the registry with its go-plugin glue.
// Kind packages call it once, from init.
func RegisterKind[I sdk.Plugin](g KindGlue[I]) {
	registry.Register(registry.Kind{Name: string(g.Kind), APIVersion: g.APIVersion, Order: g.Order, Maker: func(impl any) (plugin.Plugin, error) {
		if impl == nil {
			return &grpcPlugin[I]{glue: g}, nil
		}
		v, ok := impl.(I)
		if !ok {
			return nil, fmt.Errorf("Info says kind %s but the plugin does not implement %s", g.Kind, g.Interface)
		}
		return &grpcPlugin[I]{glue: g, impl: v, served: true}, nil
	}})
}

// grpcPlugin is go-plugin's view of one kind: the server side holds the
// implementation, the host side makes the client.
type grpcPlugin[I sdk.Plugin] struct {
	plugin.NetRPCUnsupportedPlugin
	glue   KindGlue[I]
	impl   I
	served bool
}

func (p *grpcPlugin[I]) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	if !p.served {
		return fmt.Errorf("%s: no implementation to serve", p.glue.Kind)
	}
	pb.RegisterBaseServer(s, &BaseServer{Impl: p.impl})
	p.glue.Serve(p.impl, s)
	return nil
}

func (p *grpcPlugin[I]) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return p.glue.Client(BaseClient{Base: pb.NewBaseClient(c)}, c), nil
}
