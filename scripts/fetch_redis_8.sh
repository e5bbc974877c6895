#!/usr/bin/env bash
# Fetch a Redis ≥ 8.4 server (it has DELEX, the native compare-and-delete locks.Lock releases
# with) into a folder of this repository, without installing anything system-wide.
#
# Usage:
#     scripts/fetch_redis_8.sh            # → .cache/redis-8/redis-server (prints the path)
#     scripts/fetch_redis_8.sh DIR        # → DIR/redis-server (DIR: new, or one it made before)
#     python bench/locks.py --server .cache/redis-8/redis-server
#     make test                           # the tests find .cache/redis-8 by themselves
#
# Debian and Ubuntu on x86-64 or arm64 only: it asks Debian's "unstable" and "experimental"
# suites (with an apt state of its own, in a temporary folder) for the newest redis-tools
# package, which holds redis-server, and unpacks it with the libraries it needs, the C library
# included, into DIR. DIR/redis-server is a wrapper that runs the binary with those libraries.
# No root needed on Debian; Ubuntu first needs `sudo apt-get install debian-archive-keyring`.
# macOS: `brew install redis` gives a Redis 8 directly.
set -euo pipefail

DIR=${1:-"$(cd "$(dirname "$0")/.." && pwd)/.cache/redis-8"}
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
MARK=fetched-by-fetch_redis_8  # the file that says DIR is ours to empty

fail() { echo "error: $*" >&2; exit 1; }

command -v apt-get >/dev/null && command -v dpkg >/dev/null \
  || fail "needs apt-get and dpkg (Debian or Ubuntu); elsewhere install Redis ≥ 8.4 yourself"
[ -r "$KEYRING" ] || fail "no $KEYRING: run sudo apt-get install debian-archive-keyring, then again"
case $(dpkg --print-architecture) in
  amd64) LOADER=ld-linux-x86-64.so.2; TRIPLET=x86_64-linux-gnu ;;
  arm64) LOADER=ld-linux-aarch64.so.1; TRIPLET=aarch64-linux-gnu ;;
  *) fail "no recipe for architecture $(dpkg --print-architecture): install Redis ≥ 8.4 yourself" ;;
esac
mkdir -p "$DIR" && DIR=$(cd "$DIR" && pwd)  # absolute: the wrapper must run from anywhere
if [ -n "$(ls -A "$DIR")" ] && [ ! -e "$DIR/$MARK" ]; then
  fail "$DIR is not empty and was not made by this script: give a new folder"
fi

is_8_4_or_newer() {  # "Redis server v=8.6.3 sha=…" on stdin
  local major minor
  read -r major minor < <(sed -E 's/.* v=([0-9]+)\.([0-9]+).*/\1 \2/')
  (( major > 8 || (major == 8 && minor >= 4) ))
}

if [ -x "$DIR/redis-server" ] && "$DIR/redis-server" --version 2>/dev/null | is_8_4_or_newer; then
  echo "$DIR/redis-server"  # already fetched
  exit 0
fi

APT=$(mktemp -d)
trap 'rm -rf "$APT"' EXIT
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/debs"
for suite in sid experimental; do
  echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian $suite main"
done > "$APT/sources.list"
APT_OPTIONS=(-o Dir::Etc::sourcelist="$APT/sources.list" -o Dir::Etc::sourceparts=-
  -o Dir::State::Lists="$APT/lists" -o Dir::Cache="$APT/cache" -o Dir::State::status=/dev/null
  -o Debug::NoLocking=1 -o APT::Sandbox::User="$(id -un)")
LOG="$APT/apt.log"
apt_() { apt-get -q "${APT_OPTIONS[@]}" "$@" >>"$LOG" 2>&1; }
depends() {  # the packages $@ depend on, with what those depend on, and so on
  apt-cache "${APT_OPTIONS[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "$@" 2>/dev/null | grep -E '^[a-z0-9]' | sort -u
}

# (offline, apt-get update only warns: it is the package lists that tell)
apt_ update && compgen -G "$APT/lists/*_Packages*" >/dev/null \
  || fail "could not read Debian's package lists from deb.debian.org ($(tail -1 "$LOG"))"
# madison lists the newest version first, whichever suite has it
VERSION=$(apt-cache "${APT_OPTIONS[@]}" madison redis-tools | awk -F' *[|] *' 'NR == 1 {print $2}')
[ -n "$VERSION" ] || fail "Debian has no redis-tools package to download"
# the libraries redis-tools links, and theirs (adduser: the package's scripts, not the binary)
DIRECT=$(apt-cache "${APT_OPTIONS[@]}" depends redis-tools="$VERSION" \
  | awk '/ Depends: [a-z]/ {print $2}' | grep -vx adduser | sort -u)
# shellcheck disable=SC2046  # word lists
(cd "$APT/debs" && apt_ download "redis-tools=$VERSION" $(depends $DIRECT)) \
  || fail "could not download redis-tools $VERSION and its libraries ($(tail -1 "$LOG"))"

rm -rf "$DIR/root" "$DIR/redis-server" && mkdir -p "$DIR/root" && touch "$DIR/$MARK"
for deb in "$APT"/debs/*.deb; do dpkg -x "$deb" "$DIR/root"; done
LIBDIR="$DIR/root/usr/lib/$TRIPLET"
BINARY="$DIR/root/usr/bin/redis-check-rdb"  # redis-server is this binary, told by argv[0]
cat > "$DIR/redis-server" <<EOF
#!/bin/sh
# Debian's redis-server $VERSION, run with the C library it was built for (fetch_redis_8.sh)
exec "$LIBDIR/$LOADER" --library-path "$LIBDIR" --argv0 redis-server "$BINARY" "\$@"
EOF
chmod +x "$DIR/redis-server"

REPORTED=$("$DIR/redis-server" --version 2>&1 | tail -1) \
  || fail "the fetched redis-server does not run here: $REPORTED"
is_8_4_or_newer <<<"$REPORTED" || fail "Debian's newest Redis is $VERSION, older than 8.4: no DELEX"
echo "$DIR/redis-server"
