#!/usr/bin/env bash
# dist.sh: packs a distribution tarball from a checkout: bin/ (the release binaries), sbin/,
# conf/, README.md, ARCHITECTURE.md and docs/ (see docs/operations.md, "Scripts").
set -euo pipefail
# shellcheck source=sbin/iotdb-common.sh
. "$(dirname "${BASH_SOURCE[0]}")/iotdb-common.sh"

BINARIES=(iotdb-server iotdb-ctl iotdb-perf)

usage() {
    cat <<USAGE
Usage: $(basename "$0") [--build] [-o DIR]

Packs DIR/iotdb-rs-VERSION.tar.gz (DIR: $IOTDB_HOME/target/dist by default) holding
iotdb-rs-VERSION/ with bin/ (${BINARIES[*]}), sbin/ (the node scripts; not dist.sh,
which needs the checkout), conf/, README.md, ARCHITECTURE.md and docs/. Unpacked, its
sbin/ scripts run the binaries of its bin/.

The binaries come from target/release (or \$IOTDB_BIN_DIR): build them first with
\`cargo build --release\`, or pass --build.

Options:
  --build              run \`cargo build --release -p iotdb-node -p iotdb-ctl -p iotdb-perf\` first
  -o, --output DIR     where the tarball goes
  -h, --help           this help
USAGE
}

build=0
output="$IOTDB_HOME/target/dist"
while [ "$#" -gt 0 ]; do
    case "$1" in
        -h | --help)
            usage
            exit 0
            ;;
        --build)
            build=1
            shift
            ;;
        -o | --output)
            [ "$#" -ge 2 ] || die "$1 needs a directory"
            output="$2"
            shift 2
            ;;
        *)
            echo "$(basename "$0"): unexpected argument: $1" >&2
            usage >&2
            exit 2
            ;;
    esac
done

[ -f "$IOTDB_HOME/Cargo.toml" ] || die "$IOTDB_HOME is not a checkout (no Cargo.toml): dist.sh packs a checkout"
version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$IOTDB_HOME/Cargo.toml" | head -n 1 || true)"
[ -n "$version" ] || die "no version in $IOTDB_HOME/Cargo.toml"

if [ "$build" -eq 1 ]; then
    (cd "$IOTDB_HOME" && cargo build --release -p iotdb-node -p iotdb-ctl -p iotdb-perf)
fi
bin="${IOTDB_BIN_DIR:-$IOTDB_HOME/target/release}"
missing=()
for binary in "${BINARIES[@]}"; do
    [ -x "$bin/$binary" ] || missing+=("$binary")
done
if [ "${#missing[@]}" -gt 0 ]; then
    die "missing in $bin: ${missing[*]}: run \`cargo build --release\` (or pass --build)"
fi
newer="$(cd "$IOTDB_HOME" && find . -path ./target -prune -o \( -name '*.rs' -o -name Cargo.toml \) \
    -newer "$bin/iotdb-server" -print | head -n 1 || true)"
if [ -n "$newer" ]; then
    echo "warning: $newer is newer than $bin/iotdb-server: the binaries may be stale (rebuild, or pass --build)" >&2
fi

name="iotdb-rs-$version"
staging="$(mktemp -d)"
trap 'rm -rf -- "$staging"' EXIT
root="$staging/$name"
mkdir -p "$root/bin" "$root/sbin" "$root/conf" "$root/docs"
for binary in "${BINARIES[@]}"; do
    cp -L "$bin/$binary" "$root/bin/$binary"
done
for script in "$IOTDB_SBIN"/*.sh; do
    [ "$(basename "$script")" = dist.sh ] || cp "$script" "$root/sbin/"
done
cp "$IOTDB_HOME"/conf/* "$root/conf/"
cp "$IOTDB_HOME"/docs/*.md "$root/docs/"
cp "$IOTDB_HOME/README.md" "$IOTDB_HOME/ARCHITECTURE.md" "$root/"
mkdir -p "$output"
tarball="$(cd "$output" && pwd)/$name.tar.gz"
tar -czf "$tarball" -C "$staging" "$name"
echo "packed $tarball ($(du -h "$tarball" | cut -f 1)): unpack it and run $name/sbin/start-standalone.sh"
