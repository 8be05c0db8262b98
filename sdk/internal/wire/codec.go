package wire

import (
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// NewServer is the gRPC server plugins serve on: go-plugin's options,
// and a codec that clears each request's wire bytes once decoded.
// Requests carry passphrases and key files; decoded, they are the
// plugin's to wipe (crypt's server does), and the wire copy in gRPC's
// pooled buffers would otherwise stay until the buffer is reused.
func NewServer(opts []grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(opts, grpc.ForceServerCodecV2(wipingCodec{encoding.GetCodecV2("proto")}),
		grpc.MaxRecvMsgSize(MaxMessageBytes), grpc.MaxSendMsgSize(MaxMessageBytes))...)
}

// MaxMessageBytes bounds one message between the core and a plugin.
// gRPC's default, 4 MiB, is less than the version manifest of a pad of
// some 40 GiB (a store's manifest lists every chunk); bulk data never
// crosses the RPC.
const MaxMessageBytes = 256 << 20

// DialOptions are the host side's: the same bound on messages.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessageBytes), grpc.MaxCallSendMsgSize(MaxMessageBytes))}
}

// wipingCodec is gRPC's proto codec whose Unmarshal clears what it read.
type wipingCodec struct{ encoding.CodecV2 }

func (c wipingCodec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("wire: cannot decode into %T, not a proto message", v)
	}
	b := data.Materialize()
	err := proto.Unmarshal(b, m) // bytes fields are copied out of b
	clear(b)
	for _, buf := range data {
		// gRPC frees data after Unmarshal: nothing reads it again.
		clear(buf.ReadOnlyData())
	}
	return err
}
