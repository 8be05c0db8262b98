package kvmprobe

import (
	"os"
	"testing"
)

// The probe answers on this host either way and says why when KVM is not
// usable; a missing device is never usable.
func TestProbe(t *testing.T) {
	ok, why := Usable("/dev/kvm")
	t.Logf("/dev/kvm usable: %v %s", ok, why)
	if !ok && why == "" {
		t.Fatal("not usable, but no reason given")
	}
	if _, err := os.Stat("/dev/kvm"); err != nil && ok {
		t.Fatal("usable without /dev/kvm")
	}
	if ok, why := Usable("/nonexistent/kvm"); ok || why == "" {
		t.Fatalf("a missing device: %v %q", ok, why)
	}
}
