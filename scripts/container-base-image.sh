#!/usr/bin/env bash
# Makes a minimal Node base image from this machine's own node binary, for building
# Cascade's Dockerfile where no registry is reachable (so `node:20-bookworm-slim` cannot
# be pulled):
#
#   scripts/container-base-image.sh [TAG]          # default TAG: localhost/node-base:20
#   podman build --build-arg BASE=localhost/node-base:20 ...
#
# The image holds node, the shared libraries `ldd` lists for it (and for any extra
# binaries given in CASCADE_BASE_EXTRA_BINARIES, space separated, e.g. native addons),
# busybox as /bin/sh and its applets, a root and a nobody user, and a writable /tmp.
# It is labelled with the node version, so callers can tell a stale image from a good one.
#
# Needs: podman, ldd, and a busybox binary (Debian: apt-get install busybox-static).
set -euo pipefail

tag="${1:-localhost/node-base:20}"
node_bin="$(readlink -f "$(command -v node)")"
busybox_bin="$(command -v busybox || true)"
if [ -z "$busybox_bin" ]; then
  echo "container-base-image: no busybox on PATH; install it (apt-get install -y busybox-static) so the image has a shell" >&2
  exit 1
fi
busybox_bin="$(readlink -f "$busybox_bin")"
node_version="$("$node_bin" --version)"

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/var/tmp"
chmod 1777 "$root/tmp" "$root/var/tmp"

install -m 0755 "$node_bin" "$root/usr/local/bin/node"
install -m 0755 "$busybox_bin" "$root/bin/busybox"
for applet in $("$busybox_bin" --list); do
  [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
done

# Every library the loader resolves, at the path the loader will look for it
# (ldd prints the resolved path; the loader itself appears without "=>").
copy_libraries() {
  # A static binary makes ldd fail: it simply needs nothing.
  { ldd "$1" 2>/dev/null || true; } | awk '/=> \// { print $3 } /^[[:space:]]*\// { print $1 }' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    [ -e "$root$lib" ] || cp -L "$lib" "$root$lib"
  done
}
copy_libraries "$node_bin"
copy_libraries "$busybox_bin"
for extra in ${CASCADE_BASE_EXTRA_BINARIES:-}; do
  copy_libraries "$extra"
done

cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$root/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'hosts: files dns' >"$root/etc/nsswitch.conf"

tar -C "$root" -c . | podman import --quiet \
  --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
  --change "LABEL org.cascade.node-version=$node_version" \
  --change 'CMD ["node"]' \
  - "$tag" >/dev/null
echo "$tag (node $node_version)"
