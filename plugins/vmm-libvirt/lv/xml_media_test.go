package lv

import (
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
	path := func(f string) string { return "/new/" + f }
	ejected := withMedia(saved, vmm.Spec{}, path)
	if strings.Contains(ejected, "media.iso") || !strings.Contains(ejected, "unit='5'") || !strings.Contains(ejected, "<boot order='1'/>") ||
		!strings.Contains(ejected, "<source file='/old/disk'/>") {
		t.Fatalf("ejected:\n%s", ejected)
	}
	inserted := withMedia(ejected, vmm.Spec{Media: "media.iso"}, path)
	if !strings.Contains(inserted, "device='cdrom'><driver name='qemu' type='raw'/><source file='/new/media.iso'/>") {
		t.Fatalf("inserted:\n%s", inserted)
	}
}
