#!/usr/bin/env bash
# Export MobileSAM to ONNX for maskd (f32 + weight-only int8, the encoder-offload
# host's encoders, with manifest.json).
#
# Usage: models/export.sh [--goldens | --python] [OUT_DIR]
#   OUT_DIR     output directory (default: $MASKD_MODEL_DIR, else models/mobile_sam)
#   --goldens   also regenerate tests/golden/ from PyTorch (needs scikit-image)
#   --python    print the path of the export venv's python (creating the venv
#               if needed) and exit: benchmark and evaluation scripts run there
# Environment: MASKD_CACHE (default ~/.cache/maskd) holds the venv, wheels and
# the downloaded model package.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
goldens=0
print_python=0
out=""
for arg in "$@"; do
  case "$arg" in
    --goldens) goldens=1 ;;
    --python) print_python=1 ;;
    -h | --help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "maskd: unknown option $arg" >&2; exit 2 ;;
    *) out="$arg" ;;
  esac
done
out="${out:-${MASKD_MODEL_DIR:-$here/mobile_sam}}"
cache="${MASKD_CACHE:-$HOME/.cache/maskd}"
mkdir -p "$out" "$cache"
out="$(cd "$out" && pwd)"

script_hash="$(cat "$here/export.py" "$here/split_decoder.py" "$here/striped_convs.py" "$here/chunked_mlp.py" "$here/window_attention.py" "$here/offload_encoder.py" "$here/requirements.txt" | sha256sum | cut -d' ' -f1)"

# Up to date when the manifest comes from this exact script + pins and every
# file it lists is intact. Uses the system python3 so no venv is needed.
up_to_date() {
  python3 - "$out" "$script_hash" <<'EOF'
import hashlib, json, pathlib, sys
out, want = pathlib.Path(sys.argv[1]), sys.argv[2]
try:
    manifest = json.loads((out / "manifest.json").read_text())
    if manifest["export"]["script_hash"] != want:
        sys.exit(1)
    entries = [variant[part] for variant in manifest["variants"].values()
               for part in ("encoder", "decoder", "decoder_frame", "decoder_points")]
    entries += [manifest["offload"][k] for k in ("f32", "f16")]
    for entry in entries:
        data = (out / entry["file"]).read_bytes()
        if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
            sys.exit(1)
except (OSError, KeyError, ValueError):
    sys.exit(1)
EOF
}

pyver="$(python3 -c 'import sys; print("%d%d" % sys.version_info[:2])')"
venv="$cache/venv-py$pyver-$(sha256sum "$here/requirements.txt" | cut -c1-12)"
wheels="$cache/wheels"

# Install pinned requirements from a local wheelhouse: the index's large
# wheels are not kept by pip's HTTP cache, the wheelhouse makes rebuilds cheap.
# Extra arguments (constraints) go to both pip calls.
pip_install() {
  local req="$1"
  shift
  echo "maskd: fetching wheels for $(basename "$req") into $wheels"
  "$venv/bin/pip" download --progress-bar on -r "$req" -d "$wheels" "$@"
  echo "maskd: installing $(basename "$req") into $venv"
  "$venv/bin/pip" install --no-index --find-links "$wheels" -r "$req" "$@"
}

ensure_venv() {
  [[ -f "$venv/.installed" ]] && return
  # Commands started at once on a fresh cache (tests asking for --python)
  # would build the same venv over each other: one builds it, the others wait.
  mkdir -p "$cache"
  local lock
  exec {lock}>"$venv.lock"
  flock "$lock"
  if [[ ! -f "$venv/.installed" ]]; then
    echo "maskd: creating venv $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    pip_install "$here/requirements.txt"
    touch "$venv/.installed"
  fi
  exec {lock}>&-
}

if [[ $print_python == 1 ]]; then
  ensure_venv >&2
  echo "$venv/bin/python"
  exit 0
fi

if up_to_date; then
  echo "maskd: $out is up to date"
else
  ensure_venv
  echo "maskd: exporting to $out"
  "$venv/bin/python" "$here/export.py" --out "$out" --cache "$cache" --script-hash "$script_hash"
fi

if [[ $goldens == 1 ]]; then
  ensure_venv
  marker="$venv/.goldens-$(sha256sum "$here/requirements-goldens.txt" | cut -c1-12)"
  if [[ ! -f "$marker" ]]; then
    pip_install "$here/requirements-goldens.txt" -c "$here/requirements.txt"
    touch "$marker"
  fi
  echo "maskd: writing goldens to tests/golden"
  "$venv/bin/python" "$here/make_goldens.py" --models "$out" --cache "$cache"
fi
