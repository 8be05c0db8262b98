package sdk

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
)

// configKeys maps the json keys of struct type t to their fields' types.
func configKeys(t reflect.Type) map[string]reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	keys := map[string]reflect.Type{}
	if t.Kind() != reflect.Struct {
		return keys
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		keys[name] = f.Type
	}
	return keys
}

func decodeConfig(data []byte, v any) error {
	keys := configKeys(reflect.TypeOf(v))
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return fmt.Errorf("%w: the block is not an object: %v", ErrInvalidConfig, err)
	}
	valid := make([]string, 0, len(keys))
	for k := range keys {
		valid = append(valid, k)
	}
	sort.Strings(valid)
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	var errs []error
	for _, k := range names {
		t, ok := keys[k]
		if !ok {
			msg := fmt.Sprintf("unknown key %q", k)
			if near := Nearest(k, valid); near != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", near)
			}
			errs = append(errs, fmt.Errorf("%w: %s; valid keys: %s", ErrInvalidConfig, msg, strings.Join(valid, ", ")))
			continue
		}
		raw[k] = fromString(raw[k], t)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	fixed, err := json.Marshal(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidConfig, err)
	}
	dec := json.NewDecoder(bytes.NewReader(fixed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return fmt.Errorf("%w: key %q: want %s, not %s", ErrInvalidConfig, te.Field, want(te.Type), te.Value)
		}
		return fmt.Errorf("%w: %s", ErrInvalidConfig, err.Error())
	}
	return nil
}

// fromString turns a JSON string into the number or boolean a key of
// type t wants, when it reads as one; anything else is left as it is.
func fromString(m json.RawMessage, t reflect.Type) json.RawMessage {
	var s string
	if json.Unmarshal(m, &s) != nil {
		return m
	}
	s = strings.TrimSpace(s)
	switch t.Kind() {
	case reflect.Bool:
		if b, err := strconv.ParseBool(s); err == nil {
			return json.RawMessage(strconv.FormatBool(b))
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return json.RawMessage(strconv.FormatInt(n, 10))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			return json.RawMessage(strconv.FormatUint(n, 10))
		}
	case reflect.Float32, reflect.Float64:
		if f, err := strconv.ParseFloat(s, 64); err == nil {
			return json.RawMessage(strconv.FormatFloat(f, 'g', -1, 64))
		}
	case reflect.Slice:
		if t.Elem().Kind() == reflect.String {
			// A comma-separated list, as lists come from the environment.
			parts := []string{}
			for _, p := range strings.Split(s, ",") {
				if p = strings.TrimSpace(p); p != "" {
					parts = append(parts, p)
				}
			}
			b, _ := json.Marshal(parts)
			return b
		}
	}
	return m
}

func want(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		return "a list"
	case reflect.Map, reflect.Struct:
		return "a block"
	}
	return t.String()
}

// Nearest is the candidate closest to s, when it is close (at most one
// edit per three letters, and at least one allowed): for "did you mean".
func Nearest(s string, candidates []string) string {
	best, bestD := "", max(1, len(s)/3)+1
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the Damerau–Levenshtein distance (adjacent swaps count
// one), in bytes.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// ConfigPath resolves a file path from the plugin's block: relative paths
// are relative to the site config file's directory, which is the plugin's
// working directory (the host starts it there), so Configure should make
// them absolute before anything changes directory. "" stays "".
func ConfigPath(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	if abs, err := filepath.Abs(p); err == nil {
		return abs
	}
	return p
}

// ConfigProgram resolves a program from the plugin's block: a bare name
// ("restic") is looked up in PATH when run, a path with a slash is a
// ConfigPath.
func ConfigProgram(p string) string {
	if !strings.Contains(p, "/") {
		return p
	}
	return ConfigPath(p)
}
