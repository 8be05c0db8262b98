package pad

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDraftIsFoundOnThePendingPointAndDroppedAtSeal(t *testing.T) {
	m := MachineIn(t.TempDir(), "soul")
	pend, err := m.NewPending()
	if err != nil {
		t.Fatal(err)
	}
	if err := pend.Draft(Manifest{Session: "s1", CPUModel: "max", Files: []FileSum{{Name: "x"}}}); err != nil {
		t.Fatal(err)
	}
	ps := m.Pendings()
	if len(ps) != 1 || ps[0].Dir() != pend.Dir() {
		t.Fatalf("pendings: %v", ps)
	}
	man, ok := ps[0].Drafted()
	if !ok || man.Session != "s1" || man.CPUModel != "max" || man.Files != nil {
		t.Fatalf("drafted: %+v %v", man, ok)
	}
	if err := os.WriteFile(filepath.Join(pend.Dir(), "state.bin"), []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := ps[0].Seal([]string{"state.bin"}, man)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir, draftFile)); !os.IsNotExist(err) {
		t.Fatalf("the sealed point keeps its draft: %v", err)
	}
	// A damaged draft is no draft: the pending point is not recovered.
	pend2, _ := m.NewPending()
	_ = os.WriteFile(filepath.Join(pend2.Dir(), draftFile), []byte("{not json"), 0o600)
	if _, ok := pend2.Drafted(); ok {
		t.Fatal("a damaged draft was taken")
	}
}
