#!/usr/bin/env bash
# Installs maskd on a board (run as root on the board), into an OS image
# mounted on another machine, or into a staging directory for a package.
#
#   sudo board/install.sh --board rpi5                  # from an unpacked bundle (board/cross/build.sh)
#   sudo board/install.sh --binary PATH --models DIR --config FILE
#   board/install.sh --destdir /tmp/root --board rpi5   # stage into /tmp/root
#
# What goes where (under --destdir, when given):
#   /usr/local/bin/maskd                         the binary
#   /usr/local/share/maskd/models/mobile_sam/    the model (manifest.json and its ONNX files)
#   /usr/local/share/maskd/board/*.toml          every board profile, for reference
#   /etc/maskd/maskd.toml                        the configuration, from the chosen profile
#   /etc/systemd/system/maskd.service            the service
#   /etc/udev/rules.d/99-maskd.rules             /dev/maskd-serial and /dev/maskd-camera
#   system user maskd, in groups video, dialout and input
#
# Running it again upgrades the binary, model, profiles and service, and
# keeps /etc/maskd/maskd.toml and 99-maskd.rules once they exist (they are
# meant to be edited). Without --destdir it also reloads systemd and udev
# and restarts maskd if it is running. Accounts are created directly on the
# running system, through `useradd --prefix` in a --destdir that holds an OS
# root (has etc/passwd), and declared in usr/lib/sysusers.d/maskd.conf in a
# bare staging directory, where the package's systemd-sysusers creates them.
set -euo pipefail
shopt -s nullglob

here="$(cd "$(dirname "$0")" && pwd)"
usage() {
    cat <<EOF
usage: $0 [--board NAME | --config FILE] [--binary FILE] [--models DIR] [--destdir DIR]

  --board NAME    install board/NAME.toml as /etc/maskd/maskd.toml; one of:
                  $(profiles | tr '\n' ' ')
  --config FILE   install FILE as /etc/maskd/maskd.toml instead
                  (neither is needed when /etc/maskd/maskd.toml already exists)
  --binary FILE   the aarch64 maskd binary (default: maskd beside this board/ directory)
  --models DIR    the exported model directory holding manifest.json
                  (default: models/mobile_sam beside this board/ directory)
  --destdir DIR   install below DIR instead of / (also read from \$DESTDIR)
EOF
}
die() { echo "install.sh: error: $*" >&2; exit 1; }
note() { echo "install.sh: $*"; }
profiles() { for f in "$here"/*.toml; do basename "$f" .toml; done; }

binary="$here/../maskd"
models="$here/../models/mobile_sam"
board=""
config=""
destdir="${DESTDIR:-}"
while (($#)); do
    case "$1" in
        --board) board="${2:?--board needs a NAME}"; shift 2 ;;
        --config) config="${2:?--config needs a FILE}"; shift 2 ;;
        --binary) binary="${2:?--binary needs a FILE}"; shift 2 ;;
        --models) models="${2:?--models needs a DIR}"; shift 2 ;;
        --destdir) destdir="${2:?--destdir needs a DIR}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[[ -n $board && -n $config ]] && die "give --board or --config, not both"
if [[ -n $board ]]; then
    config="$here/$board.toml"
    [[ -f $config ]] || die "no profile '$board' ($config is missing); profiles: $(profiles | tr '\n' ' ')"
fi
if [[ -n $destdir ]]; then
    mkdir -p "$destdir"
    destdir="$(cd "$destdir" && pwd)"
    [[ $destdir == / ]] && destdir=""
fi
live=$([[ -z $destdir ]] && echo yes || echo no)
if [[ $live == yes && $(id -u) != 0 ]]; then
    die "installing into / needs root: run it with sudo (or stage with --destdir DIR)"
fi

# The binary: an ELF file, and on a live system one this machine runs.
[[ -f $binary ]] || die "no maskd binary at $binary: build one with board/cross/build.sh, or pass --binary FILE"
[[ $(head -c 4 "$binary" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]] || die "$binary is not an ELF executable"
if [[ $live == yes ]]; then
    # e_machine, 2 bytes little-endian at offset 18: 0xb7 aarch64, 0x3e x86_64.
    case "$(od -An -tx1 -j18 -N2 "$binary" | tr -d ' \n')" in
        b700) built_for=aarch64 ;;
        3e00) built_for=x86_64 ;;
        *) built_for="another processor" ;;
    esac
    [[ $built_for == "$(uname -m)" ]] || die "$binary is built for $built_for, this system is $(uname -m)"
    needs=$(grep -ao 'GLIBC_2\.[0-9]*' "$binary" | sort -uV | tail -n 1 | cut -d_ -f2)
    has=$(getconf GNU_LIBC_VERSION | cut -d' ' -f2)
    if [[ -n $needs && $(printf '%s\n%s\n' "$needs" "$has" | sort -V | tail -n 1) != "$has" ]]; then
        die "$binary needs glibc $needs, this system has $has: build it with board/cross/build.sh --glibc $has"
    fi
    "$binary" --version >/dev/null || die "$binary does not run here"
fi

[[ -f $models/manifest.json ]] || die "no model at $models (manifest.json missing): export it with models/export.sh, or pass --models DIR"
compgen -G "$models/*.onnx" >/dev/null || die "$models holds no .onnx files: export the model again with models/export.sh"
[[ -f $here/maskd.service ]] || die "$here/maskd.service is missing"
[[ -f $here/99-maskd.rules ]] || die "$here/99-maskd.rules is missing"

root="$destdir"
etc_config="$root/etc/maskd/maskd.toml"
if [[ -z $config && ! -e $etc_config ]]; then
    usage >&2
    die "choose a board profile with --board NAME (or --config FILE): $etc_config does not exist yet"
fi
[[ -z $config || -f $config ]] || die "config $config does not exist"

# Installs $1 as $2 (mode $3) unless $2 exists with other content: files an
# administrator edits are never overwritten.
install_kept() {
    local src="$1" dst="$2" mode="$3"
    if [[ ! -e $dst ]]; then
        install -D -m "$mode" "$src" "$dst"
        note "installed ${dst#"$root"}"
    elif cmp -s "$src" "$dst"; then
        note "unchanged ${dst#"$root"}"
    else
        note "kept ${dst#"$root"} (edited; the version shipped is $src)"
    fi
}

install -D -m 0755 "$binary" "$root/usr/local/bin/maskd"
note "installed /usr/local/bin/maskd"

# Copy the model beside the old one, then swap, so a failed copy leaves the
# installed model whole.
share="$root/usr/local/share/maskd"
mkdir -p "$share/models"
staging=$(mktemp -d "$share/models/.mobile_sam.XXXXXX")
trap 'rm -rf "$staging"' EXIT
cp -RL "$models/." "$staging/"
chmod -R u=rwX,go=rX "$staging"
rm -rf "$share/models/mobile_sam"
mv "$staging" "$share/models/mobile_sam"
trap - EXIT
note "installed /usr/local/share/maskd/models/mobile_sam ($(du -sh "$share/models/mobile_sam" | cut -f1))"

mkdir -p "$share/board"
for profile in "$here"/*.toml; do
    install -m 0644 "$profile" "$share/board/"
done

if [[ -n $config ]]; then
    install_kept "$config" "$etc_config" 0644
fi
install -D -m 0644 "$here/maskd.service" "$root/etc/systemd/system/maskd.service"
note "installed /etc/systemd/system/maskd.service"
install_kept "$here/99-maskd.rules" "$root/etc/udev/rules.d/99-maskd.rules" 0644

# The service's account: a system user with no login, in the groups that
# own cameras and framebuffers (video), serial ports (dialout) and
# touchscreens (input).
groups=(video dialout input)
if [[ $live == yes || -f $root/etc/passwd ]]; then
    [[ $(id -u) == 0 ]] || die "adding user maskd to $root/etc/passwd needs root"
    prefix=()
    [[ $live == no ]] && prefix=(--prefix "$root")
    for group in "${groups[@]}"; do
        grep -q "^$group:" "$root/etc/group" || groupadd "${prefix[@]}" --system "$group"
    done
    if ! grep -q '^maskd:' "$root/etc/passwd"; then
        useradd "${prefix[@]}" --system --user-group --no-create-home \
            --home-dir /var/lib/maskd --shell /usr/sbin/nologin --comment "maskd daemon" maskd
        note "created system user maskd"
    fi
    usermod "${prefix[@]}" --append --groups "$(IFS=,; echo "${groups[*]}")" maskd
    note "user maskd is in groups: ${groups[*]}"
else
    sysusers="$root/usr/lib/sysusers.d/maskd.conf"
    mkdir -p "$(dirname "$sysusers")"
    {
        echo "u maskd - \"maskd daemon\" /var/lib/maskd /usr/sbin/nologin"
        for group in "${groups[@]}"; do echo "m maskd $group"; done
    } >"$sysusers"
    note "declared user maskd in /usr/lib/sysusers.d/maskd.conf (created by systemd-sysusers)"
fi

if [[ $live == yes ]]; then
    if command -v udevadm >/dev/null; then
        udevadm control --reload
        udevadm trigger --subsystem-match=tty --subsystem-match=video4linux
    fi
    if command -v systemctl >/dev/null; then
        systemctl daemon-reload
        if systemctl is-active --quiet maskd; then
            systemctl restart maskd
            note "restarted maskd"
        else
            note "start it with: sudo systemctl enable --now maskd"
        fi
    fi
fi
