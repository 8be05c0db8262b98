package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/soulpad/soulpad/core/config"
	"github.com/soulpad/soulpad/core/lifecycle"
	"github.com/soulpad/soulpad/sdk"
)

// checkPlugins starts every plugin the config names (plugins.crypt, .vmm,
// …, and each plugin "…" block) and hands it its block, as a run would:
// a plugin that is not there, or that refuses its block (an unknown key,
// a bad value), is a problem at the key's line, with "did you mean".
func checkPlugins(ctx context.Context, cfg *config.Config) []error {
	host := lifecycle.NewHost(cfg, hclog.NewNullLogger(), nil)
	defer host.Close()
	var available []string
	if bins, err := host.List(); err == nil {
		for _, b := range bins {
			available = append(available, b.Name)
		}
	}
	type use struct {
		key  string // where the file names it
		kind sdk.Kind
	}
	uses := map[string]use{}
	for kind, name := range cfg.Plugins.ByKind() {
		if name != "" {
			uses[name] = use{"plugins." + kind, sdk.Kind(kind)}
		}
	}
	for name := range cfg.Plugin {
		if _, ok := uses[name]; !ok {
			kind, _, _ := strings.Cut(name, "-")
			uses[name] = use{"plugin." + name, sdk.Kind(kind)}
		}
	}
	names := make([]string, 0, len(uses))
	for n := range uses {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, name := range names {
		u := uses[name]
		if _, err := host.Find(name); err != nil {
			msg := fmt.Sprintf("no plugin %q in %s", name, strings.Join(host.Dirs(), ", "))
			if near := sdk.Nearest(name, available); near != "" {
				msg += fmt.Sprintf("; did you mean %q?", near)
			} else if len(available) > 0 {
				msg += "; there are: " + strings.Join(available, ", ")
			}
			errs = append(errs, cfg.At(u.key, msg))
			continue
		}
		if u.kind == "" || !knownKind(u.kind) {
			continue // a block for a plugin of no kind we know: left alone
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		p, err := host.Start(sctx, name, u.kind, cfg.PluginConfigJSON(name))
		cancel()
		if err != nil {
			key := "plugin." + name
			msg := cleanPluginErr(err.Error(), name)
			if errors.Is(err, sdk.ErrInvalidConfig) {
				// Point at the key the plugin names, when it names one.
				for k := range cfg.Plugin[name] {
					if strings.Contains(msg, fmt.Sprintf("%q", k)) || strings.HasPrefix(msg, k+" ") {
						key += "." + k
						break
					}
				}
			}
			errs = append(errs, cfg.At(key, name+": "+msg))
			continue
		}
		p.Kill()
	}
	return errs
}

func knownKind(k sdk.Kind) bool {
	for _, kind := range sdk.Kinds() {
		if kind == k {
			return true
		}
	}
	return false
}

// cleanPluginErr keeps what the plugin said of its block, without the
// wrapping around it.
func cleanPluginErr(msg, name string) string {
	if i := strings.LastIndex(msg, "desc = "); i >= 0 {
		msg = msg[i+len("desc = "):]
	}
	if i := strings.LastIndex(msg, "block): "); i >= 0 {
		msg = msg[i+len("block): "):]
	}
	for _, p := range []string{name + ": ", "invalid config: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return strings.TrimSuffix(msg, ": invalid config")
}
