package pad

import (
	"reflect"
	"testing"

	"github.com/soulpad/soulpad/sdk/vmm"
)

// The manifest's file sum and the VMM's are one idea: every field crosses
// both ways, and a field added to one without the other fails here.
func TestFileSumCrossesToTheVMMAndBackWhole(t *testing.T) {
	in := vmm.FileSum{Name: "ram", Size: 1 << 33, SHA256: "ab", ChunkBytes: 1 << 20, ChunkSHA256: []string{"c1", "c2"},
		Mapped: true, SumOfChunks: true, OnLoad: true}
	if got := FileSumFrom(in).VMM(); !reflect.DeepEqual(got, in) {
		t.Fatalf("round trip: got %+v, want %+v", got, in)
	}
	a, b := reflect.TypeOf(FileSum{}), reflect.TypeOf(vmm.FileSum{})
	if a.NumField() != b.NumField() {
		t.Fatalf("pad.FileSum has %d fields, vmm.FileSum %d: convert the new one in FileSumFrom and VMM", a.NumField(), b.NumField())
	}
	for i := 0; i < a.NumField(); i++ {
		if _, ok := b.FieldByName(a.Field(i).Name); !ok {
			t.Errorf("pad.FileSum.%s has no counterpart in vmm.FileSum", a.Field(i).Name)
		}
		// Every field set in the sample: a zero one would hide a field
		// the conversion drops.
		if reflect.ValueOf(in).Field(i).IsZero() {
			t.Errorf("the sample leaves vmm.FileSum.%s zero", b.Field(i).Name)
		}
	}
}
