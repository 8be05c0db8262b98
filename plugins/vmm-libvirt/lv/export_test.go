package lv

import libvirt "libvirt.org/go/libvirt"

// DeliverStaleStop hands the plugin a stopped (saved) event for the
// domain now running under the machine's name, as libvirt delivers the
// saved domain's own stop when it comes late: after the domain restored
// from its image (the same name) runs.
func (p *Plugin) DeliverStaleStop() error {
	p.mu.Lock()
	name := p.vm.name
	p.mu.Unlock()
	d, err := p.conn.LookupDomainByName(name)
	if err != nil {
		return err
	}
	defer d.Free()
	p.onLifecycle(p.conn, d, &libvirt.DomainEventLifecycle{Event: libvirt.DOMAIN_EVENT_STOPPED, Detail: int(libvirt.DOMAIN_EVENT_STOPPED_SAVED)})
	return nil
}
