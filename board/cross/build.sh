#!/usr/bin/env bash
# Cross-builds maskd for 64-bit ARM boards (aarch64-unknown-linux-gnu) on an
# x86_64 Debian/Ubuntu host and packs a bundle to copy to the board:
#
#   board/cross/build.sh                 # links against this host's cross glibc (Debian 12: 2.36)
#   board/cross/build.sh --glibc 2.31    # runs on glibc 2.31 and newer (cargo-zigbuild)
#
# The bundle, dist/maskd-aarch64[-glibcX.Y]/ and a .tar.gz of it, holds the
# binary, the model (models/mobile_sam, from models/export.sh), board/
# (install.sh, profiles, service, udev rules, the Python client) and a
# sample photo to try `maskd segment` on. On the
# board: tar xzf maskd-aarch64.tar.gz && sudo maskd-aarch64/board/install.sh --board NAME
#
# The first build compiles tract for aarch64: 15-30 minutes on 2 cores. The
# build directory is ${MASKD_CACHE:-~/.cache/maskd}/target-aarch64[-glibcX.Y],
# shared with board/cross/test.sh, so later builds take a minute or two.
set -euo pipefail
cd "$(dirname "$0")/../.."

target=aarch64-unknown-linux-gnu
glibc=""
out=""
while (($#)); do
    case "$1" in
        --glibc) glibc="${2:?--glibc needs a version such as 2.31}"; shift 2 ;;
        --out) out="${2:?--out needs a DIR}"; shift 2 ;;
        -h | --help) sed -n '2,17p' "$0" | cut -c3-; exit 0 ;;
        *) echo "build.sh: unknown argument: $1 (see --help)" >&2; exit 1 ;;
    esac
done
[[ -z $glibc || $glibc =~ ^2\.[0-9]+$ ]] || { echo "build.sh: --glibc takes a version such as 2.31, got $glibc" >&2; exit 1; }
[[ -f models/mobile_sam/manifest.json ]] || { echo "build.sh: no model in models/mobile_sam: run models/export.sh first" >&2; exit 1; }

./setup.sh --cross
cache="${MASKD_CACHE:-$HOME/.cache/maskd}"
name="maskd-aarch64${glibc:+-glibc$glibc}"
export CARGO_TARGET_DIR="${MASKD_AARCH64_TARGET_DIR:-$cache/target-aarch64${glibc:+-glibc$glibc}}"
if [[ -z $glibc ]]; then
    cargo build --release --target "$target"
else
    # zig links against the glibc version named in the target's suffix.
    venv="$cache/venv-zig"
    if [[ ! -x $venv/bin/cargo-zigbuild ]]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet cargo-zigbuild ziglang
    fi
    PATH="$venv/bin:$PATH" cargo-zigbuild build --release --target "$target.$glibc"
fi
binary="$CARGO_TARGET_DIR/$target/release/maskd"

needs=$(aarch64-linux-gnu-objdump -T "$binary" | grep -o 'GLIBC_2\.[0-9]*' | sort -uV | tail -n 1)
out="${out:-dist/$name}"
rm -rf "$out"
mkdir -p "$out/board" "$out/models"
cp "$binary" "$out/maskd"
cp -RL models/mobile_sam "$out/models/"
cp tests/golden/images/chelsea.png "$out/sample.png"
cp board/install.sh board/99-maskd.rules board/maskd_client.py board/requirements-client.txt "$out/board/"
cp board/*.toml board/maskd.service "$out/board/"
tar -czf "$out.tar.gz" -C "$(dirname "$out")" "$(basename "$out")"
echo "build.sh: $out.tar.gz ($(du -h "$out.tar.gz" | cut -f1)): maskd for $target, needs ${needs/_/ } or newer"
