#!/usr/bin/env bash
# Runs maskd's aarch64 code on this x86_64 host: cross-builds the unit tests
# and the parity test, and runs them under qemu-user (.cargo/config.toml) on
# the real model, so that tract's aarch64 kernels compute the golden masks.
#
#   cortex-a76  NEON and FP16, as on Raspberry Pi 5, RK3588 and Jetson Orin
#               (Cortex-A78AE): unit tests, then parity on f32 (the default
#               model) and on int8 with the f16 encoder (tract's FP16
#               kernels), the two in one test process, side by side on the
#               machine's cores (qemu-user runs each guest thread on a host
#               thread). The int8 model with the f32 encoder is not run
#               here: its weights become f32 at load, so it runs the f32
#               kernels checked here, and its parity runs on x86-64.
#
# tract looks for FP16 ("asimdhp") in /proc/cpuinfo, which qemu-user passes
# through from the x86 host: the tests run in a private mount namespace
# where /proc/cpuinfo is a Cortex-A76's (board/cross/cortex-a76.cpuinfo), so
# that tract picks the kernels it picks on the boards. That needs root (sudo
# otherwise).
#
# The SVE2 kernels tract picks on newer cores (qemu -cpu max) are not run
# here: none of the supported boards has SVE, and each emulated parity run
# takes about a quarter of an hour. Run them by hand with
#   QEMU_CPU=max cargo test --release --target aarch64-unknown-linux-gnu --test parity f32_model
#
# Also checks the binary's glibc needs against docs/BOARDS.md. Needs the
# exported model (models/export.sh, or MASKD_MODEL). The build directory is
# ${MASKD_CACHE:-~/.cache/maskd}/target-aarch64, shared with build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."

./setup.sh --cross
target=aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="${MASKD_AARCH64_TARGET_DIR:-${MASKD_CACHE:-$HOME/.cache/maskd}/target-aarch64}"
tests=(--lib --bins --test parity)
build_start=$SECONDS
cargo test --release --target "$target" "${tests[@]}" --no-run
timings=("$(printf '%-34s %5d s' "build" $((SECONDS - build_start)))")

# The newest glibc symbol version the binary links against, and the one
# docs/BOARDS.md promises ("needs glibc X.Y").
binary="$CARGO_TARGET_DIR/$target/release/maskd"
needs=$(aarch64-linux-gnu-objdump -T "$binary" | grep -o 'GLIBC_2\.[0-9]*' | sort -uV | tail -n 1 | cut -d_ -f2)
documented=$(grep -o 'needs glibc 2\.[0-9]*' docs/BOARDS.md | head -n 1 | cut -d' ' -f3)
if [[ $needs != "$documented" ]]; then
    echo "test.sh: the aarch64 maskd needs glibc $needs, docs/BOARDS.md says $documented" >&2
    exit 1
fi
echo "test.sh: the aarch64 maskd needs glibc $needs, as docs/BOARDS.md says"

# Under emulation an encoder pass takes minutes: parity runs on the golden
# prompts of one photo (a point, a single-mask click and a refinement with the
# previous mask as input), enough to exercise every aarch64 kernel; the
# x86_64 run checks all of them.
export MASKD_PARITY_IMAGES="${MASKD_PARITY_IMAGES:-chelsea}"

sudo=()
[[ $(id -u) == 0 ]] || sudo=(sudo --preserve-env)
cpuinfo="$PWD/board/cross/cortex-a76.cpuinfo"
# with_a76_cpuinfo COMMAND...: runs COMMAND where /proc/cpuinfo is $cpuinfo.
with_a76_cpuinfo() {
    "${sudo[@]}" unshare --mount --propagation private \
        sh -c 'mount --bind "$0" /proc/cpuinfo && exec "$@"' "$cpuinfo" "$@"
}

# run NAME QEMU_CPU [VAR=VALUE...] -- CARGO TEST ARGS
run() {
    local name="$1" cpu="$2"
    shift 2
    local vars=()
    while [[ $1 != -- ]]; do vars+=("$1"); shift; done
    shift
    local start=$SECONDS
    with_a76_cpuinfo env QEMU_CPU="$cpu" "${vars[@]}" cargo test --release --target "$target" "$@"
    timings+=("$(printf '%-34s %5d s' "$name" $((SECONDS - start)))")
}
run "unit tests, cortex-a76" cortex-a76 -- --lib --bins
run "parity f32 + int8/f16" cortex-a76 -- --test parity -- --skip quantized_model_stays_close_to_pytorch

echo "aarch64 tests under qemu-aarch64 (wall time):"
printf '  %s\n' "${timings[@]}"
