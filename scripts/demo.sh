#!/usr/bin/env bash
# The walk-up demo: create a pad, run the guest, suspend, carry the pad to
# "another PC" (a new path, the old one gone), resume there in a new
# process and watch the guest's counter go on from where it was.
# Run through `make demo`, which installs and builds what is needed first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
soulpad="$root/bin/soulpad"
demo="$root/.cache/demo"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# `make demo VMM=vmm-libvirt` runs the same demo on libvirt: a libvirtd is
# started for it (scripts/libvirtd.sh) and stopped at the end.
if [ "${VMM:-vmm-qemu}" = vmm-libvirt ]; then
  say "starting libvirtd (scripts/libvirtd.sh)"
  export LIBVIRTD_SH_USER=$$  # counted as one user of the daemon
  scripts/libvirtd.sh start
  trap 'scripts/libvirtd.sh stop' EXIT
  export SOULPAD_PLUGINS_VMM=vmm-libvirt
fi

say "building the demo guest (Debian cloud kernel + busybox; cached)"
examples/guest/build.sh "$root/.cache/guest"

rm -rf "$demo"
mkdir -p "$demo/this-pc" "$demo/other-pc"
# The built-in default config, pointed at the demo guest and a demo pad.
export SOULPAD_PAD_PATH="$demo/this-pc/usb-pad"
export SOULPAD_MACHINE_KERNEL="$root/.cache/guest/vmlinuz"
export SOULPAD_MACHINE_INITRD="$root/.cache/guest/initrd.img"
export SOULPAD_MACHINE_CMDLINE="console=ttyS0 quiet panic=-1"
unset SOULPAD_CONFIG
# The vault's passphrase; a person types it at the prompt instead.
printf 'correct horse battery staple walks up\n' >"$demo/passphrase"
chmod 600 "$demo/passphrase"
export SOULPAD_UNLOCK_PASSPHRASE_FILE="$demo/passphrase"

# `make demo ISR=1`: Internet Suspend/Resume. The pad's versions live on
# an S3 server (SeaweedFS on 127.0.0.1, scripts/s3server.sh); PC A works
# and suspends, PC B (no pad at all) checks the pad out and resumes it,
# and a third place is refused while B holds the lease.
if [ -n "${ISR:-}" ]; then
  say "starting an S3 server on 127.0.0.1 (SeaweedFS; built once, about 16 CPU-minutes)"
  read -r endpoint key secret < <(scripts/s3server.sh start "$demo/s3")
  trap 'scripts/s3server.sh stop "$demo/s3"' EXIT
  cat >"$demo/site.hcl" <<HCL
# The built-in default config, with the pad's versions on the demo's S3 server.
pad { path = "$demo/pc-a/pad" }
machine { memory_mib = 256 }
plugins {
  crypt  = "crypt-gocryptfs"
  vmm    = "vmm-qemu"
  detect = "detect-linux"
  store  = "store-s3"
}
store { name = "alice" }
plugin "store-s3" {
  endpoint        = "$endpoint"
  secure          = false
  bucket          = "soulpad"
  access_key      = "$key"
  secret_key_file = "$secret"
}
HCL
  export SOULPAD_CONFIG="$demo/site.hcl"
  export SOULPAD_PAD_PATH="$demo/pc-a/pad"
fi

# `make demo DESKTOP=1`: the same story with a real OS: Debian 12 built
# here with mmdebstrap (scripts/debian-image.sh, cached), handed over as
# VMware would (a VMDK), imported with init --disk, booted with BIOS to its
# login prompt; the screen is saved before the suspend and after the
# resume on the other PC, into docs/img.
init_args=()
ticks_wait=600 # tenths of a second for the guest's first ticks
hook_1="" hook_2=""
if [ -n "${DESKTOP:-}" ]; then
  say "building Debian 12 with mmdebstrap (scripts/debian-image.sh; cached in .cache/debian)"
  scripts/debian-image.sh "$root/.cache/debian"
  say "its disk as VMware hands it over: a stream-optimised VMDK"
  qemu-img convert -p -f raw -O vmdk -o subformat=streamOptimized "$root/.cache/debian/debian.raw" "$demo/debian.vmdk"
  unset SOULPAD_MACHINE_KERNEL SOULPAD_MACHINE_INITRD SOULPAD_MACHINE_CMDLINE
  export SOULPAD_MACHINE_MEMORY_MIB=512 SOULPAD_MACHINE_DISPLAY=vnc
  init_args=(--disk "$demo/debian.vmdk")
  ticks_wait=3000 # a real OS boots in a minute or two under TCG
  mkdir -p "$root/docs/img"
  screen_before() { echo "-- soulpad view --screenshot docs/img/desktop-before-suspend.png"; "$soulpad" view --screenshot "$root/docs/img/desktop-before-suspend.png"; }
  screen_after() { echo "-- soulpad view --screenshot docs/img/desktop-after-resume.png"; "$soulpad" view --screenshot "$root/docs/img/desktop-after-resume.png"; }
  hook_1=screen_before hook_2=screen_after
fi

say "soulpad init ${init_args[*]}: a new pad at $SOULPAD_PAD_PATH"
"$soulpad" init "${init_args[@]}"

# session LABEL [HOOK]: run the machine, show its console, run HOOK while
# it runs, suspend it.
session() {
  local log="$demo/run-$1.log"
  "$soulpad" run >"$log" 2>&1 &
  local pid=$!
  local i
  for i in $(seq 1 300); do
    grep -q "the machine is running" "$log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "demo: soulpad run ended early" >&2; exit 1; }
    sleep 0.2
  done
  for i in $(seq 1 "$ticks_wait"); do
    [ "$("$soulpad" console --dump 2>/dev/null | grep -c soulpad-counter)" -ge 6 ] && break
    sleep 0.1
  done
  echo "-- the guest's serial console ('soulpad console'):"
  "$soulpad" console --dump >"$demo/console-$1.log"
  grep -E "soulpad-(counter|guest)" "$demo/console-$1.log" | tail -n 8 | sed 's/^/   /'
  if [ -n "${2:-}" ]; then "$2"; fi
  echo "-- soulpad suspend"
  "$soulpad" suspend
  wait "$pid" || { cat "$log"; echo "demo: soulpad run failed" >&2; exit 1; }
  echo "-- soulpad run said:"
  sed 's/^/   /' "$log"
}

say "soulpad run on this PC (cold boot), then suspend"
session 1 "$hook_1"

if [ -n "${ISR:-}" ]; then
  third_place() {
    echo "-- meanwhile, at a third place: soulpad run"
    if SOULPAD_PAD_PATH="$demo/pc-c/pad" "$soulpad" run >"$demo/run-c.log" 2>&1; then
      echo "demo: a third place ran the pad while PC B held the lease" >&2
      exit 1
    fi
    grep -iE "checked out" "$demo/run-c.log" | head -n 2 | sed 's/^/   /'
  }
  say "PC B, with no pad at all ($demo/pc-b/pad is empty): check out, copy in, resume"
  export SOULPAD_PAD_PATH="$demo/pc-b/pad"
  session 2 third_place
  say "soulpad store versions"
  "$soulpad" store versions
  first_end=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-1.log" | tail -n 1 | cut -d' ' -f2)
  second_start=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-2.log" | head -n 1 | cut -d' ' -f2)
  if [ -z "$second_start" ] || [ "$second_start" -le "$first_end" ]; then
    echo "demo: the counter did not continue on PC B: it was at $first_end, and printed ${second_start:-nothing}" >&2
    exit 1
  fi
  say "done: the counter was at $first_end on PC A and went on from $second_start on PC B, which had no pad"
  exit 0
fi

moved="$demo/other-pc/usb-pad"
say "unplug, walk to another PC, plug in: the pad is now at $moved"
cp -a "$SOULPAD_PAD_PATH" "$moved"
rm -rf "$SOULPAD_PAD_PATH"
export SOULPAD_PAD_PATH="$moved"

say "soulpad run on the other PC, in a new process: resume, the counter goes on"
session 2 "$hook_2"

first_end=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-1.log" | tail -n 1 | cut -d' ' -f2)
second_start=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-2.log" | head -n 1 | cut -d' ' -f2)
if [ -z "$second_start" ] || [ "$second_start" -le "$first_end" ]; then
  echo "demo: the counter did not continue: it was at $first_end before, and printed ${second_start:-nothing} after resume" >&2
  exit 1
fi

say "soulpad status"
"$soulpad" status

say "done: the counter was at $first_end on this PC and went on from $second_start on the other one"
