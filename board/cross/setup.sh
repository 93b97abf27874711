#!/usr/bin/env bash
# Installs what building maskd and cross-building it for aarch64 need, on a
# Debian or Ubuntu x86_64 host, when it is missing:
#   libclang-dev           bindgen (nokhwa's V4L2 bindings), for every target
#   gcc-aarch64-linux-gnu  the aarch64 linker, with the target's libc and
#   libc6-dev-arm64-cross  kernel headers in /usr/aarch64-linux-gnu
#   qemu-user              runs the aarch64 tests on this host (.cargo/config.toml)
#   the Rust target aarch64-unknown-linux-gnu (rustup)
# Uses sudo for apt-get when not run as root.
set -euo pipefail

packages=(libclang-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo)
    echo "setup.sh: installing ${missing[*]}"
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

target=aarch64-unknown-linux-gnu
if ! rustup target list --installed | grep -qx "$target"; then
    echo "setup.sh: adding the Rust target $target"
    rustup target add "$target"
fi
