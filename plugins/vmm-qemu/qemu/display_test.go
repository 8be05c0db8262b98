package qemu

import (
	"os"
	"os/exec"
	"testing"
)

// A window only when this QEMU has the GTK display: asking for one it
// lacks would stop QEMU from starting.
func TestWindowOnlyWithGTK(t *testing.T) {
	path, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("no QEMU")
	}
	p := New(nil)
	p.qemuPath = path
	if !p.hasDisplay("none") {
		t.Fatal(`QEMU's display list lacks "none": it was not read`)
	}
	_, err = os.Stat("/usr/lib/x86_64-linux-gnu/qemu/ui-gtk.so")
	if got, want := p.hasDisplay("gtk"), err == nil; got != want {
		t.Fatalf("hasDisplay(gtk) = %v, but ui-gtk.so installed = %v", got, want)
	}
}
