#!/usr/bin/env bash
# Fetch a Redis ≥ 8.4 server (it has DELEX, the native compare-and-delete locks.Lock releases
# with) into a folder of this repository, without installing anything system-wide.
#
# Usage:
#     scripts/fetch_redis_8.sh            # → .cache/redis-8/redis-server (prints the path)
#     scripts/fetch_redis_8.sh DIR        # → DIR/redis-server
#     python bench/locks.py --server .cache/redis-8/redis-server
#     REDIS8_SERVER=.cache/redis-8/redis-server make test   # the tests find .cache/ by themselves
#
# Debian and Ubuntu on x86-64 or arm64 only: it downloads Debian's redis-tools package (from
# "experimental" while Redis 8.4+ is not yet in "unstable") with a private apt state, unpacks it
# with the C library and the few libraries it links, and writes DIR/redis-server, a wrapper that
# runs the binary with those libraries. macOS: `brew install redis` gives a Redis 8 directly.
set -euo pipefail

DIR=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.cache/redis-8"}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
LIBS="libc6 libjemalloc2 liblzf1 libssl3t64 libstdc++6 libgcc-s1 libatomic1 libsystemd0 libcap2
      zlib1g libzstd1"

fail() { echo "error: $*" >&2; exit 1; }

command -v apt-get >/dev/null && command -v dpkg >/dev/null \
  || fail "needs apt-get and dpkg (Debian or Ubuntu); elsewhere install Redis ≥ 8.4 yourself"
[ -r "$KEYRING" ] || fail "no $KEYRING: install the debian-archive-keyring package first"
ARCH=$(dpkg --print-architecture)
case $ARCH in
  amd64) LOADER=ld-linux-x86-64.so.2; TRIPLET=x86_64-linux-gnu ;;
  arm64) LOADER=ld-linux-aarch64.so.1; TRIPLET=aarch64-linux-gnu ;;
  *) fail "no recipe for architecture $ARCH" ;;
esac

if [ -x "$DIR/redis-server" ] && "$DIR/redis-server" --version >/dev/null 2>&1; then
  echo "$DIR/redis-server"  # already fetched
  exit 0
fi

APT=$(mktemp -d)
trap 'rm -rf "$APT"' EXIT
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
for suite in sid experimental; do
  echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $suite main"
done > "$APT/sources.list"
apt_() {
  apt-get -q -o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=- \
    -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" \
    -o Dir::State::status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)" "$@"
}
apt_ update >/dev/null || fail "cannot reach deb.debian.org to download Debian's packages"
cd "$APT/debs"
# the newest redis-tools (it holds redis-server): experimental's if it has one, else unstable's
apt_ download redis-tools/experimental >/dev/null 2>&1 || apt_ download redis-tools >/dev/null \
  || fail "Debian has no redis-tools package to download"
# shellcheck disable=SC2086  # LIBS is a word list
apt_ download $LIBS >/dev/null || fail "could not download the libraries Redis links ($LIBS)"

rm -rf "$DIR" && mkdir -p "$DIR/root" && DIR=$(cd "$DIR" && pwd)  # the wrapper runs from anywhere
for deb in *.deb; do dpkg -x "$deb" "$DIR/root"; done
LIBDIR="$DIR/root/usr/lib/$TRIPLET"
BINARY="$DIR/root/usr/bin/redis-check-rdb"  # redis-server is this binary, told by argv[0]
cat > "$DIR/redis-server" <<EOF
#!/bin/sh
# Debian's redis-server, run with the C library it was built for (fetched by fetch_redis_8.sh)
exec "$LIBDIR/$LOADER" --library-path "$LIBDIR" --argv0 redis-server "$BINARY" "\$@"
EOF
chmod +x "$DIR/redis-server"

VERSION=$("$DIR/redis-server" --version) || fail "the fetched redis-server does not run here"
read -r MAJOR MINOR < <(sed -E 's/.* v=([0-9]+)\.([0-9]+).*/\1 \2/' <<<"$VERSION")
(( MAJOR > 8 || (MAJOR == 8 && MINOR >= 4) )) \
  || fail "Debian's newest Redis is older than 8.4, it has no DELEX ($VERSION)"
echo "$DIR/redis-server"
