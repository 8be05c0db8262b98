package lv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/soulpad/soulpad/sdk/vmm"
)

func TestSavedDriveGetsTheMediaOfNow(t *testing.T) {
	saved := `<domain><devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='/old/machines/soul/media.iso'>
        <seclabel model='dac' relabel='no'/>
      </source>
      <target dev='sdf' bus='sata'/>
      <readonly/>
      <boot order='1'/>
      <address type='drive' controller='0' bus='0' target='0' unit='5'/>
    </disk>
    <disk type='file' device='disk'><source file='/old/disk'/></disk>
</devices></domain>`
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "media.iso"), []byte("iso"), 0o600); err != nil {
		t.Fatal(err)
	}
	ejected := withMedia(saved, vmm.Spec{}, dir)
	if strings.Contains(ejected, "media.iso") || !strings.Contains(ejected, "unit='5'") || !strings.Contains(ejected, "<boot order='1'/>") ||
		!strings.Contains(ejected, "<source file='/old/disk'/>") {
		t.Fatalf("ejected:\n%s", ejected)
	}
	inserted := withMedia(ejected, vmm.Spec{Media: "media.iso"}, dir)
	if !strings.Contains(inserted, "device='cdrom'><driver name='qemu' type='raw'/><source file='"+filepath.Join(dir, "media.iso")+"'/>") {
		t.Fatalf("inserted:\n%s", inserted)
	}
	// What the pad says is in the drive never reaches outside the machine.
	if got := withMedia(ejected, vmm.Spec{Media: "../../../dev/sda"}, dir); strings.Contains(got, "sda") || strings.Contains(got, "device='cdrom'><source") {
		t.Fatalf("a path out of the machine directory went into the drive:\n%s", got)
	}
}

// A portable machine hides KVM (no kvmclock, whose state TCG cannot load)
// and has no x2APIC, so its points resume under TCG; other models keep
// what they have.
func TestPortableDomainHasNothingOfKVM(t *testing.T) {
	kvm := domainXML("soul", "q35", vmm.Spec{CPUModel: "portable", Accelerator: "kvm", MemoryMiB: 128}, t.TempDir(), t.TempDir(), nil, nil)
	if !strings.Contains(kvm, "<kvm><hidden state='on'/></kvm>") || !strings.Contains(kvm, "<feature policy='disable' name='x2apic'/>") {
		t.Errorf("a portable machine under KVM:\n%s", kvm)
	}
	tcg := domainXML("soul", "q35", vmm.Spec{CPUModel: "portable", MemoryMiB: 128}, t.TempDir(), t.TempDir(), nil, nil)
	if strings.Contains(tcg, "<kvm>") {
		t.Errorf("a TCG domain with a <kvm> feature:\n%s", tcg)
	}
	if host := domainXML("soul", "q35", vmm.Spec{CPUModel: "host", Accelerator: "kvm", MemoryMiB: 128}, t.TempDir(), t.TempDir(), nil, nil); strings.Contains(host, "hidden") {
		t.Errorf("the host model hides KVM:\n%s", host)
	}
}
