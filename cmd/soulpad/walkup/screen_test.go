package walkup_test

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/soulpad/soulpad/internal/testcli"
)

// The machine's screen, through `soulpad view --screenshot`, is the same
// after a resume as before the suspend, and a cold boot's is not (the demo
// guest draws its boot's id on the VGA text console once).
func TestScreenIsTheSameAfterResume(t *testing.T) { eachVMM(t, screenAcrossResume) }

func screenAcrossResume(t *testing.T) {
	e := testcli.QEMUEnv(t, "console=ttyS0 quiet panic=-1 consoleblank=0", "crypt-plain")
	t.Setenv("SOULPAD_MACHINE_DISPLAY", "vnc")
	if out, errOut, code := e.Run(t, "init"); code != 0 {
		t.Fatalf("init: %s %s", out, errOut)
	}
	shots := t.TempDir()
	shot := func(name string) *image.RGBA {
		t.Helper()
		path := filepath.Join(shots, name+".png")
		out, errOut, code := e.Run(t, "view", "--screenshot", path)
		if code != 0 || !strings.Contains(out, "saved the screen") {
			t.Fatalf("view --screenshot: exit %d %s %s", code, out, errOut)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		r, ok := img.(*image.RGBA)
		if !ok {
			t.Fatalf("%s decodes as %T", name, img)
		}
		return r
	}
	lit := func(img *image.RGBA) int {
		n := 0
		for i := 0; i < len(img.Pix); i += 4 {
			if img.Pix[i]+img.Pix[i+1]+img.Pix[i+2] > 0 {
				n++
			}
		}
		return n
	}

	// Cold boot: the banner is on the screen.
	_, buf, done := e.StartRun(t)
	e.WaitCounter(t, 2)
	if !strings.Contains(consoleDump(t, e), "soulpad-guest: screen drawn") {
		t.Fatal("the guest did not draw on its screen")
	}
	before := shot("before")
	if n := lit(before); n < 500 {
		t.Fatalf("the screen before the suspend has %d lit pixels: the banner is not on it", n)
	}
	suspend(t, e, done, buf)

	// Resume: the same screen, pixel for pixel.
	_, buf, done = e.StartRunArgs(t, "--progress", "json")
	testcli.WaitFor(t, buf, done, "the machine is running", 2*time.Minute)
	e.WaitCounter(t, 1)
	// vmm-qemu says how far the state's load is; the last report is whole.
	if os.Getenv("SOULPAD_PLUGINS_VMM") == "" && !strings.Contains(buf.String(), `"final":true,"step":"resume"`) {
		t.Errorf("no final resume progress event:\n%s", buf.String())
	}
	after := shot("after")
	if !before.Rect.Eq(after.Rect) || !bytes.Equal(before.Pix, after.Pix) {
		t.Fatalf("the screen after the resume (%v, %d lit) differs from the one before the suspend (%v, %d lit); see %s",
			after.Rect, lit(after), before.Rect, lit(before), shots)
	}
	suspend(t, e, done, buf)

	// A cold boot draws another boot id: the comparison above can fail.
	_, buf, done = e.StartRunArgs(t, "--cold-boot")
	testcli.WaitFor(t, buf, done, "the machine is running", 2*time.Minute)
	e.WaitCounter(t, 2)
	if cold := shot("cold"); bytes.Equal(before.Pix, cold.Pix) {
		t.Fatal("a cold boot's screen equals the resumed one: the screenshots do not show the guest's screen")
	}
	suspend(t, e, done, buf)
}

func consoleDump(t *testing.T, e testcli.Env) string {
	t.Helper()
	out, errOut, code := e.Run(t, "console", "--dump")
	if code != 0 {
		t.Fatalf("console --dump: exit %d %s", code, errOut)
	}
	return out
}

func suspend(t *testing.T, e testcli.Env, done chan error, buf *testcli.SyncBuffer) {
	t.Helper()
	if out, errOut, code := e.Run(t, "suspend"); code != 0 {
		t.Fatalf("suspend: exit %d %s %s", code, out, errOut)
	}
	testcli.Wait(t, done, buf)
}
