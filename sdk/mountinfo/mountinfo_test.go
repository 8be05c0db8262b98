package mountinfo

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	text := `21 1 0:19 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
42 27 0:39 / /tmp/soulpad-x\040y rw,nosuid - fuse.gocryptfs /tmp/pad\040dir/vault rw,user_id=0
bad line
43 27 0:40 / /mnt rw - tmpfs`
	ms := Parse(text)
	if len(ms) != 2 {
		t.Fatalf("%d mounts: %+v", len(ms), ms)
	}
	if m := ms[1]; m.Point != "/tmp/soulpad-x y" || m.FSType != "fuse.gocryptfs" || m.Source != "/tmp/pad dir/vault" {
		t.Fatalf("%+v", m)
	}
	if !IsMountPoint("/") || IsMountPoint("/nonexistent/place") {
		t.Fatal("IsMountPoint on this host")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("21 1 0:19 / / rw - ext4 /dev/vda1 rw\n")
	f.Add(`1 2 3 4 /a\040b - t s\134`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, m := range Parse(s) {
			if m.FSType == "" || strings.ContainsAny(m.FSType, " \n") {
				t.Fatalf("fs type %q", m.FSType)
			}
		}
		_ = Unescape(s)
	})
}
