# SoulPad site config: every key, with its default and what it does.
#
#   soulpad config check examples/site.hcl    validate this file
#   soulpad init --config examples/site.hcl   create the pad it describes
#   soulpad run  --config examples/site.hcl   run it
#
# Relative paths are relative to this file's directory, in plugin blocks
# too. Any key can be overridden by an environment variable: pad.path is
# SOULPAD_PAD_PATH, machine.memory_mib is SOULPAD_MACHINE_MEMORY_MIB, and
# so on (`soulpad config env` lists them; lists are comma-separated); a
# key of a plugin's block is SOULPAD_PLUGIN_<PLUGIN>_<KEY>, e.g.
# SOULPAD_PLUGIN_BACKUP_RESTIC_REPOSITORY. `soulpad config check` checks
# the file, the environment and every plugin's block.

pad {
  # The pad's directory: the USB disk's mount point, a partition's mount
  # point, or any directory. Required.
  path = "pad"

  # Capacity of the vault, for crypt plugins with fixed-size containers.
  # Default 2048.
  vault_size_mib = 2048

  # A bootable pad's host OS sets this to the disk it booted from (sda):
  # every unlock then checks that disk's boot partitions against the
  # record in the vault. Elsewhere a pad on a partition of a disk laid
  # out by `soulpad image` is checked without it. Default: unset.
  # boot_disk = "sda"
}

unlock {
  # Where the passphrase comes from when not typed at the prompt: a file
  # whose first line is the passphrase. Default: none (prompt).
  # passphrase_file = "/run/secrets/soulpad"

  # A key file instead of a passphrase, e.g. on a second USB key.
  # Default: none.
  # key_file = "/media/key/soulpad.key"
}

machine {
  # The machine's name inside the vault. Default "soul".
  name = "soul"

  # Guest memory in MiB (16 to 1048576). Default 256.
  memory_mib = 256

  # Virtual CPUs (1 to 256). Default 1.
  vcpus = 1

  # Guest CPU model. "portable" (QEMU's qemu64) resumes on any x86-64
  # host. "host" (KVM) or "max" give the guest every feature of this CPU:
  # fastest, but a suspend point then resumes only on a host with all of
  # those features, and a resume elsewhere is refused before the VMM
  # starts, naming what is missing (`soulpad run --cold-boot` boots the
  # latest disk instead). Any other name is passed to the VMM unchecked.
  # Each suspend point records its model and the features it needs.
  # Default "portable".
  cpu_model = "portable"

  # "auto" uses KVM when /dev/kvm is usable and TCG otherwise; "kvm" or
  # "tcg" forces one. Default "auto".
  accelerator = "auto"

  # Size of the machine's disk, created on first boot (0: no disk).
  # Default 64.
  disk_size_mib = 64

  # "user" (NAT, like the original SoulPad) or "none". Default "user".
  network = "user"

  # The machine's screen. "vnc": served on a private unix socket, shown by
  # `soulpad view` (or saved by `soulpad view --screenshot FILE`). "auto":
  # the same, and a window of its own when the host has a desktop
  # (DISPLAY or WAYLAND_DISPLAY; vmm-qemu). "none": no screen, the serial
  # console only. Default "auto".
  display = "auto"

  # "bios" (SeaBIOS) or "uefi" (OVMF). With UEFI the machine's variable
  # store (its boot entries) lives in the vault and is part of every
  # suspend point. secure_boot = true starts it with Secure Boot on and
  # Microsoft's keys enrolled. Default "bios".
  firmware = "bios"
  # secure_boot = false

  # "virtio" (fast; Linux has the drivers) or "compatible" (a SATA disk,
  # an e1000 NIC: for guests without virtio drivers, such as a stock
  # Windows installer). Both have a USB tablet beside the PS/2 keyboard, so the screen
  # can be used with a mouse, and a CD-ROM drive for `soulpad media`.
  # Part of the machine: a suspend point resumes with the devices it was
  # made with. Default "virtio".
  devices = "virtio"

  # Boot a kernel directly instead of from the disk: these files are copied
  # into the vault by `soulpad init`. Default: none.
  # kernel  = "guest/vmlinuz"
  # initrd  = "guest/initrd.img"
  # cmdline = "console=ttyS0"
}

plugins {
  # Where plugin binaries are looked for, in order, before plugins/ beside
  # the soulpad executable (and the pad's own plugins/, on pad_plugins'
  # terms, below). Default: none.
  dirs = []

  # The crypt plugin that makes and opens the vault. Required.
  # crypt-gocryptfs: a gocryptfs cipher directory over FUSE (no
  # device-mapper needed). crypt-luks: a LUKS2 container with ext4 inside,
  # opened by cryptsetup on any Linux (a fixed size: pad.vault_size_mib).
  # crypt-plain stores the vault unencrypted and is
  # for tests and measurements only.
  crypt = "crypt-gocryptfs"

  # The VMM plugin that runs the machine. Required. vmm-qemu drives QEMU
  # itself; vmm-libvirt runs the same machine through libvirt.
  vmm = "vmm-qemu"

  # The hardware-detection plugin: detect-linux reads CPU, KVM, memory,
  # storage, network and display from /proc and /sys; the core uses it to
  # choose KVM or TCG, fit the machine's memory, and check a suspend
  # point's CPU features. "" uses a minimal built-in probe (CPU count and
  # /dev/kvm only; CPU features are then not checked). Default "" (the
  # built-in config that `soulpad` uses without --config sets
  # "detect-linux").
  detect = "detect-linux"

  # The backup plugin (optional): backup-restic (a restic repository on a
  # second disk or a LAN path) or backup-tsm (IBM Storage Protect through
  # dsmc). `soulpad backup`, `soulpad backups` and `soulpad restore` use
  # it. What is backed up is the locked pad: the target never needs the
  # vault's key.
  backup = ""

  # The store plugin (optional): store-s3 keeps versions of the locked pad
  # on an S3 object store (Internet Suspend/Resume). `soulpad run` then
  # checks the pad out and copies in what it lacks before unlock, and
  # copies out what changed and checks it in after the suspend; a PC
  # without a pad starts from an empty pad.path. Needs store.name.
  store = ""

  # Pin plugin binaries by SHA-256: a binary that differs is refused.
  # `soulpad plugins` prints each binary's SHA-256.
  # sha256 {
  #   "vmm-qemu" = "0123…"
  # }

  # Start only pinned plugins: every plugin chosen above must have its
  # SHA-256 in sha256. For sites that pin everything. Default false.
  # (Whatever this says, a plugin binary or directory that group or others
  # can write, or that another user owns, is never started; and the vault
  # records the plugins carried on the pad at each lock, so a run stops
  # right after unlock when one changed while the pad was locked.)
  strict = false

  # Run the plugins the pad carries in its plugins/ (`soulpad init` copies
  # them there) when this host lacks them and they are not pinned in
  # sha256. The pad is untrusted input: anyone who held it could have
  # replaced a plugin to read the passphrase, and a plugin runs with
  # soulpad's rights. The host's own plugins (plugins.dirs, plugins/
  # beside soulpad) always come first. Default false.
  pad_plugins = false
}

session {
  # Upper bound for the suspend stage, in seconds. Default 300.
  suspend_timeout_seconds = 300

  # Upper bound for every other stage but run. Default 120.
  stage_timeout_seconds = 120

  # Back up the locked pad with plugins.backup after each suspend. It
  # runs after the pad is locked and can be skipped with Ctrl-C (or by
  # unplugging); the next backup catches up.
  # Default false.
  backup_after_suspend = false

  # How many suspend points (memory and disk) are kept. After a new point
  # is sealed, the oldest beyond this count are pruned, with what only
  # they needed of the disk. Disks kept after a crash (points of kind
  # "disk") are never pruned on their own: `soulpad points rm` or
  # `soulpad points prune --disks` removes them. Default 3.
  keep_points = 3

  # Take a checkpoint every this many minutes while the machine runs, so
  # that a crash, a kill or an unplugged pad loses at most that much: the
  # guest pauses only for its device state and the clone of its RAM file,
  # and the point is sealed while it runs on. Only where memory is mapped
  # from the vault (vmm-qemu on crypt-luks with XFS); elsewhere `soulpad
  # status` says why there are none. 0 turns them off. Default 10.
  checkpoint_minutes = 10

  # How many checkpoints are kept, apart from keep_points. Default 3.
  keep_checkpoints = 3
}

log {
  # What goes to stderr: trace, debug, info, warn or error. Progress and
  # the stage table go to stdout whatever the level. Default "warn".
  level = "warn"
}

# Each plugin's own block, handed to the plugin as is. See the plugin's
# documentation for its keys.
plugin "crypt-gocryptfs" {
  # scrypt cost (log2 N) for new vaults: higher is slower to unlock and
  # harder to guess. Default 16.
  scrypt_logn = 16

  # The gocryptfs binary. Default: gocryptfs from PATH.
  # binary = "/usr/bin/gocryptfs"
}

plugin "crypt-luks" {
  # "kernel" (dm-crypt; needs device-mapper), "userspace" (decrypts in the
  # plugin and serves the payload over FUSE; needs /dev/fuse), or "auto"
  # (default): kernel where device-mapper exists.
  engine = "auto"

  # argon2id cost of new key slots: memory in KiB (8192..4194304),
  # iterations (4..1000), threads (1..16). The defaults unlock in about a
  # second on a small host; cryptsetup can raise them later.
  argon2_memory_kib = 65536
  argon2_iterations = 4
  argon2_threads    = 2

  # Create writes the whole container (encrypted zeros, about 1 GB/s
  # here), so it shows nothing of which blocks hold data and later writes
  # overwrite in place, which is faster. false makes a sparse container.
  fill = true

  # The file system inside new containers: "xfs" (reflink: vmm-qemu's
  # mapped memory clones the guest's RAM into each point), "ext4", or
  # "auto" (default): xfs for vaults of 400 MiB or more when mkfs.xfs is
  # installed. Unlock opens either.
  filesystem = "auto"
}

plugin "detect-linux" {
  # Where /proc, /sys and /dev are read. Default "/".
  # root = "/"

  # Bounds of the optional storage read test, per device.
  probe_mib     = 256
  probe_seconds = 1
}

plugin "vmm-qemu" {
  # The emulator and image tool. Default: from PATH.
  # qemu     = "/usr/bin/qemu-system-x86_64"
  # qemu_img = "/usr/bin/qemu-img"

  # QEMU machine type; default: the versioned type "q35" stands for here.
  # Suspend points record it and need it to resume.
  # machine_type = "pc-q35-7.2"

  # Cap on the suspend stream in MiB/s; 0 (default) means no cap.
  max_bandwidth_mibps = 0

  # Where the guest's RAM lives. "mapped": a file in the vault, cloned into
  # each point — a suspend writes what the guest changed, a resume starts
  # at once (needs a vault that can clone files: crypt-luks with XFS).
  # "stream": all RAM in every point's migration stream. "auto" (default):
  # mapped where the vault can clone files.
  memory = "auto"
}

plugin "vmm-libvirt" {
  # The libvirt connection. Default "qemu:///system".
  uri = "qemu:///system"

  # Save and restore without the host's page cache. Default false.
  bypass_cache = false

  # Domain machine type; libvirt records the versioned type in each save
  # image. Default "q35".
  # machine_type = "q35"

  # The tool that makes disk overlays. Default: qemu-img from PATH.
  # qemu_img = "/usr/bin/qemu-img"
}

# With plugins.store: the pad's name on the store (lower-case letters,
# digits, '.', '_', '-'), and how long its lease holds without a renewal
# (a live session renews it every third of that; a PC that dies holding
# it keeps others out that long). Default 15 minutes.
# store {
#   name          = "alice"
#   lease_minutes = 15
# }

# plugin "store-s3" {
#   # The S3 service, host[:port]. Required.
#   endpoint = "s3.example.org"
#   # HTTPS. Default true.
#   secure = true
#   region = ""
#   # The bucket (it must exist). Required.
#   bucket = "soulpad"
#   # Goes before every key. Default none.
#   prefix = "pads/"
#   # Credentials. Required, unless anonymous = true (a bucket that takes
#   # anonymous requests). Checkout runs before unlock, so the secret lives
#   # outside the vault: on the host (/etc/soulpad), or on a bootable pad's
#   # pad partition, which is not encrypted. Use a key that can reach only
#   # this bucket and prefix: whoever holds it can delete, replace or hide
#   # the pad's versions on the store.
#   access_key = "…"
#   secret_key_file = "/etc/soulpad/s3-secret"
#   anonymous = false
#   # Chunks moved at once. Default 8.
#   parallel = 8
# }

# plugin "backup-restic" {
#   # The restic repository: a directory on a second disk, or a location
#   # restic takes (sftp:host:/path, rest:http://…).
#   repository = "/media/backup/soulpad"
#   # The repository's password, handed to restic by file. Required.
#   password_file = "/media/backup/soulpad.password"
#   # Create the repository when it is missing. Default true.
#   init = true
#   # The restic binary. Default: restic from PATH.
#   # restic = "/usr/bin/restic"
# }

# plugin "backup-tsm" {
#   # The client option file (server address, NODENAME, PASSWORDACCESS).
#   optfile = "/opt/tivoli/tsm/client/ba/bin/dsm.opt"
#   # The node password, typed at the client's prompt (never on its
#   # command line); leave it out with PASSWORDACCESS GENERATE.
#   password_file = "/etc/soulpad/tsm.password"
#   # The chunked mirror kept between backups: unchanged chunks are
#   # unchanged files, so dsmc incremental sends only what changed.
#   # Default "/var/tmp/soulpad-tsm".
#   staging_dir = "/var/tmp/soulpad-tsm"
#   # Files of large_file_mib or more are split into chunk_mib chunks.
#   # Defaults 64 and 4.
#   large_file_mib = 64
#   chunk_mib      = 4
#   # The client binary. Default: dsmc from PATH.
#   # dsmc = "/usr/bin/dsmc"
# }

# plugin "crypt-plain" {
#   # crypt-plain (no encryption) refuses to work unless this is true.
#   # Default false.
#   allow_no_encryption = true
# }
