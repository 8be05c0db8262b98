package pluginhost

import "github.com/hashicorp/go-hclog"

// goPluginInternals are go-plugin's own messages about starting and
// stopping a plugin process: noise at debug, shown at trace.
var goPluginInternals = map[string]bool{
	"starting plugin": true, "plugin started": true, "waiting for RPC address": true,
	"using plugin": true, "plugin process exited": true, "plugin exited": true,
	"plugin address": true, "stdio EOF, exiting copy loop": true,
}

// quietLog is the logger handed to go-plugin: the plugin's own log lines
// pass at their level; go-plugin's internals only at trace.
type quietLog struct{ hclog.Logger }

func (l quietLog) drop(msg string) bool { return goPluginInternals[msg] && !l.IsTrace() }

func (l quietLog) Debug(msg string, args ...any) {
	if !l.drop(msg) {
		l.Logger.Debug(msg, args...)
	}
}

func (l quietLog) Info(msg string, args ...any) {
	if !l.drop(msg) {
		l.Logger.Info(msg, args...)
	}
}

func (l quietLog) Log(level hclog.Level, msg string, args ...any) {
	if !l.drop(msg) {
		l.Logger.Log(level, msg, args...)
	}
}

func (l quietLog) With(args ...any) hclog.Logger  { return quietLog{l.Logger.With(args...)} }
func (l quietLog) Named(name string) hclog.Logger { return quietLog{l.Logger.Named(name)} }
func (l quietLog) ResetNamed(name string) hclog.Logger {
	return quietLog{l.Logger.ResetNamed(name)}
}
