package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/soulpad/soulpad/plugins/vmm-qemu/qmp"
	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
)

// pointMachine checks that the point is one of vmm-qemu's, of this
// machine, that this QEMU can run it and that its state is there; it
// returns the point's description, the one the machine will have, the
// spec it runs with (the point's devices and firmware) and how the
// spec's devices differ from the point's ("" when they do not).
func (p *Plugin) pointMachine(ctx context.Context, req vmm.ResumeRequest) (desc, want Description, spec vmm.Spec, note string, err error) {
	fail := func(f string, a ...any) (Description, Description, vmm.Spec, string, error) {
		return desc, want, spec, "", fmt.Errorf("vmm-qemu: resume: "+f, a...)
	}
	if err := json.Unmarshal([]byte(req.Description), &desc); err != nil || desc.Format != 1 {
		return fail("the point's machine description is not one of vmm-qemu's: %w", sdk.ErrIncompatibleHost)
	}
	hw, err := parseHardware(desc.Devices)
	if err != nil {
		return fail("the point's devices: %v: %w", err, sdk.ErrIncompatibleHost)
	}
	spec = req.Spec
	note = hw.applyTo(&spec)
	want = p.expected(spec)
	want.MachineType, want.Devices = desc.MachineType, hw.String()
	want.CPU = resumeCPU(desc.CPU, want.CPU)
	if diff := desc.compatible(want); diff != "" {
		return fail("the state is from a different machine: %s: %w", diff, sdk.ErrIncompatibleHost)
	}
	var names []string
	for _, d := range spec.Disks {
		names = append(names, d.Name)
	}
	if strings.Join(names, ",") != strings.Join(hw.disks, ",") {
		return fail("the state is from a machine with disks %q, this one has %q: %w", hw.disks, names, sdk.ErrIncompatibleHost)
	}
	if _, _, err := p.firmwareFiles(hw); err != nil {
		return fail("%w", err)
	}
	if !p.hasMachineType(ctx, desc.MachineType) {
		return fail("this QEMU (%s) has no machine type %s, which the point needs: %w", p.version, desc.MachineType, sdk.ErrIncompatibleHost)
	}
	if _, err := vmm.StatePath(req.StateDir, StateFile); err != nil {
		return fail("%w", err)
	}
	return desc, want, spec, note, nil
}

// resumeCPU is the CPU a point taken with CPU taken resumes with, where
// the spec's model now runs as spec: a portable point of an earlier
// version resumes as it was taken (its state may hold what only that
// model has, such as KVM's clock).
func resumeCPU(taken, spec string) string {
	if taken == legacyPortable && spec == portableCPU {
		return taken
	}
	return spec
}

// resumeMemory gives v its RAM file: a mapped point's RAM is cloned into
// a new running file; a stream point loads into a new file when this
// vault maps memory (its next suspend is then mapped), or into QEMU's
// own RAM.
func (p *Plugin) resumeMemory(ctx context.Context, v *proc, stateDir string, desc Description) error {
	mode := memoryStream
	if desc.Memory == memoryMapped {
		mode = memoryMapped
	} else if m, err := p.memoryMode(v.machineDir); err != nil {
		return err
	} else {
		mode = m
	}
	if mode != memoryMapped {
		return nil
	}
	from := ""
	if desc.Memory == memoryMapped {
		from = filepath.Join(stateDir, RAMFile)
	}
	if err := prepareRAM(ctx, v, from); err != nil {
		return fmt.Errorf("vmm-qemu: resume: %w", err)
	}
	return nil
}

// failResume ends a resume that launched QEMU: QEMU quits (its last words
// read first, when it is going away), its overlays go, and a state that
// did not load is reported as corrupt.
func (p *Plugin) failResume(ctx context.Context, v *proc, err error) (vmm.ResumeResponse, error) {
	gone := errors.Is(err, qmp.ErrClosed)
	select {
	case <-v.qmp.Done():
		gone = true
	default:
	}
	if gone {
		select {
		case <-v.exited:
		case <-time.After(5 * time.Second):
		}
	}
	alive := v.alive()
	v.quit(context.WithoutCancel(ctx))
	p.dropOverlays(v)
	if tail := v.stderrTail(); !alive && tail != "" {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: the saved state did not load (%s): %w", tail, sdk.ErrCorrupt)
	}
	return vmm.ResumeResponse{}, fmt.Errorf("vmm-qemu: resume: %w", err)
}
