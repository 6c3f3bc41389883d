#!/bin/sh
# Builds the images compose.yaml runs, from files on this machine (no registry is needed
# or used): a root filesystem holding a binary and the shared libraries it links,
# imported through the Docker engine.
#
#   deploy/docker/build-images.sh [DISPATCH_BINARY] [DISPATCH_TAG] [PROMETHEUS_TAG]
#
# defaults: target/release/dispatch, dispatch:local, dispatch-prometheus:local.
# The dispatch image also holds Debian's static busybox (a shell for the join-token
# one-shot, and what a worker builds the default sandbox image from); the Prometheus
# image holds Debian's prometheus. Needs: docker, busybox-static, prometheus.
set -eu

BIN=${1:-target/release/dispatch}
DISPATCH_TAG=${2:-dispatch:local}
PROMETHEUS_TAG=${3:-dispatch-prometheus:local}
BUSYBOX=${BUSYBOX:-/bin/busybox}
PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}

for f in "$BIN" "$BUSYBOX" "$PROMETHEUS"; do
    [ -x "$f" ] || { echo "build-images: $f is missing (cargo build --release; apt-get install busybox-static prometheus)" >&2; exit 1; }
done
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Copies a binary to $1/$3 (stripped when strip is there) and every library it links.
install_binary() {
    root=$1 src=$2 dest=$3
    mkdir -p "$root$(dirname "$dest")"
    strip -o "$root$dest" "$src" 2>/dev/null || cp "$src" "$root$dest"
    ldd "$src" 2>/dev/null | awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^\//) print $i }' | while read -r lib; do
        cp --parents -L "$lib" "$root"
    done
}

# The common base: users, CA roots for https callbacks, busybox, /tmp.
base() {
    root=$1
    mkdir -p "$root/etc" "$root/bin" "$root/tmp"
    chmod 1777 "$root/tmp"
    printf 'root:x:0:0::/root:/bin/sh\ndispatch:x:10001:10001::/data:/bin/sh\nnobody:x:65534:65534::/nonexistent:/bin/false\n' >"$root/etc/passwd"
    printf 'root:x:0:\ndispatch:x:10001:\nnogroup:x:65534:\n' >"$root/etc/group"
    if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
        mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    fi
    cp "$BUSYBOX" "$root/bin/busybox"
    for applet in sh cat echo ls mkdir test sleep; do ln -s busybox "$root/bin/$applet"; done
}

# tar of $1 owned by root, except directory $2 owned by uid:gid $3 (the service's state).
pack() {
    root=$1 state=$2 owner=$3
    tar -C "$root" --numeric-owner --owner=0 --group=0 --exclude="./$state" -cf "$WORK/rootfs.tar" .
    tar -C "$root" --numeric-owner --owner="${owner%:*}" --group="${owner#*:}" -rf "$WORK/rootfs.tar" "./$state"
}

D="$WORK/dispatch"
base "$D"
install_binary "$D" "$BIN" /usr/local/bin/dispatch
mkdir -p "$D/data" && chmod 0700 "$D/data"
pack "$D" data 10001:10001
docker import \
    --change 'ENTRYPOINT ["/usr/local/bin/dispatch"]' \
    --change 'USER 10001' \
    --change 'WORKDIR /data' \
    --change 'ENV DISPATCH_DATA_DIR=/data PATH=/usr/local/bin:/bin' \
    "$WORK/rootfs.tar" "$DISPATCH_TAG" >/dev/null
echo "built $DISPATCH_TAG from $BIN"

P="$WORK/prometheus"
base "$P"
install_binary "$P" "$PROMETHEUS" /bin/prometheus
mkdir -p "$P/prometheus"
pack "$P" prometheus 65534:65534
docker import \
    --change 'ENTRYPOINT ["/bin/prometheus"]' \
    --change 'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]' \
    --change 'USER 65534' \
    --change 'WORKDIR /prometheus' \
    "$WORK/rootfs.tar" "$PROMETHEUS_TAG" >/dev/null
echo "built $PROMETHEUS_TAG from $PROMETHEUS"
