#!/bin/sh
# A real S3 server on 127.0.0.1 for the store tests and the ISR demo:
# SeaweedFS ("weed mini"), built once from the Go module proxy and cached
# by version.
#
#   scripts/s3server.sh build              build (or find) the weed binary; prints its path
#   scripts/s3server.sh start DIR          start a server with its data in DIR and a
#                                          bucket "soulpad"; prints
#                                          "endpoint ACCESS_KEY SECRET_KEY_FILE" and
#                                          writes DIR/env with the same
#   scripts/s3server.sh stop DIR           stop it
#
# SeaweedFS because it builds here from the module proxy (MinIO's server
# does too, but is larger; Garage and Ceph are not Go) and honours
# If-None-Match: * on PUT, which the lease and the versions rely on.
# Building takes about 16 CPU-minutes, once per version.
set -eu

VERSION=v0.0.0-20261109003541-7506e5f91cd6
MODULE=github.com/seaweedfs/seaweedfs
CACHE=${SOULPAD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/soulpad}
WEED=$CACHE/seaweedfs-$VERSION/weed

build() {
  if [ -x "$WEED" ]; then echo "$WEED"; return; fi
  mkdir -p "$(dirname "$WEED")"
  echo "building SeaweedFS $VERSION (about 16 CPU-minutes, once)…" >&2
  dir=$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -n "$dir" ] || { echo "s3server: go mod download $MODULE@$VERSION failed" >&2; exit 1; }
  src=$(mktemp -d)
  trap 'rm -rf "$src"' EXIT
  cp -r "$dir/." "$src/"
  chmod -R u+w "$src"
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -o "$WEED.tmp" ./weed)
  mv "$WEED.tmp" "$WEED"
  echo "$WEED"
}

# free_port prints a TCP port nobody listens on (from the kernel).
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

start() {
  dir=$1
  mkdir -p "$dir/data"
  weed=$(build)
  key=soulpad-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')
  od -An -N24 -tx1 /dev/urandom | tr -d ' \n' > "$dir/secret"
  chmod 600 "$dir/secret"
  cat > "$dir/s3.json" <<EOF
{"identities": [{"name": "soulpad", "credentials": [{"accessKey": "$key", "secretKey": "$(cat "$dir/secret")"}],
  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
EOF
  chmod 600 "$dir/s3.json"
  # Every port from the kernel, so servers of parallel tests never meet.
  s3=$(free_port); master=$(free_port); volume=$(free_port); filer=$(free_port)
  "$weed" mini -dir="$dir/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.config="$dir/s3.json" \
    -s3.port="$s3" -s3.port.grpc="$(free_port)" -s3.port.iceberg=0 -s3.port.lance=0 \
    -master.port="$master" -master.port.grpc="$(free_port)" -master.telemetry=false \
    -volume.port="$volume" -volume.port.grpc="$(free_port)" \
    -filer.port="$filer" -filer.port.grpc="$(free_port)" -filer.localSocket="$dir/filer.sock" \
    -webdav=false -admin.ui=false -admin.port.legacy=0 -bucket=soulpad \
    >"$dir/weed.log" 2>&1 </dev/null &
  echo $! > "$dir/pid"
  i=0
  until curl -s -o /dev/null "http://127.0.0.1:$s3/"; do
    i=$((i + 1))
    if [ $i -gt 600 ] || ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      echo "s3server: SeaweedFS did not come up; its log:" >&2
      tail -30 "$dir/weed.log" >&2
      stop "$dir"
      exit 1
    fi
    sleep 0.1
  done
  echo "127.0.0.1:$s3 $key $dir/secret" | tee "$dir/env"
}

stop() {
  dir=$1
  [ -f "$dir/pid" ] || return 0
  pid=$(cat "$dir/pid")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/pid"
}

case "${1:-}" in
  build) build ;;
  start) [ $# -eq 2 ] || { echo "usage: $0 start DIR" >&2; exit 2; }; start "$2" ;;
  stop) [ $# -eq 2 ] || { echo "usage: $0 stop DIR" >&2; exit 2; }; stop "$2" ;;
  *) echo "usage: $0 build | start DIR | stop DIR" >&2; exit 2 ;;
esac
