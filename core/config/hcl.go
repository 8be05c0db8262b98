package config

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl"
	"github.com/hashicorp/hcl/hcl/ast"
	"github.com/hashicorp/hcl/hcl/parser"
)

// rawBytes is a koanf provider of bytes.
type rawBytes []byte

func (r rawBytes) ReadBytes() ([]byte, error)    { return r, nil }
func (r rawBytes) Read() (map[string]any, error) { return nil, errors.New("rawBytes: use ReadBytes") }

// hclParser is a koanf parser for HCL that also records the line of each
// key, so errors can point at it, and that merges repeated blocks
// (plugin "a" {…} plugin "b" {…}) into one map.
type hclParser struct {
	lines map[string]int
}

func (p *hclParser) Unmarshal(b []byte) (map[string]any, error) {
	f, err := parser.Parse(b)
	if err != nil {
		return nil, err
	}
	p.lines = map[string]int{}
	if list, ok := f.Node.(*ast.ObjectList); ok {
		p.walk(list, "")
	}
	var out map[string]any
	if err := hcl.DecodeObject(&out, f); err != nil {
		return nil, err
	}
	return normalize(out).(map[string]any), nil
}

func (p *hclParser) Marshal(map[string]any) ([]byte, error) {
	return nil, errors.New("config: writing HCL is not supported")
}

func (p *hclParser) walk(list *ast.ObjectList, prefix string) {
	for _, item := range list.Items {
		key := prefix
		for _, k := range item.Keys {
			key += unquote(k.Token.Text) + "."
			if _, ok := p.lines[strings.TrimSuffix(key, ".")]; !ok {
				p.lines[strings.TrimSuffix(key, ".")] = k.Token.Pos.Line
			}
		}
		if obj, ok := item.Val.(*ast.ObjectType); ok {
			p.walk(obj.List, key)
		}
	}
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

// normalize turns HCL's lists of single-key maps (one per block) into
// plain nested maps, merging repeated blocks.
func normalize(v any) any {
	switch x := v.(type) {
	case []map[string]any:
		merged := map[string]any{}
		for _, m := range x {
			for k, val := range m {
				if old, ok := merged[k].(map[string]any); ok {
					if nv, ok := normalize(val).(map[string]any); ok {
						for kk, vv := range nv {
							old[kk] = vv
						}
						continue
					}
				}
				merged[k] = normalize(val)
			}
		}
		return merged
	case map[string]any:
		for k, val := range x {
			x[k] = normalize(val)
		}
		return x
	case []any:
		// a list of blocks decodes as []any of maps; a list of values stays
		allMaps := len(x) > 0
		for _, e := range x {
			if _, ok := e.(map[string]any); !ok {
				allMaps = false
			}
		}
		if allMaps {
			ms := make([]map[string]any, len(x))
			for i, e := range x {
				ms[i] = e.(map[string]any)
			}
			return normalize(ms)
		}
		return x
	}
	return v
}

var posRE = regexp.MustCompile(`At (\d+):(\d+): (.*)`)
var lineRE = regexp.MustCompile(`line (\d+)`)

func hclErrLine(err error) int {
	if m := posRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func hclErrMsg(err error) string {
	msg := err.Error()
	if m := posRE.FindStringSubmatch(msg); m != nil {
		msg = m[3]
	}
	return "HCL syntax error: " + plainSyntax(msg)
}

// hclTokens name the parser's tokens as a person writes them.
var hclTokens = strings.NewReplacer("RBRACE", `"}"`, "LBRACE", `"{"`, "RBRACK", `"]"`, "LBRACK", `"["`, "ASSIGN", `"="`,
	"COMMA", `","`, "IDENT", "a name", "STRING", "a string", "NUMBER", "a number", "FLOAT", "a number", "BOOL", "true or false",
	"EOF", "the end of the file", "HEREDOC", "a heredoc")

// plainSyntax says the HCL parser's complaints in words: the two a
// person meets most, a stray "}" and a block left open, in a sentence of
// their own; the rest with its tokens named.
func plainSyntax(msg string) string {
	switch {
	case strings.Contains(msg, "got: RBRACE") && strings.HasPrefix(msg, "expected:"):
		return `a "}" here closes no block (a stray "}", or one too many)`
	case strings.Contains(msg, "expected closing RBRACE got: EOF"):
		return `a block is still open at the end of the file (a "}" is missing)`
	}
	return hclTokens.Replace(msg)
}
