package lifecycle

import (
	"context"
	"fmt"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// A machine whose memory is mapped from the vault writes its RAM file as
// it runs; after a resume or a checkpoint that file shares its blocks
// with the point's clone, so each page the guest changes needs a block of
// its own, up to all its RAM. A vault that fills then stops the machine
// outright (QEMU cannot write its memory: SIGBUS), losing the work since
// the last point. So the vault keeps room for the RAM: older checkpoints
// go first to make it, and a checkpoint (which would pin one more copy
// of every page the guest goes on to change) is skipped while there is
// not enough, saying why.

// roomMargin is kept beyond the RAM: the device state, the disks'
// writes, the file system's own needs.
const roomMargin = 64 << 20

// roomToRun makes room in the vault for the running machine's RAM,
// removing checkpoints other than the newest point if it must. It
// returns "" when there is room, else why there is not.
func (s *Session) roomToRun(ctx context.Context) string {
	ram := int64(s.spec.MemoryMiB) << 20
	need := ram + roomMargin
	free, _, ok := vaultSpace(s.machine.Dir)
	if !ok || free >= need {
		return ""
	}
	if pts, err := s.machine.Points(); err == nil {
		if doomed := CheckpointPrunePlan(pts, 0, s.parent); len(doomed) > 0 {
			ids, _ := RemovePoints(ctx, s.r.journal, s.machine, nil, s.spec, doomed)
			if len(ids) > 0 {
				s.r.progress("  the vault was short of room for the machine's memory: removed older checkpoint(s) %v", ids)
			}
		}
	}
	if free, _, ok = vaultSpace(s.machine.Dir); !ok || free >= need {
		return ""
	}
	return fmt.Sprintf("the vault has %s free, and the running machine may need up to %s (its %s of RAM, as the guest changes it, and room for its state); a vault that fills stops the machine: remove old points (soulpad points rm, soulpad points prune --disks) or make the vault bigger",
		humanBytes(free), humanBytes(need), humanBytes(ram))
}

// memoryMapped: the VMM plugin maps the machine's memory from the vault
// (it can take checkpoints of it).
func (s *Session) memoryMapped(ctx context.Context) bool {
	if !s.vmm.Info.Has(vmm.CapCheckpoint) {
		return false
	}
	st, err := s.vmm.VMM().Status(ctx, vmm.StatusRequest{Name: s.spec.Name})
	return err == nil && st.NoCheckpoint == ""
}

// checkRoom is roomToRun for the run stage: a shortage is said once (and
// journaled) until there is room again; status shows it meanwhile.
func (s *Session) checkRoom(ctx context.Context) bool {
	why := s.roomToRun(ctx)
	prev := s.roomShort.Load()
	switch {
	case why == "":
		s.roomShort.Store(nil)
		return true
	case prev == nil:
		s.r.progress("  warning: %s", why)
		_ = s.r.journal.Append(pad.Entry{Stage: StageRun, Event: "info", Message: "vault short of room", Error: why})
	}
	s.roomShort.Store(&why)
	return false
}
