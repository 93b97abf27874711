#!/usr/bin/env bash
# Installs what maskd needs on a Debian 12/13 or Ubuntu 22.04+ machine that
# has Rust and Python 3, when it is missing; does nothing (in about a
# second) when everything is there.
#
#   ./setup.sh           building and running maskd:
#                          libclang-dev   bindgen, for nokhwa's V4L2 camera bindings
#                          gcc, libc6-dev Rust's linker and the C library headers
#                          cmake, nasm    build libjpeg-turbo (maskd's JPEG decoder) from
#                                         source, nasm for its x86-64 SIMD code
#                          python3-venv   the model export's virtual environment
#   ./setup.sh --cross   also cross-building for aarch64 boards (board/cross/):
#                          gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
#                                         the aarch64 linker, libc and kernel headers
#                          qemu-user      runs aarch64 binaries on this machine
#                          the Rust target aarch64-unknown-linux-gnu (rustup)
#   ./setup.sh --tests   also what the tests run against (cross included):
#                          mosquitto, mosquitto-clients
#                                         the MQTT broker and its command-line
#                                         clients (tests start their own
#                                         broker on a loopback port)
#                          openssl        makes the MQTT tests' TLS certificates
#                          libpython3.X   only where python3 has no shared libpython:
#                                         Triton's Python backend embeds it (the
#                                         offload tests start a Triton server,
#                                         models/triton/serve.sh)
#
# Debian packages go through apt-get, with sudo when not run as root.
set -euo pipefail

usage() { sed -n '2,/^set -e/p' "$0" | sed '$d' | cut -c3-; }
level=build
case "${1:-}" in
    "") ;;
    --cross) level=cross ;;
    --tests) level=tests ;;
    -h | --help) usage; exit 0 ;;
    *) echo "setup.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
esac

packages=(libclang-dev gcc libc6-dev cmake nasm)
# A Python without ensurepip (Debian's python3 without python3-venv)
# cannot make the export's venv; another Python (pyenv, a distribution's
# full build) can, and needs nothing.
python3 -c 'import ensurepip, venv' 2>/dev/null || packages+=(python3-venv)
if [[ $level != build ]]; then
    packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
fi
if [[ $level == tests ]]; then
    packages+=(mosquitto mosquitto-clients openssl)
    # The Debian package of the shared libpython, when python3 lacks one.
    libpython=$(python3 -c 'import os, sys, sysconfig
v = sys.version_info[:2]
if not os.path.exists(os.path.join(sysconfig.get_config_var("LIBDIR") or "", "libpython%d.%d.so.1.0" % v)):
    print("libpython%d.%d" % v)' 2>/dev/null) || libpython=""
    [[ -z $libpython ]] || packages+=("$libpython")
fi

missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) != 0 ]]; then
        if ! command -v sudo >/dev/null; then
            echo "setup.sh: maskd needs the Debian packages ${missing[*]}; run as root:" >&2
            echo "  apt-get install --no-install-recommends ${missing[*]}" >&2
            exit 1
        fi
        sudo=(sudo)
    fi
    echo "setup.sh: installing ${missing[*]} with ${sudo[*]:+sudo }apt-get (see ./setup.sh --help for what each is for)"
    "${sudo[@]}" apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $level != build ]]; then
    target=aarch64-unknown-linux-gnu
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "setup.sh: adding the Rust target $target (rustup)"
        rustup target add "$target"
    fi
fi
