package lv

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
	"github.com/soulpad/soulpad/sdk/vmm/x86cpu"
	"libvirt.org/go/libvirt"
)

// Resume implements vmm.VMM.
func (p *Plugin) Resume(ctx context.Context, req vmm.ResumeRequest) (vmm.ResumeResponse, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: machine %s is running: %w", p.vm.spec.Name, sdk.ErrBusy)
	}
	if err := p.check(req.Spec, req.MachineDir); err != nil {
		return vmm.ResumeResponse{}, err
	}
	desc, state, err := p.pointMachine(req)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	timer := vmm.NewTimer()
	if err := p.connect(); err != nil {
		return vmm.ResumeResponse{}, err
	}
	saved, err := p.conn.DomainSaveImageGetXMLDesc(state, 0)
	if err != nil {
		return vmm.ResumeResponse{}, fmt.Errorf("vmm-libvirt: resume: the save image cannot be read (%s): %w", lverr(err), sdk.ErrCorrupt)
	}
	m, err := newMachine(req.Spec, req.MachineDir)
	if err != nil {
		return vmm.ResumeResponse{}, err
	}
	fail := func(err error) (vmm.ResumeResponse, error) {
		p.dropOverlays(m)
		os.RemoveAll(m.runDir)
		p.vm = nil
		return vmm.ResumeResponse{}, err
	}
	xml, err := p.movedXML(ctx, saved, desc, m, req)
	if err != nil {
		return fail(err)
	}
	var flags libvirt.DomainSaveRestoreFlags = libvirt.DOMAIN_SAVE_RUNNING
	if p.cfg.BypassCache {
		flags |= libvirt.DOMAIN_SAVE_BYPASS_CACHE
	}
	m.name = domainName(xml)
	// The screen is what the saved domain had, whatever the spec says now.
	m.screen = strings.Contains(xml, "/"+screenSock+"'")
	if err := writeMachineConf(m.runDir, req.Spec); err != nil {
		return fail(err)
	}
	p.events.Reset()
	p.vm = m
	timer.Mark("prepare")
	err = p.conn.DomainRestoreFlags(state, xml, flags)
	removeMachineConf(m.runDir)
	if err != nil {
		return fail(fmt.Errorf("vmm-libvirt: resume: %s: %w", lverr(err), restoreErr(err)))
	}
	timer.Mark("restore")
	dom, err := p.conn.LookupDomainByName(m.name)
	if err != nil {
		return fail(fmt.Errorf("vmm-libvirt: resume: restored domain %s not found: %s", m.name, lverr(err)))
	}
	m.dom = dom
	if err := p.commitTops(m); err != nil {
		m.stopping = true
		_ = dom.Destroy()
		return fail(err)
	}
	go p.tendGuest(m, true)
	return vmm.ResumeResponse{Console: p.console(m), CPUFeatures: x86cpu.Needed(req.Spec.CPUModel, nil), Phases: timer.Phases()}, nil
}

// restoreErr classifies a failed restore: a damaged image, or a host
// that cannot run it.
// pointMachine checks that the point is one of vmm-libvirt's, of this
// machine, and that its save image is there; it returns the point's
// description and the image's path.
func (p *Plugin) pointMachine(req vmm.ResumeRequest) (Description, string, error) {
	var desc Description
	if err := json.Unmarshal([]byte(req.Description), &desc); err != nil || desc.Format != 1 || desc.Plugin != "vmm-libvirt" {
		return desc, "", fmt.Errorf("vmm-libvirt: resume: the point's machine description is not one of vmm-libvirt's: %w", sdk.ErrIncompatibleHost)
	}
	want := p.expected(req.Spec, desc.Libvirt)
	if want.CPU != desc.CPU || want.MemoryMiB != desc.MemoryMiB || want.VCPUs != desc.VCPUs {
		return desc, "", fmt.Errorf("vmm-libvirt: resume: the state is from a different machine (cpu %s, %d MiB, %d vCPUs; now %s, %d MiB, %d vCPUs): %w",
			desc.CPU, desc.MemoryMiB, desc.VCPUs, want.CPU, want.MemoryMiB, want.VCPUs, sdk.ErrIncompatibleHost)
	}
	state, err := vmm.StatePath(req.StateDir, StateFile)
	if err != nil {
		return desc, state, fmt.Errorf("vmm-libvirt: resume: %w", err)
	}
	return desc, state, nil
}

// movedXML is the saved domain's XML moved to where the machine is now:
// the save image names the paths of the session that wrote it; the
// vault is mounted elsewhere now and the disks get new top overlays (m's
// tops, made here).
func (p *Plugin) movedXML(ctx context.Context, saved string, desc Description, m *machine, req vmm.ResumeRequest) (string, error) {
	xml := strings.ReplaceAll(saved, desc.RunDir, m.runDir)
	var err error
	if m.tops, err = p.chain().ResumeTops(ctx, req.MachineDir, req.StateDir, diskchain.Disks(req.Spec), desc.Disks); err != nil {
		return "", err
	}
	for _, d := range diskchain.Disks(req.Spec) {
		old := filepath.Join(diskchain.DiskDir(desc.MachineDir, d), desc.Disks[d.Name])
		if !strings.Contains(xml, old) {
			return "", fmt.Errorf("vmm-libvirt: resume: the save image does not use disk %s at %s: %w", d.Name, old, sdk.ErrIncompatibleHost)
		}
		xml = strings.ReplaceAll(xml, old, filepath.Join(diskchain.DiskDir(req.MachineDir, d), m.tops[d.Name]))
	}
	// The domain is this process's now.
	xml = ownerRE.ReplaceAllStringFunc(xml, func(string) string { return strings.TrimSuffix(ownerElement(), "/>") })
	// Paths under the old machine directory (kernel, initrd) move too.
	xml = strings.ReplaceAll(xml, desc.MachineDir+"/", req.MachineDir+"/")
	return withMedia(xml, req.Spec, req.MachineDir), nil
}

func restoreErr(err error) error {
	msg := strings.ToLower(lverr(err))
	for _, s := range []string{"corrupt", "truncat", "failed to read", "unexpected end", "load of migration failed", "input/output error", "invalid"} {
		if strings.Contains(msg, s) {
			return sdk.ErrCorrupt
		}
	}
	return sdk.ErrIncompatibleHost
}
