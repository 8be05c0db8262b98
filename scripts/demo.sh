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

say "soulpad init: a new pad at $SOULPAD_PAD_PATH"
"$soulpad" init

# session LABEL: run the machine, show its console, suspend it.
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
  for i in $(seq 1 300); do
    [ "$("$soulpad" console --dump 2>/dev/null | grep -c soulpad-counter)" -ge 6 ] && break
    sleep 0.2
  done
  echo "-- the guest's serial console ('soulpad console'):"
  "$soulpad" console --dump >"$demo/console-$1.log"
  grep -E "soulpad-(counter|guest)" "$demo/console-$1.log" | tail -n 8 | sed 's/^/   /'
  echo "-- soulpad suspend"
  "$soulpad" suspend
  wait "$pid" || { cat "$log"; echo "demo: soulpad run failed" >&2; exit 1; }
  echo "-- soulpad run said:"
  sed 's/^/   /' "$log"
}

say "soulpad run on this PC (cold boot), then suspend"
session 1

moved="$demo/other-pc/usb-pad"
say "unplug, walk to another PC, plug in: the pad is now at $moved"
cp -a "$SOULPAD_PAD_PATH" "$moved"
rm -rf "$SOULPAD_PAD_PATH"
export SOULPAD_PAD_PATH="$moved"

say "soulpad run on the other PC, in a new process: resume, the counter goes on"
session 2

first_end=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-1.log" | tail -n 1 | cut -d' ' -f2)
second_start=$(grep -o 'soulpad-counter [0-9]*' "$demo/console-2.log" | head -n 1 | cut -d' ' -f2)
if [ -z "$second_start" ] || [ "$second_start" -le "$first_end" ]; then
  echo "demo: the counter did not continue: it was at $first_end before, and printed ${second_start:-nothing} after resume" >&2
  exit 1
fi

say "soulpad status"
"$soulpad" status

say "done: the counter was at $first_end on this PC and went on from $second_start on the other one"
