package lifecycle

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/pluginhost"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/store"
)

// startOne starts the one plugin a command needs (name, of kind), found
// in dirs (nil: the config's search path) and configured with its block.
// The caller closes the host, which stops the plugin; on error nothing
// is left running.
func startOne(ctx context.Context, cfg *config.Config, log hclog.Logger, dirs []string, name string, kind sdk.Kind) (*pluginhost.Host, *pluginhost.Plugin, error) {
	host := NewHost(cfg, log, dirs)
	p, err := host.Start(ctx, name, kind, cfg.PluginConfigJSON(name))
	if err != nil {
		host.Close()
		return nil, nil, err
	}
	return host, p, nil
}

// NewHost is the plugin host for cfg, the one way it is made: plugins
// found in dirs (nil: the config's search path), pinned by
// plugins.sha256, started in the config's directory. The pad's plugins/
// is searched last, and a plugin found only there runs when pinned or
// with plugins.pad_plugins.
func NewHost(cfg *config.Config, log hclog.Logger, dirs []string) *pluginhost.Host {
	if dirs == nil {
		dirs = PluginDirs(cfg)
	}
	host := pluginhost.New(log.Named("plugin"), dirs, cfg.Plugins.SHA256)
	host.Strict = cfg.Plugins.Strict
	host.WorkDir = cfg.BaseDir
	host.Carried = filepath.Join(cfg.Pad.Path, "plugins")
	host.AllowCarried = cfg.Plugins.PadPlugins
	return host
}

// OpenStore starts the store plugin plugins.store names; the caller
// closes the host.
func OpenStore(ctx context.Context, cfg *config.Config, log hclog.Logger) (*pluginhost.Host, store.Store, error) {
	if cfg.Plugins.Store == "" {
		return nil, nil, fmt.Errorf("no store is configured: set plugins.store (e.g. \"store-s3\"), store.name and the plugin's block in %s", cfg.Source)
	}
	host, p, err := startOne(ctx, cfg, log, nil, cfg.Plugins.Store, sdk.KindStore)
	if err != nil {
		return nil, nil, err
	}
	return host, p.Store(), nil
}
