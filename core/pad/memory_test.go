package pad

import "testing"

func TestPointSaysHowItHoldsGuestRAM(t *testing.T) {
	for _, c := range []struct {
		kind  string
		files []FileSum
		want  string
	}{
		{"", []FileSum{{Name: "state"}, {Name: "ram", Mapped: true, SumOfChunks: true}}, MemoryMapped},
		{KindMemory, []FileSum{{Name: "state"}}, MemoryStreamed},
		{KindDisk, []FileSum{{Name: "disk-root.qcow2"}}, ""},
	} {
		p := Point{Manifest: Manifest{Kind: c.kind, Files: c.files}}
		if got := p.Memory(); got != c.want {
			t.Errorf("a %q point with %v: memory %q, want %q", c.kind, c.files, got, c.want)
		}
	}
}
