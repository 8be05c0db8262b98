package pluginhost

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestQuietLogDropsGoPluginInternalsBelowTrace(t *testing.T) {
	for _, level := range []hclog.Level{hclog.Debug, hclog.Trace} {
		var buf bytes.Buffer
		l := quietLog{hclog.New(&hclog.LoggerOptions{Output: &buf, Level: level})}.Named("vmm-qemu").With("pid", 1)
		l.Debug("starting plugin", "path", "/x")
		l.Debug("waiting for RPC address")
		l.Debug("vault opened", "engine", "userspace")
		l.Log(hclog.Debug, "plugin exited")
		out := buf.String()
		if !strings.Contains(out, "vault opened") {
			t.Errorf("%s: the plugin's own line is gone:\n%s", level, out)
		}
		if got := strings.Contains(out, "starting plugin") || strings.Contains(out, "plugin exited"); got != (level == hclog.Trace) {
			t.Errorf("%s: go-plugin's internals shown = %v:\n%s", level, got, out)
		}
	}
}
