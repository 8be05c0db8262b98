package wire

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/soulpad/soulpad/sdk/internal/pb"
)

// The codec decodes as gRPC's proto codec does, and leaves the received
// bytes zeroed: the passphrase is then only in the decoded message.
func TestUnmarshalClearsWhatItRead(t *testing.T) {
	pass := []byte("correct horse battery staple 42")
	wireBytes, err := encoding.GetCodecV2("proto").Marshal(&pb.UnlockRequest{VaultPath: "/pad/vault", Credential: &pb.Credential{Passphrase: pass}})
	if err != nil {
		t.Fatal(err)
	}
	raw := wireBytes.Materialize()
	// Received in two pieces, as a message split over frames would be.
	half := len(raw) / 2
	a, b := bytes.Clone(raw[:half]), bytes.Clone(raw[half:])
	in := mem.BufferSlice{mem.SliceBuffer(a), mem.SliceBuffer(b)}
	if !bytes.Contains(append(bytes.Clone(a), b...), pass) {
		t.Fatal("the passphrase is not in the wire bytes: the check below could not fail")
	}
	var got pb.UnlockRequest
	c := wipingCodec{encoding.GetCodecV2("proto")}
	if err := c.Unmarshal(in, &got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.GetCredential().GetPassphrase(), pass) || got.GetVaultPath() != "/pad/vault" {
		t.Fatalf("decoded %v", &got)
	}
	for _, piece := range [][]byte{a, b} {
		if !bytes.Equal(piece, make([]byte, len(piece))) {
			t.Fatalf("wire bytes left after decoding: %x", piece)
		}
	}
	if c.Name() != "proto" {
		t.Fatalf("codec name %q: gRPC matches it against the content type", c.Name())
	}
	if err := c.Unmarshal(in, "not a message"); err == nil {
		t.Fatal("decoded into a string")
	}
}
