// Package sdktest connects a test to a plugin, in-process over go-plugin's
// in-memory gRPC or as a built binary, so conformance suites can run the
// same checks both ways.
package sdktest

import (
	"context"
	"net"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/internal/wire"
)

// InProcess serves impl over an in-memory gRPC connection and returns
// the host-side client of its kind (e.g. *crypt.Client), the same client
// a host gets from a plugin process. The connection closes when the test
// ends. Nothing is logged but through the plugin's own logger (see Logger).
func InProcess(t testing.TB, impl sdk.Plugin) any {
	t.Helper()
	ps, err := sdk.PluginSet(impl)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	for kind, p := range ps {
		server, ok := p.(plugin.GRPCPlugin)
		if !ok {
			t.Fatalf("sdktest: kind %s has no gRPC plugin", kind)
		}
		lis := bufconn.Listen(1 << 20)
		srv := wire.NewServer(nil)
		if err := server.GRPCServer(nil, srv); err != nil {
			t.Fatalf("sdktest: serve %s: %v", kind, err)
		}
		go func() { _ = srv.Serve(lis) }()
		opts := append(sdk.GRPCDialOptions(),
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
			grpc.WithTransportCredentials(insecure.NewCredentials()))
		conn, err := grpc.NewClient("passthrough:///in-process", opts...)
		if err != nil {
			t.Fatalf("sdktest: connect %s: %v", kind, err)
		}
		t.Cleanup(func() {
			_ = conn.Close()
			srv.Stop()
		})
		client, ok := sdk.ClientPluginSet()[kind].(plugin.GRPCPlugin)
		if !ok {
			t.Fatalf("sdktest: no client for kind %s", kind)
		}
		raw, err := client.GRPCClient(context.Background(), nil, conn)
		if err != nil {
			t.Fatalf("sdktest: client %s: %v", kind, err)
		}
		return raw
	}
	t.Fatal("sdktest: empty plugin set")
	return nil
}

// Logger is a logger for a plugin under test: its lines go to the test's
// log, shown when the test fails (or with -v), and nowhere else.
func Logger(t testing.TB, name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug, Output: newTestWriter(t)})
}

// Binary starts the plugin binary at path and returns the host-side client
// of its kind. The process is killed when the test ends.
func Binary(t testing.TB, path string) any {
	t.Helper()
	impl, _ := BinaryStop(t, path)
	return impl
}

// BinaryStop is Binary, and also returns the func that lets go of the
// plugin the way a host does at exit: it asks the plugin to stop, waits
// up to two seconds for the process to end, then kills it.
func BinaryStop(t testing.TB, path string) (any, func()) {
	t.Helper()
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		Plugins:          sdk.ClientPluginSet(),
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		GRPCDialOptions:  sdk.GRPCDialOptions(),
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: newTestWriter(t)}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("sdktest: start %s: %v", path, err)
	}
	// Ask each kind until one answers Info; a plugin serves one kind.
	for _, k := range sdk.Kinds() {
		raw, err := rpc.Dispense(string(k))
		if err != nil {
			continue
		}
		p := raw.(sdk.Plugin)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		info, err := p.Info(ctx, sdk.InfoRequest{})
		cancel()
		if err == nil && info.Kind == k {
			return raw, client.Kill
		}
	}
	t.Fatalf("sdktest: %s serves no known plugin kind", path)
	return nil, nil
}

// testWriter sends plugin logs to the test log until the test ends.
type testWriter struct {
	t    testing.TB
	mu   *sync.Mutex
	done *bool
}

func newTestWriter(t testing.TB) testWriter {
	w := testWriter{t: t, mu: new(sync.Mutex), done: new(bool)}
	t.Cleanup(func() { w.mu.Lock(); *w.done = true; w.mu.Unlock() })
	return w
}

func (w testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !*w.done {
		w.t.Logf("%s", b)
	}
	return len(b), nil
}
