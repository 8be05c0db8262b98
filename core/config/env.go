package config

import (
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/knadh/koanf/v2"
)

// applyEnv sets the keys SOULPAD_* variables in env name, noting each
// one's variable in fromEnv (line 0 in lines); a variable that names no
// key is an error of its own.
func applyEnv(k *koanf.Koanf, known map[string]reflect.Kind, env []string, lines map[string]int, fromEnv map[string]string) ([]error, error) {
	var errs []error
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, "SOULPAD_") || envIgnored[name] {
			continue
		}
		var key string
		var v any = val
		if strings.HasPrefix(name, pluginEnvPrefix) {
			// A key of a plugin's own block: SOULPAD_PLUGIN_<NAME>_<KEY>.
			var err error
			if key, err = pluginEnvKey(k, name); err != nil {
				errs = append(errs, &Error{File: "environment", Key: name, Msg: err.Error()})
				continue
			}
		} else if key, ok = envKey(known, name); !ok {
			errs = append(errs, &Error{File: "environment", Key: name, Msg: "matches no config key; valid: " + strings.Join(similarEnv(known, name), ", ")})
			continue
		} else if known[key] == reflect.Slice {
			v = splitList(val)
		}
		if err := k.Set(key, v); err != nil {
			return errs, err
		}
		lines[key] = 0
		fromEnv[key] = name
	}
	return errs, nil
}

var envIgnored = map[string]bool{"SOULPAD_CONFIG": true, "SOULPAD_PLUGIN_MAGIC_COOKIE": true}

const pluginEnvPrefix = "SOULPAD_PLUGIN_"

// pluginKinds are the first word of every plugin's name: the kinds
// plugins chooses a plugin for (one field per kind, see Plugins).
var pluginKinds = Plugins{}.Kinds()

// pluginEnvKey maps SOULPAD_PLUGIN_<NAME>_<KEY> to "plugin.<name>.<key>":
// NAME is a plugin's name with "-" as "_" (BACKUP_RESTIC for
// backup-restic), the longest that has a block in the file, else the
// plugin kind and one more word; KEY is the rest, lower case.
func pluginEnvKey(k *koanf.Koanf, name string) (string, error) {
	rest := strings.ToLower(strings.TrimPrefix(name, pluginEnvPrefix))
	words := strings.Split(rest, "_")
	blocks := k.MapKeys("plugin")
	for i := len(words) - 1; i >= 1; i-- {
		n := strings.Join(words[:i], "-")
		for _, b := range blocks {
			if b == n {
				return "plugin." + n + "." + strings.Join(words[i:], "_"), nil
			}
		}
	}
	if len(words) >= 3 {
		for _, kind := range pluginKinds {
			if words[0] == kind {
				return "plugin." + kind + "-" + words[1] + "." + strings.Join(words[2:], "_"), nil
			}
		}
	}
	return "", fmt.Errorf("names no plugin key: SOULPAD_PLUGIN_<PLUGIN>_<KEY>, the plugin's name with _ for -, e.g. SOULPAD_PLUGIN_BACKUP_RESTIC_REPOSITORY for repository in plugin \"backup-restic\"")
}

func envName(key string) string {
	return "SOULPAD_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func envKey(known map[string]reflect.Kind, name string) (string, bool) {
	for k := range known {
		if envName(k) == name {
			return k, true
		}
	}
	return "", false
}

func envNames(known map[string]reflect.Kind) []string {
	var out []string
	for k := range known {
		out = append(out, envName(k))
	}
	sort.Strings(out)
	return out
}

// similarEnv lists the valid names in the same section as name, or all.
func similarEnv(known map[string]reflect.Kind, name string) []string {
	all := envNames(known)
	parts := strings.SplitN(name, "_", 3)
	if len(parts) < 2 {
		return all
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, parts[0]+"_"+parts[1]+"_") {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return all
	}
	return out
}

// EnvNames lists the SOULPAD_* variables that override config keys.
func EnvNames() []string { return envNames(leafKeys(reflect.TypeOf(Config{}), "")) }

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
