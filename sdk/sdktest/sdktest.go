// Package sdktest connects a test to a plugin, in-process over go-plugin's
// in-memory gRPC or as a built binary, so conformance suites can run the
// same checks both ways.
package sdktest

import (
	"context"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"

	"github.com/soulpad/soulpad/sdk"
)

// InProcess serves impl over go-plugin's in-memory gRPC connection and
// returns the host-side client of its kind (e.g. *crypt.Client). The
// connection closes when the test ends.
func InProcess(t testing.TB, impl sdk.Plugin) any {
	t.Helper()
	ps, err := sdk.PluginSet(impl)
	if err != nil {
		t.Fatalf("sdktest: %v", err)
	}
	client, _ := plugin.TestPluginGRPCConn(t, false, ps)
	t.Cleanup(func() { _ = client.Close() })
	for kind := range ps {
		raw, err := client.Dispense(kind)
		if err != nil {
			t.Fatalf("sdktest: dispense %s: %v", kind, err)
		}
		return raw
	}
	t.Fatal("sdktest: empty plugin set")
	return nil
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
		Logger:           hclog.New(&hclog.LoggerOptions{Name: "plugin", Level: hclog.Warn, Output: newTestWriter(t)}),
		StartTimeout:     30 * time.Second,
	})
	t.Cleanup(client.Kill)
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("sdktest: start %s: %v", path, err)
	}
	// Ask each kind until one answers Info; a plugin serves one kind.
	for _, k := range sdk.Kinds {
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
