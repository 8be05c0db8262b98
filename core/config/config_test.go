package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, hcl string, env ...string) (*Config, error) {
	t.Helper()
	return LoadBytes("site.hcl", "/base", []byte(hcl), env)
}

const minimal = `
pad { path = "pad" }
plugins {
  crypt = "crypt-plain"
  vmm   = "vmm-qemu"
}
`

func TestDefaultsAndRelativePaths(t *testing.T) {
	c, err := load(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if c.Pad.Path != "/base/pad" {
		t.Errorf("pad.path = %q; want it relative to the config's directory", c.Pad.Path)
	}
	d := Defaults()
	if c.Machine != d.Machine || c.Session != d.Session || c.Log != d.Log {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestExampleSiteConfigIsValid(t *testing.T) {
	c, err := Load(filepath.Join("..", "..", "examples", "site.hcl"))
	if err != nil {
		t.Fatalf("examples/site.hcl: %v", err)
	}
	if c.Plugins.VMM == "" || c.Plugins.Crypt == "" {
		t.Fatalf("examples/site.hcl chooses no plugins: %+v", c.Plugins)
	}
}

func TestBuiltInDefaultIsValid(t *testing.T) {
	if _, err := Load(""); err != nil {
		t.Fatalf("built-in default: %v", err)
	}
}

func TestErrorsNameFileLineKeyAndWhatIsValid(t *testing.T) {
	cases := []struct {
		name, hcl string
		want      []string
	}{
		{"unknown key", minimal + "machine {\n  memory = 512\n}\n", []string{"site.hcl:8: machine.memory: unknown key", "memory_mib"}},
		{"misspelt key", minimal + "machine {\n  memry_mib = 512\n}\n", []string{"site.hcl:8: machine.memry_mib: unknown key (did you mean \"memory_mib\"?)"}},
		{"unknown block", minimal + "pda { path = \"x\" }\n", []string{`site.hcl:7: pda.path: unknown block "pda" (did you mean "pad"?)`, "valid blocks: log, machine, pad, plugin,"}},
		{"bad enum", minimal + "machine {\n  network = \"bridge\"\n}\n", []string{"site.hcl:8: machine.network", `"bridge" is not valid`, "user, none"}},
		{"out of range", minimal + "machine { memory_mib = 4 }\n", []string{"site.hcl:7: machine.memory_mib", "between 16 and"}},
		{"wrong type", minimal + "machine {\n vcpus = \"many\"\n}\n", []string{"site.hcl:8: machine.vcpus"}},
		{"syntax", "pad {\n  path = \n}\n", []string{"site.hcl:4", "HCL syntax error"}},
		{"stray brace", minimal + "}\n", []string{"site.hcl:7", `a "}" here closes no block`}},
		{"open block", minimal + "machine {\n  vcpus = 1\n", []string{`a block is still open at the end of the file (a "}" is missing)`}},
		{"missing", `plugins { vmm = "vmm-qemu" }`, []string{"pad.path: must be set", "plugins.crypt: must be set"}},
		{"bad pin", minimal + "plugins {\n sha256 { \"vmm-qemu\" = \"abc\" }\n}\n", []string{"site.hcl:8: plugins.sha256.vmm-qemu", "64 hex digits"}},
		{"lease too short", minimal + "store { lease_minutes = 0 }\n", []string{"site.hcl:7: store.lease_minutes", "0 is out of range", "15 is the default"}},
		{"backup without plugin", minimal + "session { backup_after_suspend = true }\n", []string{"session.backup_after_suspend", "plugins.backup"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := load(t, tc.hcl)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestEnvironmentOverrides(t *testing.T) {
	c, err := load(t, minimal, "SOULPAD_MACHINE_MEMORY_MIB=1024", "SOULPAD_PLUGINS_DIRS=/a, /b", "SOULPAD_PAD_PATH=/media/usb", "HOME=/root")
	if err != nil {
		t.Fatal(err)
	}
	if c.Machine.MemoryMiB != 1024 || c.Pad.Path != "/media/usb" || len(c.Plugins.Dirs) != 2 || c.Plugins.Dirs[1] != "/b" {
		t.Fatalf("env not applied: %+v %+v %+v", c.Machine, c.Pad, c.Plugins)
	}
	_, err = load(t, minimal, "SOULPAD_MACHINE_MEMORY=1")
	var ce *Error
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "SOULPAD_MACHINE_MEMORY_MIB") {
		t.Fatalf("a misspelt variable = %v; want an error naming the valid one", err)
	}
	if _, err := load(t, minimal, "SOULPAD_MACHINE_VCPUS=0"); err == nil || !strings.Contains(err.Error(), "environment: SOULPAD_MACHINE_VCPUS (machine.vcpus): ") {
		t.Fatalf("an invalid override = %v; want it validated", err)
	}
}

func TestPluginBlocksReachPluginsAsJSON(t *testing.T) {
	c, err := load(t, minimal+`
plugin "crypt-plain" { allow_no_encryption = true }
plugin "vmm-qemu" {
  binary = "/usr/bin/qemu-system-x86_64"
  extra_args = ["-nodefaults"]
}
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(c.PluginConfigJSON("crypt-plain")); got != `{"allow_no_encryption":true}` {
		t.Errorf("crypt-plain block = %s", got)
	}
	if got := string(c.PluginConfigJSON("vmm-qemu")); got != `{"binary":"/usr/bin/qemu-system-x86_64","extra_args":["-nodefaults"]}` {
		t.Errorf("vmm-qemu block = %s", got)
	}
	if got := string(c.PluginConfigJSON("absent")); got != `{}` {
		t.Errorf("absent block = %s", got)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.hcl"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v", err)
	}
}

// Whatever the file says, loading it gives a valid config or an error,
// never a panic.
func FuzzLoadBytes(f *testing.F) {
	f.Add(DefaultHCL())
	f.Add([]byte(`machine { memory_mib = "lots" }`))
	f.Add([]byte(`plugins { crypt = "../x" }`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := LoadBytes("fuzz.hcl", t.TempDir(), b, nil)
		if err == nil && (c.Plugins.Crypt == "" || c.Session.KeepPoints < 1) {
			t.Fatalf("accepted an invalid config: %+v", c)
		}
	})
}

// plugins.strict needs every chosen plugin pinned, and says which is not.
func TestStrictNeedsPins(t *testing.T) {
	_, err := LoadBytes("site.hcl", t.TempDir(), []byte(`
plugins {
  crypt  = "crypt-luks"
  vmm    = "vmm-qemu"
  strict = true
  sha256 { "crypt-luks" = "`+strings.Repeat("ab", 32)+`" }
}`), nil)
	if err == nil || !strings.Contains(err.Error(), `plugins.vmm = "vmm-qemu" is not pinned`) {
		t.Fatalf("err = %v", err)
	}
}

// machine.kernel and machine.initrd are relative to the config's
// directory, as site.hcl says, not to where soulpad runs.
func TestMachineFilesAreRelativeToTheConfig(t *testing.T) {
	c, err := load(t, minimal+`machine {
  kernel = "guest/vmlinuz"
  initrd = "/abs/initrd.img"
}`)
	if err != nil {
		t.Fatal(err)
	}
	if c.Machine.Kernel != "/base/guest/vmlinuz" || c.Machine.Initrd != "/abs/initrd.img" {
		t.Fatalf("kernel %q, initrd %q; want /base/guest/vmlinuz and the absolute path unchanged", c.Machine.Kernel, c.Machine.Initrd)
	}
}

// A value of the wrong type says what it should be, and where it came
// from: the file's line, or the environment variable.
func TestWrongTypeSaysWhatAndWhere(t *testing.T) {
	_, err := load(t, minimal+"machine {\n  vcpus = \"two\"\n}\n")
	if err == nil || !strings.Contains(err.Error(), `site.hcl:8: machine.vcpus: want a whole number, not "two"`) {
		t.Fatalf("vcpus = \"two\": %v", err)
	}
	_, err = load(t, minimal, "SOULPAD_MACHINE_VCPUS=abc")
	if err == nil || !strings.Contains(err.Error(), `environment: SOULPAD_MACHINE_VCPUS: want a whole number, not "abc"`) || strings.Contains(err.Error(), "site.hcl") || strings.Contains(err.Error(), "decoding") {
		t.Fatalf("SOULPAD_MACHINE_VCPUS=abc: %v", err)
	}
}

// A plugin's keys from the environment: SOULPAD_PLUGIN_<PLUGIN>_<KEY>, the
// plugin found by its block (the longest name that has one) or by its
// kind; its errors name the variable.
func TestPluginKeysFromTheEnvironment(t *testing.T) {
	hcl := minimal + `
plugin "backup-restic" { repository = "/r" }
plugin "vmm-qemu-extra" { a = 1 }
`
	c, err := load(t, hcl,
		"SOULPAD_PLUGIN_BACKUP_RESTIC_PASSWORD_FILE=pw",
		"SOULPAD_PLUGIN_BACKUP_RESTIC_REPOSITORY=/srv/r",
		"SOULPAD_PLUGIN_VMM_QEMU_EXTRA_B=2",
		"SOULPAD_PLUGIN_STORE_S3_ENDPOINT=s3.example.org",
		"SOULPAD_PLUGIN_MAGIC_COOKIE=go-plugin's own")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"backup-restic":  `{"password_file":"pw","repository":"/srv/r"}`,
		"vmm-qemu-extra": `{"a":1,"b":"2"}`,
		"store-s3":       `{"endpoint":"s3.example.org"}`,
	} {
		if got := string(c.PluginConfigJSON(name)); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
	}
	if e := c.At("plugin.backup-restic.repository", "bad"); e.File != "environment" || !strings.Contains(e.Error(), "SOULPAD_PLUGIN_BACKUP_RESTIC_REPOSITORY") {
		t.Errorf("an error about a key the environment set: %v", e)
	}
	if e := c.At("plugin.vmm-qemu-extra.a", "bad"); e.File != "site.hcl" || e.Line != 9 {
		t.Errorf("an error about a key of the file: %+v", e)
	}
	if _, err := load(t, minimal, "SOULPAD_PLUGIN_NOSUCH=1"); err == nil || !strings.Contains(err.Error(), "SOULPAD_PLUGIN_NOSUCH: names no plugin key") {
		t.Errorf("SOULPAD_PLUGIN_NOSUCH: %v", err)
	}
	// A core key's wrong value from the environment is the variable's.
	_, err = load(t, minimal, "SOULPAD_PLUGINS_STORE=store-s3", "SOULPAD_STORE_NAME=Not A Name")
	if err == nil || !strings.Contains(err.Error(), "environment: SOULPAD_STORE_NAME (store.name): ") || strings.Contains(err.Error(), "site.hcl") {
		t.Errorf("store.name from the environment: %v; want the variable blamed, not the file", err)
	}
}

// A misspelt block is one error, naming the block, not one per key in it.
func TestAMisspeltBlockIsOneError(t *testing.T) {
	_, err := load(t, minimal+"machin {\n  memory_mib = 512\n  vcpus = 2\n  cpu_model = \"portable\"\n}\n")
	if err == nil {
		t.Fatal("accepted")
	}
	if n := strings.Count(err.Error(), "unknown"); n != 1 || !strings.Contains(err.Error(), `unknown block "machin" (did you mean "machine"?)`) {
		t.Fatalf("%d errors for one misspelt block:\n%v", n, err)
	}
}
