package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/soulpad/soulpad/core/pad"
	"github.com/soulpad/soulpad/internal/padimage"
)

// bootCheck says what unlock does with the vault's record of the boot
// chain.
type bootCheck int

const (
	bootWarn   bootCheck = iota // a maintenance command: say what changed, go on
	bootRefuse                  // a session: a changed chain stops it before resume
	bootAccept                  // --accept-boot-change: record the chain as it is now
)

// checkBoot compares the boot chain of the disk the pad is on (a
// bootable pad made by soulpad image) with the record in the vault. A
// pad that is not on such a disk, or whose vault has no record (not made
// by soulpad image), has no boot chain to check. It returns a note for
// the unlock stage.
func (v *Vault) checkBoot(ctx context.Context, mode bootCheck) (string, error) {
	rec, ok, err := padimage.LoadRecord(v.plaintext)
	if err != nil && mode != bootAccept {
		return "", v.bootChanged(err, mode)
	}
	disk, found := padimage.Disk{}, false
	// pad.boot_disk (set by a bootable pad's host OS): that disk, whatever
	// the pad's directory looks like.
	if name := v.cfg.Pad.BootDisk; name != "" {
		if disk, found = padimage.DiskNamed(name); !found {
			return "", v.bootChanged(fmt.Errorf("%w: the disk it booted from (pad.boot_disk %s) is gone", padimage.ErrBootChanged, name), mode)
		}
	} else if disk, found = padimage.DiskOf(v.cfg.Pad.Path); !found || !rec.Holds(disk) {
		return "", nil // not on a bootable pad's disk
	}
	switch {
	case mode == bootAccept:
		now, err := padimage.Measure(ctx, disk.Dev)
		if err != nil {
			return "", fmt.Errorf("--accept-boot-change: reading the boot partitions of %s: %w", disk.Dev, err)
		}
		if err := now.Save(v.plaintext, pad.WriteFileAtomic); err != nil {
			return "", err
		}
		_ = v.r.journal.Append(pad.Entry{Stage: StageUnlock, Event: "info", Message: "the boot partitions of " + disk.Dev + " recorded anew (--accept-boot-change)"})
		return "boot partitions recorded anew", nil
	case !ok:
		v.r.progress("  warning: the vault has no record of the boot partitions of %s (an image made before records were kept): they cannot be checked", disk.Dev)
		return "", nil
	}
	// Booted from this disk: the initramfs checked the system partition
	// already if GRUB's menu (checked here) gave it the recorded digest.
	var skip []string
	if v.cfg.Pad.BootDisk != "" {
		cmdline, _ := os.ReadFile("/proc/cmdline")
		skip = rec.CheckedAtBoot(string(cmdline))
	}
	start := time.Now()
	if err := rec.Check(ctx, disk, skip...); err != nil {
		return "", v.bootChanged(err, mode)
	}
	v.log.Debug("boot partitions checked", "disk", disk.Dev, "seconds", time.Since(start).Seconds(), "checked_at_boot", skip)
	return "boot partitions as recorded", nil
}

// bootChanged says what a changed boot chain means and what to do: a
// session stops (the error), a maintenance command warns and goes on.
func (v *Vault) bootChanged(err error, mode bootCheck) error {
	_ = v.r.journal.Append(pad.Entry{Stage: StageUnlock, Event: "error", Message: err.Error()})
	if mode == bootWarn {
		v.r.progress("  warning: %v. Someone who held the pad may have changed how it boots to capture your passphrase; a run stops here until you change the passphrase from a PC you trust, or record a change you made yourself with soulpad run --accept-boot-change", err)
		return nil
	}
	return fmt.Errorf("%w. Someone who held the pad may have changed how it boots to capture your passphrase: the machine was not resumed; "+
		"do not use the pad on this PC again, and from a PC you trust change the passphrase (soulpad credential change); "+
		"if you changed the boot partitions yourself, run soulpad run --accept-boot-change", err)
}

// RecordBoot opens the pad's vault and keeps rec in it: the boot chain
// of the bootable image soulpad image builds around the pad.
func RecordBoot(ctx context.Context, o VaultOptions, rec padimage.BootRecord) error {
	v, err := OpenVault(ctx, o)
	if err != nil {
		return err
	}
	err = rec.Save(v.plaintext, pad.WriteFileAtomic)
	return errors.Join(err, v.Close())
}
