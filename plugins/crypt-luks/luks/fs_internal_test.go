package luks

import "testing"

func TestFsOf(t *testing.T) {
	xfs := append([]byte("XFSB"), make([]byte, 1080)...)
	ext := make([]byte, 1084)
	ext[1080], ext[1081] = 0x53, 0xef
	for _, tc := range []struct {
		sb   []byte
		want string
	}{{xfs, "xfs"}, {ext, "ext4"}, {make([]byte, 1084), ""}, {nil, ""}} {
		got, err := fsOf(tc.sb)
		if got != tc.want || (err == nil) != (tc.want != "") {
			t.Errorf("fsOf: %q, %v; want %q", got, err, tc.want)
		}
	}
}

func FuzzFsOf(f *testing.F) {
	f.Add(append([]byte("XFSB"), make([]byte, 1080)...))
	f.Add(make([]byte, 1084))
	f.Fuzz(func(t *testing.T, sb []byte) {
		got, err := fsOf(sb)
		if (err == nil) == (got == "") {
			t.Fatalf("fsOf: %q with error %v", got, err)
		}
	})
}
