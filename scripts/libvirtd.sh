#!/usr/bin/env bash
# Starts and stops a libvirtd for SoulPad's tests and demo (Debian 12's
# monolithic libvirtd, no systemd needed), configured so it runs QEMU as
# root without cgroups, under a child subreaper so QEMU processes are
# reaped at once.
#
#   scripts/libvirtd.sh start    start it unless one answers already; prints the URI
#   scripts/libvirtd.sh stop     stop the one this script started, when no user is left
#
# Users are counted: each start by a process adds one (LIBVIRTD_SH_USER,
# default the caller's PID), each stop removes it; the daemon stops with
# the last. A daemon this script did not start is never stopped.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
state=/run/soulpad-libvirtd
uri=qemu:///system
user=${LIBVIRTD_SH_USER:-$PPID}
mkdir -p "$state/users"
exec 9>"$state/lock"
flock 9

answers() { virsh -c "$uri" version >/dev/null 2>&1; }

prune() { # forget users whose process is gone
  for f in "$state"/users/*; do
    [ -e "$f" ] || continue
    kill -0 "$(basename "$f")" 2>/dev/null || rm -f "$f"
  done
}

case "${1:-}" in
start)
  command -v libvirtd >/dev/null || { echo "libvirtd is missing: run scripts/deps.sh (libvirt-daemon, libvirt-daemon-driver-qemu)" >&2; exit 1; }
  touch "$state/users/$user"
  if answers; then echo "$uri"; exit 0; fi
  getent group libvirt-qemu >/dev/null || groupadd -r libvirt-qemu
  id libvirt-qemu >/dev/null 2>&1 || useradd -r -g libvirt-qemu -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
  mkdir -p /var/log/libvirt /var/lib/libvirt/qemu /run/libvirt /etc/libvirt
  cat > /etc/libvirt/qemu.conf <<'CONF'
# Written by SoulPad's scripts/libvirtd.sh.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
stdio_handler = "file"
cgroup_controllers = [ ]
namespaces = [ ]
security_driver = "none"
CONF
  sub="$state/subreaper"
  if [ ! -x "$sub" ] || [ "$root/internal/subreaper/main.go" -nt "$sub" ]; then
    (cd "$root" && go build -o "$sub" ./internal/subreaper)
  fi
  "$sub" libvirtd >"$state/libvirtd.log" 2>&1 </dev/null 9>&- &
  echo $! > "$state/pid"
  for _ in $(seq 1 100); do
    if answers; then echo "$uri"; exit 0; fi
    kill -0 "$(cat "$state/pid")" 2>/dev/null || break
    sleep 0.1
  done
  echo "libvirtd did not come up; its log:" >&2
  tail -20 "$state/libvirtd.log" >&2
  exit 1
  ;;
stop)
  rm -f "$state/users/$user"
  prune
  if [ -n "$(ls -A "$state/users")" ] || [ ! -f "$state/pid" ]; then exit 0; fi
  pid=$(cat "$state/pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$state/pid"
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 2
  ;;
esac
