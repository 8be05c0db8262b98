package lv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/soulpad/soulpad/sdk"
	"github.com/soulpad/soulpad/sdk/vmm"
	"github.com/soulpad/soulpad/sdk/vmm/diskchain"
	"libvirt.org/go/libvirt"
)

var eventLoop sync.Once

// connect opens the connection (the event loop is registered first, as
// libvirt requires for lifecycle events).
func (p *Plugin) connect() error {
	if p.conn != nil {
		if alive, err := p.conn.IsAlive(); err == nil && alive {
			return nil
		}
		p.closeConn()
	}
	var loopErr error
	eventLoop.Do(func() {
		if loopErr = libvirt.EventRegisterDefaultImpl(); loopErr == nil {
			go func() {
				for {
					if err := libvirt.EventRunDefaultImpl(); err != nil {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}()
		}
	})
	if loopErr != nil {
		return fmt.Errorf("vmm-libvirt: event loop: %w", loopErr)
	}
	c, err := libvirt.NewConnect(p.cfg.URI)
	if err != nil {
		return fmt.Errorf("vmm-libvirt: cannot connect to libvirt at %s (is libvirtd running and the URI right? `virsh -c %s version` tells): %s: %w",
			p.cfg.URI, p.cfg.URI, lverr(err), sdk.ErrIncompatibleHost)
	}
	id, err := c.DomainEventLifecycleRegister(nil, p.onLifecycle)
	if err != nil {
		c.Close()
		return fmt.Errorf("vmm-libvirt: lifecycle events: %s", lverr(err))
	}
	p.conn, p.cbID = c, id
	p.reap()
	return nil
}

func (p *Plugin) closeConn() {
	if p.conn != nil {
		_ = p.conn.DomainEventDeregister(p.cbID)
		p.conn.Close()
		p.conn = nil
	}
}

// lverr is libvirt's own message.
func lverr(err error) string {
	var le libvirt.Error
	if errors.As(err, &le) {
		return le.Message
	}
	return err.Error()
}

func (p *Plugin) xml(m *machine) string {
	x := domainXML(m.name, p.cfg.MachineType, m.spec, m.machineDir, m.runDir, m.tops, func(d vmm.Disk) string { return diskchain.DiskDir(m.machineDir, d) })
	return strings.Replace(x, "</name>\n", "</name>\n  <metadata>"+ownerElement()+"</metadata>\n", 1)
}

// OwnerNS is the namespace of the metadata element that names the
// plugin process owning a domain.
const OwnerNS = "https://soulpad.dev/xmlns/vmm-libvirt/owner/1"

var ownerRE = regexp.MustCompile(`<(\w+:)?owner [^>]*pid=['"](\d+)['"][^>]*host=['"]([^'"]*)['"]`)

func ownerElement() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("<soulpad:owner xmlns:soulpad='%s' pid='%d' host='%s'/>", OwnerNS, os.Getpid(), esc(host))
}

// reap destroys domains this plugin started in a process that is gone
// (a crash, a kill): a domain outlives its plugin in libvirtd, and a
// machine nobody can suspend must not keep running and writing its disk.
// Domains of live soulpad processes, and of other hosts, are left alone.
func (p *Plugin) reap() {
	doms, err := p.conn.ListAllDomains(libvirt.CONNECT_LIST_DOMAINS_ACTIVE)
	if err != nil {
		return
	}
	host, _ := os.Hostname()
	for _, d := range doms {
		name, _ := d.GetName()
		meta, err := d.GetMetadata(libvirt.DOMAIN_METADATA_ELEMENT, OwnerNS, libvirt.DOMAIN_AFFECT_LIVE)
		if err == nil && strings.HasPrefix(name, "soulpad-") {
			if m := ownerRE.FindStringSubmatch(meta); m != nil && m[3] == host {
				pid, _ := strconv.Atoi(m[2])
				if pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == syscall.ESRCH {
					_ = d.Destroy()
				}
			}
		}
		d.Free()
	}
}

func (p *Plugin) console(m *machine) vmm.Console {
	c := vmm.Console{Socket: filepath.Join(m.runDir, "console.sock"), Log: filepath.Join(m.runDir, "console.log")}
	if m.screen {
		c.Screen = filepath.Join(m.runDir, screenSock)
	}
	return c
}

func domainName(xml string) string {
	a := strings.Index(xml, "<name>")
	b := strings.Index(xml, "</name>")
	if a < 0 || b < a {
		return ""
	}
	return xml[a+len("<name>") : b]
}

func (p *Plugin) alive(m *machine) bool {
	if m.dom == nil {
		return false
	}
	st, _, err := m.dom.GetState()
	return err == nil && (st == libvirt.DOMAIN_RUNNING || st == libvirt.DOMAIN_PAUSED || st == libvirt.DOMAIN_BLOCKED)
}

func (p *Plugin) forget(m *machine) {
	if m == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.vm == m {
		p.vm = nil
	}
	if m.dom != nil {
		m.dom.Free()
		m.dom = nil
	}
	os.RemoveAll(m.runDir)
}

// onLifecycle turns libvirt's lifecycle events for our domain into vmm
// events.
func (p *Plugin) onLifecycle(_ *libvirt.Connect, d *libvirt.Domain, ev *libvirt.DomainEventLifecycle) {
	name, err := d.GetName()
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.vm
	if m == nil || m.dom == nil || m.name != name { // not ours, or not ours yet
		return
	}
	var e vmm.Event
	switch ev.Event {
	case libvirt.DOMAIN_EVENT_STOPPED:
		if m.stopping {
			return
		}
		// A domain restored from a save image has the saved one's name,
		// and the saved one's stop can come after this one started: a
		// stop of a domain that still runs is not this one's.
		if active, err := m.dom.IsActive(); err == nil && active {
			return
		}
		switch libvirt.DomainEventStoppedDetailType(ev.Detail) {
		case libvirt.DOMAIN_EVENT_STOPPED_CRASHED, libvirt.DOMAIN_EVENT_STOPPED_FAILED:
			e = vmm.Event{Type: vmm.EventCrashed, Message: "the machine stopped unexpectedly (libvirt: crashed or failed)"}
		default:
			e = vmm.Event{Type: vmm.EventPoweredOff, Message: "the guest powered off"}
		}
		p.vm = nil
		if m.dom != nil {
			m.dom.Free()
			m.dom = nil
		}
		os.RemoveAll(m.runDir)
	case libvirt.DOMAIN_EVENT_PMSUSPENDED:
		e = vmm.Event{Type: vmm.EventSleepRequested, Message: "the guest asked to sleep"}
	default:
		return
	}
	e.Time = time.Now()
	p.events.Publish(e)
}
