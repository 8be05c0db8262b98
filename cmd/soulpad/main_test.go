package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/testbin"
	"github.com/soulpad/soulpad/internal/testcli"
	"github.com/soulpad/soulpad/internal/testlibvirt"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	testlibvirt.Stop()
	os.Exit(code)
}

func TestHelpSaysWhatEachCommandDoes(t *testing.T) {
	e := testcli.Setup(t)
	out, _, code := e.Run(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	for _, c := range []string{"init", "run", "suspend", "status", "plugins", "journal", "config"} {
		if !strings.Contains(out, "  "+c+" ") {
			t.Errorf("--help does not list %s:\n%s", c, out)
		}
		sub, _, code := e.Run(t, c, "--help")
		if code != 0 || !strings.Contains(sub, "Usage:") || len(sub) < 200 {
			t.Errorf("%s --help (exit %d) says too little:\n%s", c, code, sub)
		}
	}
}

// Help for a command that does not exist is a wrong argument (exit 2)
// that points at the list of commands, however it is asked for; help for
// one that does exist is its page (exit 0).
func TestHelpForAnUnknownCommandIsRefused(t *testing.T) {
	e := testcli.Setup(t)
	for _, args := range [][]string{{"help", "frobnicate"}, {"--help", "frobnicate"}, {"frobnicate", "--help"}, {"frobnicate"}, {"store", "frob", "--help"}} {
		out, errOut, code := e.Run(t, args...)
		if code != 2 || !strings.Contains(errOut, "'soulpad --help' lists the commands") || strings.Contains(out, "Usage:") {
			t.Errorf("soulpad %s: exit %d; want 2, a pointer to 'soulpad --help' and no help page\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
	for _, args := range [][]string{{"help", "run"}, {"help"}, {"store", "--help"}} {
		if out, errOut, code := e.Run(t, args...); code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("soulpad %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	e := testcli.Setup(t)
	ex := filepath.Join(testbin.Root(t), "examples", "site.hcl")
	// The example's plugins, each started and handed its block.
	for _, p := range []string{"crypt-gocryptfs", "crypt-luks", "detect-linux", "vmm-qemu", "vmm-libvirt"} {
		testbin.Build(t, "plugins/"+p)
	}
	t.Setenv("SOULPAD_PLUGINS_DIRS", testbin.Dir())
	out, errOut, code := e.Run(t, "config", "check", ex)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("config check examples/site.hcl: exit %d\n%s%s", code, out, errOut)
	}
	bad := filepath.Join(t.TempDir(), "broken.hcl")
	_ = os.WriteFile(bad, []byte("pad { path = \"p\" }\nplugins {\n  crypt = \"crypt-plain\"\n  vmm = \"vmm-qemu\"\n  vmn = \"x\"\n}\n"), 0o600)
	_, errOut, code = e.Run(t, "config", "check", bad)
	if code != 2 || !strings.Contains(errOut, "broken.hcl:5: plugins.vmn: unknown key") {
		t.Fatalf("broken config: exit %d, stderr %q; want exit 2 naming line 5 and the key", code, errOut)
	}
	// A bad flag is the same kind of mistake.
	if _, errOut, code := e.Run(t, "status", "--no-such-flag"); code != 2 {
		t.Fatalf("an unknown flag: exit %d %s; want 2", code, errOut)
	}
}

func TestPluginsListsKindVersionChecksum(t *testing.T) {
	e := testcli.Setup(t)
	out, errOut, code := e.Run(t, "plugins", "--json")
	if code != 0 {
		t.Fatalf("plugins: exit %d: %s", code, errOut)
	}
	var rows []struct{ Name, Kind, Version, SHA256 string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("plugins --json: %v\n%s", err, out)
	}
	kinds := map[string]string{}
	for _, r := range rows {
		kinds[r.Name] = r.Kind
		if len(r.SHA256) != 64 || r.Version == "" {
			t.Errorf("row %+v lacks a checksum or version", r)
		}
	}
	if kinds["crypt-plain"] != "crypt" || kinds["vmm-counter"] != "vmm" {
		t.Fatalf("plugins found: %v", kinds)
	}
}

func TestInitRunSuspendStatusJournal(t *testing.T) {
	e := testcli.Setup(t)
	out, errOut, code := e.Run(t, "init")
	if code != 0 || !strings.Contains(out, "created at "+e.Pad) {
		t.Fatalf("init: exit %d\n%s%s", code, out, errOut)
	}
	// Before any session: empty lists are [], not null.
	if js, _, _ := e.Run(t, "status", "--json"); !strings.Contains(js, `"suspend_points": []`) || !strings.Contains(js, `"last_session": []`) {
		t.Errorf("status --json of a new pad: want [] for its empty lists:\n%s", js)
	} else {
		var rep struct {
			Pad struct {
				VMM struct{ Name, Version string } `json:"vmm"`
			} `json:"pad"`
		}
		if json.Unmarshal([]byte(js), &rep) != nil || rep.Pad.VMM.Name != "vmm-counter" || rep.Pad.VMM.Version == "" {
			t.Errorf("status --json: the pad's VMM has no name or version:\n%s", js)
		}
	}
	if _, err := os.Stat(filepath.Join(e.Pad, "plugins", "vmm-counter")); err != nil {
		t.Fatalf("init did not carry the plugins onto the pad: %v", err)
	}

	// Suspend from another terminal over the control socket.
	_, buf, done := e.StartRun(t) // returns once the machine runs
	st, _, _ := e.Run(t, "status")
	if !strings.Contains(st, "running    yes") {
		t.Errorf("status while running:\n%s", st)
	}
	out, errOut, code = e.Run(t, "suspend")
	if code != 0 || !strings.Contains(out, "suspend requested") {
		t.Fatalf("suspend: exit %d\n%s%s", code, out, errOut)
	}
	testcli.Wait(t, done, buf)
	for _, want := range []string{"suspended to point", "STAGE", "boot", "unlock", "resume", "suspend", "shutdown", "cold boot: no suspend point yet",
		"suspend requested, after the machine ran "} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("run output lacks %q:\n%s", want, buf.String())
		}
	}

	// Ctrl-C suspends too, and the second run resumes.
	cmd, buf, done := e.StartRun(t) // the signal handler is in place by then
	_ = cmd.Process.Signal(syscall.SIGINT)
	testcli.Wait(t, done, buf)
	if !strings.Contains(buf.String(), "resumed ") || !strings.Contains(buf.String(), "suspended to point") {
		t.Fatalf("second run did not resume and suspend:\n%s", buf.String())
	}

	out, _, code = e.Run(t, "status", "--json")
	var rep struct {
		Running     bool
		Points      []struct{ ID string } `json:"suspend_points"`
		LastSession []struct {
			Stage      string
			DurationMS float64 `json:"duration_ms"`
		} `json:"last_session"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil {
		t.Fatalf("status --json: exit %d\n%s", code, out)
	}
	if rep.Running || len(rep.Points) != 2 || len(rep.LastSession) != 7 {
		t.Fatalf("status: %+v; want 2 points and 7 timed stages", rep)
	}
	// Each point on one line, the one the next run resumes marked.
	text, _, _ := e.Run(t, "status")
	text, _, _ = strings.Cut(text, "Last session:")
	if strings.Count(text, rep.Points[0].ID) != 1 || strings.Count(text, "← next") != 1 || !strings.Contains(text, rep.Points[1].ID) {
		t.Errorf("status lists a point twice or marks no next one:\n%s", text)
	}
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, "← next") && !strings.Contains(l, rep.Points[1].ID) {
			t.Errorf("status marks %q as next; want %s", l, rep.Points[1].ID)
		}
	}
	out, _, code = e.Run(t, "journal", "--last")
	if code != 0 || !strings.Contains(out, "suspend point sealed") {
		t.Fatalf("journal: exit %d\n%s", code, out)
	}
	_, errOut, code = e.Run(t, "suspend")
	if code == 0 || !strings.Contains(errOut, "no `soulpad run` is running") {
		t.Fatalf("suspend with nothing running: exit %d, %q", code, errOut)
	}
}

func TestSecretsNeverFromArgv(t *testing.T) {
	e := testcli.Setup(t)
	_, errOut, code := e.Run(t, "run", "--passphrase", "hunter2hunter2hunter2")
	if code == 0 || !strings.Contains(errOut, "unknown flag") {
		t.Fatalf("a passphrase flag was accepted: exit %d %s", code, errOut)
	}
}

// soulpad killed outright while it runs (a crash): its plugins get SIGTERM
// from the kernel and the crypt plugin locks the vault before it ends, so
// no plaintext stays mounted on the PC. crypt-gocryptfs, the default,
// whose daemon would otherwise outlive everything.
func TestCrashedRunLeavesVaultLocked(t *testing.T) {
	for _, b := range []string{"gocryptfs", "fusermount3"} {
		if _, err := exec.LookPath(b); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s missing; `make test` installs it", b)
			}
			t.Skipf("%s missing", b)
		}
	}
	e := testcli.Setup(t)
	testbin.Build(t, "plugins/crypt-gocryptfs")
	dir := filepath.Dir(e.Cfg)
	if err := os.WriteFile(filepath.Join(dir, "pass"), []byte("a passphrase long enough for the pad\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hcl, _ := os.ReadFile(e.Cfg)
	hcl = []byte(strings.NewReplacer(`crypt = "crypt-plain"`, `crypt = "crypt-gocryptfs"`,
		`plugin "crypt-plain" { allow_no_encryption = true }`, `plugin "crypt-gocryptfs" { scrypt_logn = 12 }
unlock { passphrase_file = "pass" }`).Replace(string(hcl)))
	if err := os.WriteFile(e.Cfg, hcl, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	vault := filepath.Join(e.Pad, "vault")
	mounted := func() bool {
		b, _ := os.ReadFile("/proc/self/mountinfo")
		return strings.Contains(string(b), " "+vault+" ")
	}
	cmd, buf, done := e.StartRun(t)
	if !mounted() {
		t.Fatalf("the vault is not mounted while the machine runs:\n%s", buf.String())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done
	killed := time.Now()
	deadline := killed.Add(20 * time.Second)
	for mounted() {
		if time.Now().After(deadline) {
			exec.Command("fusermount3", "-u", "-z", vault).Run()
			t.Fatal("the vault is still mounted 20 s after soulpad was killed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the vault was unmounted %v after soulpad was killed", time.Since(killed).Round(10*time.Millisecond))
	// Once unmounted, gocryptfs ends on its own: give it a deadline.
	for {
		out, _ := exec.Command("pgrep", "-f", "gocryptfs.* "+vault).Output()
		if len(out) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gocryptfs still running for the vault 20 s after soulpad was killed: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A log level that does not exist is refused, not taken silently.
func TestUnknownLogLevelIsRefused(t *testing.T) {
	e := testcli.Setup(t)
	_, errOut, code := e.Run(t, "--log-level", "verbose", "status")
	if code == 0 || !strings.Contains(errOut, `--log-level "verbose": want one of trace, debug, info, warn, error`) {
		t.Fatalf("--log-level verbose: exit %d, stderr %q", code, errOut)
	}
	if _, errOut, code := e.Run(t, "--log-level", "debug", "config", "default"); code != 0 {
		t.Fatalf("--log-level debug: exit %d %s", code, errOut)
	}
}

// `soulpad suspend --wait` returns when the pad can be unplugged: the run
// has ended, the lock is free, and it names the new point.
func TestSuspendWaitReturnsWhenThePadCanBeUnplugged(t *testing.T) {
	e := testcli.Setup(t)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s%s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	out, errOut, code := e.Run(t, "suspend", "--wait")
	if code != 0 || !strings.Contains(out, "the pad can be unplugged") {
		t.Fatalf("suspend --wait: exit %d\n%s%s", code, out, errOut)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("soulpad run: %v\n%s", err, buf.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("suspend --wait returned while soulpad run was still running:\n%s", buf.String())
	}
	if st, err := pad.PeekLock(e.Pad); err != nil || st.Held {
		t.Fatalf("the pad is still locked after suspend --wait: %+v %v", st, err)
	}
	// The point it names is the one the run sealed.
	i := strings.Index(out, "suspended to point ")
	id := strings.Fields(out[i+len("suspended to point "):])[0]
	id = strings.TrimSuffix(id, ";")
	if !strings.Contains(buf.String(), "suspended to point "+id) {
		t.Fatalf("suspend --wait named %s; the run said:\n%s", id, buf.String())
	}
}

// Every --json output decodes, uses snake_case keys (but for the values
// of maps whose keys are data: tags, fields), and has no null lists.
func TestJSONOutputsShareOneStyle(t *testing.T) {
	e := testcli.Setup(t)
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s%s", out, errOut)
	}
	_, buf, done := e.StartRun(t)
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: %s%s", out, errOut)
	}
	testcli.Wait(t, done, buf)
	key := regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	// One name, one kind of value: a key that is an object in one output
	// and a string in another (or a list, a number) is two ideas.
	kinds := map[string]map[string]string{} // key → JSON kind → where
	kindOf := func(x any) string {
		switch x.(type) {
		case map[string]any:
			return "object"
		case []any:
			return "list"
		case string:
			return "string"
		case float64:
			return "number"
		case bool:
			return "bool"
		}
		return "null"
	}
	var walk func(path string, v any) error
	walk = func(path string, v any) error {
		switch v := v.(type) {
		case map[string]any:
			for k, x := range v {
				if !key.MatchString(k) {
					return fmt.Errorf("%s: key %q is not snake_case", path, k)
				}
				if k == "tags" || k == "fields" || k == "flags" {
					continue // keys are data
				}
				if kd := kindOf(x); kd != "null" {
					if kinds[k] == nil {
						kinds[k] = map[string]string{}
					}
					kinds[k][kd] = path + "." + k
				}
				if x == nil && (strings.HasSuffix(k, "s") || k == "last_session") {
					return fmt.Errorf("%s.%s is null; an empty list is []", path, k)
				}
				if err := walk(path+"."+k, x); err != nil {
					return err
				}
			}
		case []any:
			for i, x := range v {
				if err := walk(fmt.Sprintf("%s[%d]", path, i), x); err != nil {
					return err
				}
			}
		}
		return nil
	}
	for _, args := range [][]string{{"status", "--json"}, {"points", "--json"}, {"plugins", "--json"}, {"journal", "--json"}} {
		out, errOut, code := e.Run(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errOut)
		}
		dec := json.NewDecoder(strings.NewReader(out)) // journal: one object per line
		n := 0
		for dec.More() {
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%v: %v\n%s", args, err, out)
			}
			if err := walk(args[0], v); err != nil {
				t.Errorf("%v: %v", args, err)
			}
			n++
		}
		if n == 0 {
			t.Errorf("%v printed no JSON", args)
		}
	}
	for k, ks := range kinds {
		if len(ks) > 1 {
			t.Errorf("JSON key %q has %d kinds of value: %v", k, len(ks), ks)
		}
	}
	// A point is the same in status and points: when it was taken.
	st, _, _ := e.Run(t, "status", "--json")
	pts, _, _ := e.Run(t, "points", "--json")
	for name, js := range map[string]string{"status": st, "points": pts} {
		if !strings.Contains(js, `"taken"`) || strings.Contains(js, `"time"`) {
			t.Errorf("%s --json does not name a point's time \"taken\":\n%s", name, js)
		}
	}
}

// config check starts the plugins and hands them their blocks: a typo in
// a block, a block or a choice of a plugin that does not exist, and a bad
// value are caught, at their lines (or the environment variable), with
// "did you mean".
func TestConfigCheckAsksThePlugins(t *testing.T) {
	e := testcli.Setup(t) // crypt-plain and vmm-counter in testbin.Dir()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "site.hcl")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf("pad { path = \"pad\" }\nplugins {\n  dirs  = [%q]\n  crypt = \"crypt-plain\"\n  vmm   = \"vmm-counter\"\n}\n%s", testbin.Dir(), s)), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	check := func(env ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(e.Bin, "config", "check", cfg)
		cmd.Env = append(os.Environ(), env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		code := 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		}
		return stderr.String(), code
	}

	write("plugin \"crypt-plain\" {\n  allow_no_encryptoin = true\n}\nplugin \"vmm-countr\" {}\n")
	errOut, code := check()
	for _, want := range []string{
		`site.hcl:8: plugin.crypt-plain.allow_no_encryptoin: crypt-plain: unknown key "allow_no_encryptoin" (did you mean "allow_no_encryption"?)`,
		`site.hcl:10: plugin.vmm-countr: no plugin "vmm-countr"`, `did you mean "vmm-counter"?`,
	} {
		if code != 2 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d; stderr lacks %q:\n%s", code, want, errOut)
		}
	}

	// A plugin key from the environment, and a bad one blamed on it.
	write("")
	if errOut, code := check("SOULPAD_PLUGIN_CRYPT_PLAIN_ALLOW_NO_ENCRYPTION=true"); code != 0 {
		t.Errorf("a plugin key from the environment: exit %d\n%s", code, errOut)
	}
	errOut, code = check("SOULPAD_PLUGIN_CRYPT_PLAIN_ALLOW_NO_ENCRYPTION=maybe")
	if want := `environment: SOULPAD_PLUGIN_CRYPT_PLAIN_ALLOW_NO_ENCRYPTION (plugin.crypt-plain.allow_no_encryption): crypt-plain: key "allow_no_encryption": want true or false`; code != 2 || !strings.Contains(errOut, want) {
		t.Errorf("a bad plugin key from the environment: exit %d; want %q in:\n%s", code, want, errOut)
	}
	errOut, code = check("SOULPAD_PLUGIN_FOO=1")
	if code != 2 || !strings.Contains(errOut, "SOULPAD_PLUGIN_FOO: names no plugin key") {
		t.Errorf("SOULPAD_PLUGIN_FOO: exit %d\n%s", code, errOut)
	}
	// --no-plugins checks the file alone.
	write("plugin \"vmm-countr\" {}\n")
	if errOut, code := check(); code != 2 {
		t.Errorf("a missing plugin: exit %d\n%s", code, errOut)
	}
	cmd := exec.Command(e.Bin, "config", "check", "--no-plugins", cfg)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("--no-plugins: %v\n%s", err, b)
	}
}
