package main_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// -q prints the result and errors only: no stage lines, no table.
func TestQuietRunPrintsTheResultOnly(t *testing.T) {
	e := testcli.Setup(t)
	out, errOut, code := e.Run(t, "-q", "init")
	if code != 0 || strings.Contains(out, "creating the vault") || !strings.Contains(out, "created at") {
		t.Fatalf("init -q: exit %d\n%s%s", code, out, errOut)
	}
	_, buf, done := e.StartRunArgs(t, "-q")
	deadline := time.Now().Add(time.Minute)
	for {
		if _, _, code := e.Run(t, "suspend"); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the quiet run never took a suspend:\n%s", buf.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	testcli.Wait(t, done, buf)
	got := buf.String()
	if !strings.Contains(got, "suspended to point") || strings.Contains(got, "STAGE") || strings.Contains(got, "▸") {
		t.Fatalf("run -q printed more (or less) than its result:\n%s", got)
	}
	if lines := strings.Split(strings.TrimSpace(got), "\n"); len(lines) != 1 {
		t.Fatalf("run -q printed %d lines, want 1:\n%s", len(lines), got)
	}
}

// Man pages for every command, and completion of suspend point IDs.
func TestManPagesAndCompletion(t *testing.T) {
	e := testcli.Setup(t)
	dir := t.TempDir()
	out, errOut, code := e.Run(t, "man", dir)
	if code != 0 {
		t.Fatalf("man: exit %d %s", code, errOut)
	}
	for _, page := range []string{"soulpad.1", "soulpad-run.1", "soulpad-points-rm.1", "soulpad-image.1", "soulpad-view.1"} {
		b, err := os.ReadFile(filepath.Join(dir, page))
		if err != nil || !bytes.Contains(b, []byte(".TH \"SOULPAD\" \"1\"")) {
			t.Errorf("%s: %v (%s)", page, err, out)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "soulpad-run.1")); !bytes.Contains(b, []byte("Exit status")) {
		t.Error("soulpad-run.1 lacks the exit statuses its --help gives")
	}

	if _, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatal(errOut)
	}
	_, buf, done := e.StartRun(t)
	if _, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatal(errOut)
	}
	testcli.Wait(t, done, buf)
	m := regexp.MustCompile(`suspended to point (\S+);`).FindStringSubmatch(buf.String())
	if m == nil {
		t.Fatalf("no point:\n%s", buf.String())
	}
	for _, args := range [][]string{{"__complete", "points", "rm", ""}, {"__complete", "run", "--point", m[1][:4]}} {
		out, errOut, code := e.Run(t, args...)
		if code != 0 || !strings.Contains(out, m[1]+"\tsealed ") {
			t.Errorf("%v: exit %d, want %s offered:\n%s%s", args, code, m[1], out, errOut)
		}
	}
	if out, _, _ := e.Run(t, "__complete", "run", "--point", "zz"); strings.Contains(out, m[1]) {
		t.Errorf("a prefix that matches nothing offered %s", m[1])
	}
}

// --progress json: the suspend's progress as JSON lines among the output;
// an unknown mode is a usage error.
func TestProgressJSON(t *testing.T) {
	e := testcli.Setup(t)
	if _, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatal(errOut)
	}
	_, errOut, code := e.Run(t, "--progress", "fancy", "status")
	if code != 2 || !strings.Contains(errOut, "--progress \"fancy\": want one of auto, bar, plain, json, none") {
		t.Fatalf("--progress fancy: exit %d %s", code, errOut)
	}
	_, buf, done := e.StartRunArgs(t, "--progress", "json")
	testcli.WaitFor(t, buf, done, "the machine is running", time.Minute)
	if _, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatal(errOut)
	}
	testcli.Wait(t, done, buf)
	var final bool
	for _, l := range strings.Split(buf.String(), "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var ev struct {
			Event string `json:"event"`
			Step  string `json:"step"`
			Done  uint64 `json:"done_bytes"`
			Total uint64 `json:"total_bytes"`
			Final bool   `json:"final"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		if ev.Event == "progress" && ev.Step == "suspend" && ev.Final && ev.Done == ev.Total && ev.Total == 64<<20 {
			final = true
		}
	}
	if !final {
		t.Fatalf("no final suspend progress event of the machine's 64 MiB:\n%s", buf.String())
	}
}
