// Package vmm is the contract of VMM plugins: they run, suspend and resume
// one machine. Bulk state (memory, device state, disks) never crosses the
// RPC: the plugin reads and writes files in directories inside the vault.
package vmm

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/soulpad/soulpad/sdk"
)

// APIVersion is the version of this contract.
const APIVersion = 1

// Capabilities a VMM plugin may announce in Info.
const (
	// CapEvents: the plugin implements EventStreamer.
	CapEvents = "events"
	// CapKVM: the plugin can use hardware virtualisation when the host has it.
	CapKVM = "kvm"
	// CapDiskHistory: the plugin implements DiskHistory (it keeps disk
	// states apart, boots one with StartRequest.From, and removes the disk
	// state no point needs).
	CapDiskHistory = "disk-history"
	// CapDiskFormatPrefix and CapNetworkPrefix announce, one capability
	// each, the disk image formats ("disk-format:qcow2") and the networks
	// ("network:user") the plugin runs; the core refuses a machine that
	// needs another before anything starts. A plugin that announces none
	// of a prefix makes no promise either way.
	CapDiskFormatPrefix = "disk-format:"
	CapNetworkPrefix    = "network:"
	// CapProgress: the plugin implements ProgressReporter.
	CapProgress = "progress"
	// CapCheckpoint: Suspend takes SuspendRequest.Checkpoint (a point
	// taken while the machine goes on running). A plugin may still refuse
	// one machine (its memory is streamed, not mapped) with an error
	// wrapping sdk.ErrUnsupported that says why.
	CapCheckpoint = "checkpoint"
)

// Supports reports whether a plugin with these capabilities runs value
// (a disk format or a network) of the family prefix; true when it
// announces nothing of that family.
func Supports(caps []string, prefix, value string) bool {
	any := false
	for _, c := range caps {
		if strings.HasPrefix(c, prefix) {
			any = true
			if strings.TrimPrefix(c, prefix) == value {
				return true
			}
		}
	}
	return !any
}

// Announced lists the values of family prefix in caps.
func Announced(caps []string, prefix string) []string {
	var out []string
	for _, c := range caps {
		if strings.HasPrefix(c, prefix) {
			out = append(out, strings.TrimPrefix(c, prefix))
		}
	}
	return out
}

// Machine states reported by Status.
const (
	StateRunning = "running"
	StatePaused  = "paused"
	StateStopped = "stopped"
)

// Event types sent by EventStreamer.
const (
	// EventPoweredOff: the guest powered itself off; the session ends
	// without a suspend point.
	EventPoweredOff = "powered-off"
	// EventSleepRequested: the guest asked to sleep (ACPI S3/S4); the host
	// treats it as a suspend request.
	EventSleepRequested = "sleep-requested"
	// EventCrashed: the VMM process died.
	EventCrashed = "crashed"
	// EventGuestAgent: the guest's agent answers (after a resume: its
	// clock was set, the Message says); EventNoGuestAgent: none answered
	// in time. Sent once a start or resume.
	EventGuestAgent   = "guest-agent"
	EventNoGuestAgent = "no-guest-agent"
)

// Disk is one disk of a machine.
type Disk struct {
	// Name identifies the disk inside the machine ("root", "data").
	Name string `json:"name"`
	// Path is relative to the machine directory unless absolute.
	Path string `json:"path"`
	// Format is the image format ("qcow2", "raw"); empty lets the plugin
	// create the disk in the format it prefers.
	Format string `json:"format,omitempty"`
	// SizeMiB is the size to create the disk with when it does not exist.
	SizeMiB  uint64 `json:"size_mib,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Spec describes a machine. The core fills Accelerator and CPUModel from
// the host profile and the site config.
type Spec struct {
	Name      string `json:"name"`
	MemoryMiB uint64 `json:"memory_mib"`
	VCPUs     int    `json:"vcpus"`
	// CPUModel is the guest CPU model ("portable", "host", or a VMM name).
	CPUModel string `json:"cpu_model"`
	// Accelerator is "kvm" or "tcg".
	Accelerator string `json:"accelerator"`
	Disks       []Disk `json:"disks,omitempty"`
	// Network is "user" (NAT) or "none".
	Network string `json:"network"`
	// Display is "none" (no screen), "vnc" (the screen on Console.Screen
	// only), or "auto" (Console.Screen, and a window when the host has a
	// desktop).
	Display string `json:"display"`
	// Kernel, Initrd and Cmdline boot a kernel directly (paths relative to
	// the machine directory unless absolute); empty boots from the disks.
	Kernel  string            `json:"kernel,omitempty"`
	Initrd  string            `json:"initrd,omitempty"`
	Cmdline string            `json:"cmdline,omitempty"`
	Extra   map[string]string `json:"extra,omitempty"`
	// Firmware is FirmwareBIOS (also when empty) or FirmwareUEFI; with
	// UEFI the variable store belongs to the machine and travels with
	// every point. SecureBoot turns on UEFI Secure Boot.
	Firmware   string `json:"firmware,omitempty"`
	SecureBoot bool   `json:"secure_boot,omitempty"`
	// Devices is DevicesVirtio (also when empty) or DevicesCompatible.
	Devices string `json:"devices,omitempty"`
	// Media is the installer image (ISO) in the machine's CD-ROM drive,
	// relative to the machine directory; empty: the drive is empty. The
	// machine boots from it while it is there.
	Media string `json:"media,omitempty"`
}

// Firmware and device families of a Spec.
const (
	FirmwareBIOS      = "bios"
	FirmwareUEFI      = "uefi"
	DevicesVirtio     = "virtio"
	DevicesCompatible = "compatible"
	// CapFirmwarePrefix announces, one each, the firmwares a plugin boots
	// ("firmware:uefi"); CapMedia: it has a CD-ROM drive for Spec.Media.
	CapFirmwarePrefix = "firmware:"
	CapMedia          = "media"
)

// MediaPath is the installer's file for the machine in machineDir, or ""
// when the drive is empty. The spec comes from the pad, which is not
// trusted: the name must be a plain file in the machine directory (not a
// path, not a link), so that no file or disk of the PC's own ends up in
// the guest's drive.
func (s Spec) MediaPath(machineDir string) (string, error) {
	if s.Media == "" {
		return "", nil
	}
	if s.Media != filepath.Base(s.Media) || s.Media == "." || s.Media == ".." || strings.HasPrefix(s.Media, ".") {
		return "", fmt.Errorf("the machine's installer %q is not a file name in its directory: %w", s.Media, sdk.ErrInvalidArgument)
	}
	p := filepath.Join(machineDir, s.Media)
	st, err := os.Lstat(p)
	if err != nil {
		return "", fmt.Errorf("the machine's installer: %w", err)
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("the machine's installer %s is not a regular file: %w", p, sdk.ErrInvalidArgument)
	}
	return p, nil
}

// FirmwareOf is the spec's firmware, FirmwareBIOS when unset.
func (s Spec) FirmwareOf() string {
	if s.Firmware == "" {
		return FirmwareBIOS
	}
	return s.Firmware
}

// StartRequest cold-boots a machine.
type StartRequest struct {
	Spec Spec
	// MachineDir is the machine's directory inside the unlocked vault; the
	// plugin keeps disks and its own files there.
	MachineDir string
	// From, when set, boots the disk state kept in a point (a KeepDisks or
	// Suspend result) instead of the disks' latest state; the latest state
	// is left as it is. Only for plugins with CapDiskHistory.
	From *PointState
}

// PointState locates what a plugin wrote for a sealed point.
type PointState struct {
	// StateDir is the point's directory in the vault (read only).
	StateDir string
	// Description is what the plugin returned when it wrote the point.
	Description string
}

// StartResponse describes the machine as started.
type StartResponse struct {
	// Description is the plugin's exact machine description (machine type,
	// devices, CPU model); the core records it with each suspend point and
	// hands it back on Resume.
	Description string
	// Console is how to reach the machine's serial console, if it has one.
	Console Console
	// CPUFeatures are the host CPU features (/proc/cpuinfo names) that the
	// machine's CPU model needs: a point taken of it resumes only on a host
	// that has them all (the core checks before Resume). nil: the plugin
	// does not say (or the needs are the host's own, as for "host"), and
	// the core applies package x86cpu to the host profile.
	CPUFeatures []string
	// RunningFiles names, for a file a suspend will make a mapped file of
	// the point (FileSum.Mapped), the file the machine runs on (in
	// MachineDir): file name → path. The core may hash it in the
	// background while the machine runs (from a reflink clone it makes
	// beside it), so that the suspend hashes only what changed since.
	// A resume says the same in ResumeResponse.RunningCopies.
	RunningFiles map[string]string
}

// Console locates a running machine's serial console on this host.
type Console struct {
	// Socket is a unix socket: bytes written to it are typed on the
	// console (and the console's output is sent back).
	Socket string
	// Log is a file that receives everything the console prints while the
	// machine runs; it is removed when the machine stops.
	Log string
	// Screen, when the machine has a display (Spec.Display "vnc" or
	// "auto"), is a unix socket serving its screen over VNC (RFB 3.8,
	// no authentication: the socket is in a directory only the user can
	// enter). `soulpad view` attaches to it.
	Screen string
}

// SuspendRequest stops the running machine and saves it.
type SuspendRequest struct {
	Name string
	// StateDir is a directory inside the vault to write memory and device
	// state (and anything else the resume needs) into; it holds nothing
	// of the plugin's yet (the core's own files there start with ".").
	StateDir string
	// Checkpoint: the machine goes on running after its state is taken
	// (paused only as long as taking it needs); its disks go on in new
	// overlays. Only with CapCheckpoint.
	Checkpoint bool
}

// SuspendResponse lists what was written.
type SuspendResponse struct {
	// Files are the files written, relative to StateDir. The core fsyncs and
	// checksums them and seals the suspend point.
	Files []string
	// Description is the machine description to hand back on Resume.
	Description string
	// Sums, optional, are checksums of files the plugin computed as it
	// wrote them; the core records them instead of reading those files
	// again (it still fsyncs them and checks their size). An entry may
	// also just mark a file Mapped.
	Sums []FileSum
	// Phases, optional, say where the time went (for the journal).
	Phases []Phase
	// Machine, optional, names the machine in a line for people
	// ("QEMU 7.2.0, pc-q35-7.2"): the point records it, and a host with
	// another VMM plugin names it when it cannot resume the point.
	Machine string
}

// FileSum is the checksum of a file a plugin wrote, whole and per chunk
// (so that a later reader can check a part without reading all).
type FileSum struct {
	// Name is relative to StateDir.
	Name string
	Size uint64
	// SHA256 is the whole file's, in hex; with SumOfChunks, the SHA-256
	// of the chunk sums (as bytes, in order) instead.
	SHA256 string
	// ChunkBytes is the chunk size; ChunkSHA256 the chunks' SHA-256 in
	// order (the last chunk may be short). Empty when not computed.
	ChunkBytes  uint64
	ChunkSHA256 []string
	// Mapped marks a file the plugin does not read whole at resume (guest
	// RAM it maps, read as the guest touches it). SHA256 may then be
	// empty: the core checksums the file at seal, and at resume checks
	// it beside the running machine instead of before it, stopping the
	// machine without suspending if it does not match.
	Mapped bool
	// SumOfChunks: see SHA256.
	SumOfChunks bool
	// OnLoad: the plugin checks the file against this sum itself as it
	// loads it at resume (ResumeRequest.Sums), before the guest runs,
	// failing with sdk.ErrCorrupt; the core then does not read it first.
	OnLoad bool
}

// ResumeRequest restores a machine from a sealed suspend point.
type ResumeRequest struct {
	Spec        Spec
	MachineDir  string
	StateDir    string
	Description string
	// Sums are the point's checksums of the files the plugin marked
	// OnLoad when it suspended: it checks them as it loads them.
	Sums []FileSum
}

// ResumeResponse describes the resumed machine.
type ResumeResponse struct {
	Console Console
	// CPUFeatures: as in StartResponse.
	CPUFeatures []string
	// Phases, optional, say where the time went (for the journal).
	Phases []Phase
	// Notes are things the person should know about the resumed machine
	// (e.g. a device setting that waits for the next cold boot).
	Notes []string
	// RunningCopies names, for a mapped file of the point (FileSum.Mapped),
	// the file the machine runs on when that is a copy of it (a clone made
	// at resume, in MachineDir): file name → path. The core checks the
	// point's file through the copy, reading the point's own bytes only
	// where the copy differs, so that the pad's RAM is read once.
	RunningCopies map[string]string
}

// PowerOffRequest stops the machine without saving it.
type PowerOffRequest struct {
	Name string
	// Force kills the VMM instead of asking the guest to power off.
	Force bool
}

// PowerOffResponse is empty.
type PowerOffResponse struct{}

// StatusRequest asks for the machine's state.
type StatusRequest struct{ Name string }

// StatusResponse gives the machine's state.
type StatusResponse struct {
	// State is StateRunning, StatePaused or StateStopped.
	State  string
	Detail string
	// NoCheckpoint, from a plugin with CapCheckpoint, says why the
	// running machine cannot take a checkpoint ("" when it can).
	NoCheckpoint string
}

// VMM is the interface every VMM plugin implements. A plugin process runs
// at most one machine at a time.
type VMM interface {
	sdk.Plugin

	// Start cold-boots the machine in Spec. Disks that do not exist are
	// created with their size. It fails with sdk.ErrBusy when a machine is
	// running, sdk.ErrIncompatibleHost when the host cannot run the spec.
	// When Start returns nil the machine is running.
	Start(ctx context.Context, req StartRequest) (StartResponse, error)

	// Suspend stops the running machine and writes its whole state into
	// StateDir. When it returns nil the machine is stopped and StateDir holds
	// everything Resume needs; on error the machine keeps running if it can
	// and StateDir may hold partial files (the core discards them).
	// sdk.ErrNotRunning when nothing runs.
	//
	// The plugin owns the pairing of a point with its disk state: the
	// point must resume against the disks exactly as they were when it
	// was taken, however the machine's disks move on afterwards (another
	// session, a crash). Package diskchain does this with qcow2 overlays
	// (the frozen overlay is linked into StateDir); a plugin with disks of
	// another kind must do the same with its own.
	Suspend(ctx context.Context, req SuspendRequest) (SuspendResponse, error)

	// Resume restores the machine from StateDir and lets it run. Missing or
	// truncated state fails with sdk.ErrNotFound or sdk.ErrCorrupt, a state
	// that does not fit Spec with sdk.ErrIncompatibleHost; on failure nothing
	// runs and StateDir is unchanged. Resume never modifies StateDir.
	Resume(ctx context.Context, req ResumeRequest) (ResumeResponse, error)

	// PowerOff stops the machine without saving. PowerOff on a stopped
	// machine returns nil.
	PowerOff(ctx context.Context, req PowerOffRequest) (PowerOffResponse, error)

	// Status reports the machine's state.
	Status(ctx context.Context, req StatusRequest) (StatusResponse, error)
}

// ProgressRequest asks how far the running Suspend or Resume is.
type ProgressRequest struct{ Name string }

// ProgressResponse says it: Step is "suspend" or "resume", Done of Total
// bytes of state (Total 0 when unknown). Once a step has ended, its last
// figures stay until the next Suspend or Resume begins ("" before any),
// so the host's last poll after a short step still reads what it moved.
type ProgressResponse struct {
	Step        string
	Done, Total uint64
}

// ProgressReporter is optional (capability "progress"). Progress is called
// while Suspend or Resume runs (the host polls it a few times a second)
// and must answer at once.
type ProgressReporter interface {
	Progress(ctx context.Context, req ProgressRequest) (ProgressResponse, error)
}

// Event is something the machine did on its own.
type Event struct {
	Type    string
	Message string
	Time    time.Time
}

// EventsRequest subscribes to a machine's events.
type EventsRequest struct{ Name string }

// EventStreamer is optional (capability "events").
type EventStreamer interface {
	// Events sends the machine's events until ctx is done, then closes the
	// channel. Events that happen while nobody listens may be dropped, except
	// EventPoweredOff, which is sent to a subscriber that arrives after it.
	Events(ctx context.Context, req EventsRequest) (<-chan Event, error)
}

// KeepDisksRequest keeps the disks' latest state in a point of its own.
type KeepDisksRequest struct {
	Spec       Spec
	MachineDir string
	// StateDir is an empty directory inside the vault.
	StateDir string
}

// KeepDisksResponse lists what was written, as SuspendResponse does.
type KeepDisksResponse struct {
	Files       []string
	Description string
}

// CollectDisksRequest names the points whose disk state must stay.
type CollectDisksRequest struct {
	Spec       Spec
	MachineDir string
	// Keep are the points still on the pad.
	Keep []PointState
}

// CollectDisksResponse says what was removed.
type CollectDisksResponse struct {
	// Removed are paths relative to MachineDir.
	Removed    []string
	BytesFreed uint64
}

// DiskHistory is optional (capability "disk-history"): it lets the core
// keep a newer disk state when it resumes an older point (after a crash,
// or when the user picks a point), boot a kept disk state, and bound the
// pad's size when points are pruned. No machine runs during these calls.
type DiskHistory interface {
	// KeepDisks freezes the disks' latest state (left by a session that
	// ended without suspending) into StateDir, so that a later Start with
	// From boots it. The latest state itself is unchanged; KeepDisks may
	// be called again for the same state.
	KeepDisks(ctx context.Context, req KeepDisksRequest) (KeepDisksResponse, error)

	// CollectDisks removes the disk state that neither the disks' latest
	// state nor any point in Keep needs. It never removes what a kept
	// point or the latest state needs, whatever it is interrupted by.
	CollectDisks(ctx context.Context, req CollectDisksRequest) (CollectDisksResponse, error)
}
