package lifecycle

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestImageInfoRefusesWhatLiesOutsideTheImage(t *testing.T) {
	self := func(n string) bool { return n == "/img" }
	for _, c := range []struct{ json, want string }{
		{`{"format":"qcow2","virtual-size":1048576}`, ""},
		{`{"format":"luks","virtual-size":1048576}`, `a "luks" image`},
		{`{"format":"qcow2","virtual-size":0}`, "size of 0"},
		{`{"format":"qcow2","virtual-size":1048576,"backing-filename":"/etc/shadow"}`, "backing file"},
		{`{"format":"qcow2","virtual-size":1048576,"format-specific":{"type":"qcow2","data":{"data-file":"/dev/sda"}}}`, "data file"},
		{`{"format":"vmdk","virtual-size":1048576,"format-specific":{"type":"vmdk","data":{"extents":[{"filename":"/img"},{"filename":"/dev/sda"}]}}}`, `extent "/dev/sda"`},
		{`{"format":"qcow2","virtual-size":1048576,"dirty-flag":true}`, "dirty"},
		{`{"format":"qcow2","virtual-size":1048576,"format-specific":{"type":"qcow2","data":{"corrupt":true}}}`, "corrupt"},
		{`not json`, "cannot read"},
	} {
		_, err := parseImageInfo([]byte(c.json), self)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.json, err, c.want)
		}
	}
}

func TestMapPastTheEndIsTruncation(t *testing.T) {
	m := []byte(`[{"start":0,"length":65536,"data":true,"offset":1024},{"start":65536,"length":65536,"data":false}]`)
	if err := checkMap(m, 66560); err != nil {
		t.Fatal(err)
	}
	if err := checkMap(m, 66559); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("data past the end of the file: %v", err)
	}
}

func tarOf(t testing.TB, files ...string) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, f := range files {
		body := "body of " + f
		if err := tw.WriteHeader(&tar.Header{Name: f, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	return b.Bytes()
}

func TestOVADiskIsFoundInPlace(t *testing.T) {
	b := tarOf(t, "vm.ovf", "vm.mf", "vm-disk1.vmdk", "vm-disk2.vmdk")
	name, off, size, err := ovaDisk(bytes.NewReader(b))
	if err != nil || name != "vm-disk1.vmdk" {
		t.Fatalf("%q %v", name, err)
	}
	if got := string(b[off : off+size]); got != "body of vm-disk1.vmdk" {
		t.Fatalf("the offset points at %q", got)
	}
	if _, _, _, err := ovaDisk(bytes.NewReader(tarOf(t, "vm.ovf"))); err == nil || !strings.Contains(err.Error(), "no disk image") {
		t.Fatalf("an OVA without a disk: %v", err)
	}
}

func TestQemuImgProgressIsRead(t *testing.T) {
	var got []float64
	readProgress(strings.NewReader("    (0.00/100%)\r    (45.50/100%)\r    (100.00/100%)\r\n(200/100%)\rjunk\r"), func(p float64) { got = append(got, p) })
	if len(got) != 3 || got[1] != 45.5 || got[2] != 100 {
		t.Fatalf("%v", got)
	}
}

func FuzzImageInfo(f *testing.F) {
	f.Add([]byte(`{"format":"vmdk","virtual-size":1048576,"format-specific":{"type":"vmdk","data":{"extents":[{"filename":"/img"}]}}}`))
	f.Add([]byte(`{"format":"raw","virtual-size":-1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := parseImageInfo(b, func(n string) bool { return n == "/img" })
		if err == nil && (in.VirtualSize <= 0 || in.BackingFilename != "") {
			t.Fatalf("accepted %s", b)
		}
	})
}

func FuzzQemuImgMap(f *testing.F) {
	f.Add([]byte(`[{"start":0,"length":65536,"data":true,"offset":1024}]`), int64(70000))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if checkMap(b, size) != nil {
			return
		}
		var ents []mapEntry
		_ = json.Unmarshal(b, &ents)
		for _, e := range ents {
			if e.Data && e.Offset != nil && (*e.Offset > size || e.Length > size-*e.Offset) {
				t.Fatalf("accepted data past the end: %s", b)
			}
		}
	})
}

func FuzzOVA(f *testing.F) {
	f.Add(tarOf(f, "a.ovf", "a.vmdk"))
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, b []byte) {
		name, off, size, err := ovaDisk(bytes.NewReader(b))
		if err != nil {
			return
		}
		if name == "" || off < 0 || size <= 0 {
			t.Fatalf("%q %d %d", name, off, size)
		}
	})
}

func FuzzQemuImgProgress(f *testing.F) {
	f.Add([]byte("    (12.5/100%)\r"))
	f.Fuzz(func(t *testing.T, b []byte) {
		readProgress(bytes.NewReader(b), func(p float64) {
			if p < 0 || p > 100 {
				t.Fatalf("%v", p)
			}
		})
	})
}
