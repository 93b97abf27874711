#!/usr/bin/env bash
# Serve SAM's image encoder for encoder offload with NVIDIA Triton Inference
# Server on a CPU-only host, without Docker (models/triton/README.md).
#
# Usage: models/triton/serve.sh [OPTIONS]
#   --grpc-port N      gRPC port, KServe v2 / Open Inference Protocol (default 8001)
#   --http-port N      HTTP port, same protocol (default 8000)
#   --address ADDR     address both listen on (default 127.0.0.1)
#   --model-dir DIR    export holding encoder_offload*.onnx (default $MASKD_MODEL,
#                      else models/mobile_sam; written by models/export.sh)
#   --threads N        onnxruntime threads per model (default 0: all CPUs)
#   --repository DIR   serve this model repository instead of the exported
#                      encoders (its Python-backend models run in the same venv)
#   --tls-cert FILE --tls-key FILE
#                      gRPC over TLS (grpcs:// for the boards) with this PEM
#                      certificate chain and key
#   --python           print the path of the Triton venv's python (creating the
#                      venv if needed; it has tritonclient) and exit
# Serves mobile_sam_encoder (float32 embeddings) and mobile_sam_encoder_f16
# (float16). Runs tritonserver in the foreground, as this process (exec).
# Environment: MASKD_CACHE (default ~/.cache/maskd) holds the venv, the model
# repository it lays out and the downloaded wheels.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
grpc_port=8001
http_port=8000
address=127.0.0.1
model_dir="${MASKD_MODEL:-$here/../mobile_sam}"
threads=0
repository=""
tls_cert=""
tls_key=""
print_python=0

die() { echo "maskd: $*" >&2; exit 1; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --grpc-port | --http-port | --address | --model-dir | --threads | --repository | --tls-cert | --tls-key)
      [[ $# -ge 2 ]] || die "$1 needs a value"
      case "$1" in
        --grpc-port) grpc_port="$2" ;;
        --http-port) http_port="$2" ;;
        --address) address="$2" ;;
        --model-dir) model_dir="$2" ;;
        --threads) threads="$2" ;;
        --repository) repository="$2" ;;
        --tls-cert) tls_cert="$2" ;;
        --tls-key) tls_key="$2" ;;
      esac
      shift 2 ;;
    --python) print_python=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "maskd: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
tls=()
if [[ -n "$tls_cert$tls_key" ]]; then
  [[ -f "$tls_cert" && -f "$tls_key" ]] || die "--tls-cert and --tls-key name the PEM certificate and key, together"
  tls=(--grpc-use-ssl=true --grpc-server-cert="$tls_cert" --grpc-server-key="$tls_key")
fi
for n in "$grpc_port" "$http_port" "$threads"; do
  [[ "$n" =~ ^[0-9]+$ ]] || die "ports and --threads take a number, got '$n'"
done

cache="${MASKD_CACHE:-$HOME/.cache/maskd}"
req="$here/requirements.txt"
pyver="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
venv="$cache/triton-venv-py${pyver/./}-$(sha256sum "$req" | cut -c1-12)"
wheels="$cache/wheels"
pytriton="$venv/lib/python$pyver/site-packages/pytriton/tritonserver"
# The Python backend: the library Triton loads and the stub process it starts
# per model instance, built for this Python version.
backends="$venv/triton-backends"

ensure_venv() {
  [[ -f "$venv/.installed" ]] && return
  # Several servers may start at once on a fresh cache (the offload tests
  # start three): one creates the venv while the others wait for it.
  mkdir -p "$cache"
  local lock
  exec {lock}>"$venv.lock"
  flock "$lock"
  [[ -f "$venv/.installed" ]] || create_venv
  exec {lock}>&-
}

create_venv() {
  echo "maskd: creating venv $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  # Fetch into the shared wheelhouse first (as models/export.sh does), so a
  # rebuild needs no download. The list is complete: see requirements.txt.
  "$venv/bin/pip" download --progress-bar on --no-deps -r "$req" -d "$wheels"
  "$venv/bin/pip" install --no-index --find-links "$wheels" --no-deps -r "$req"
  local stub="$pytriton/python_backend_stubs/$pyver/triton_python_backend_stub"
  [[ -x "$stub" ]] || die "nvidia-pytriton has no Python backend stub for Python $pyver" \
    "(it has: $(ls "$pytriton/python_backend_stubs" | tr '\n' ' ')); use one of those as python3"
  mkdir -p "$backends/python"
  ln -sf "$pytriton/backends/python/libtriton_python.so" "$pytriton/backends/python/triton_python_backend_utils.py" \
    "$stub" "$backends/python/"
  "$venv/bin/python" -c 'import numpy, onnxruntime, tritonclient.grpc'
  touch "$venv/.installed"
}

if [[ $print_python == 1 ]]; then
  ensure_venv >&2
  echo "$venv/bin/python"
  exit 0
fi

models=(mobile_sam_encoder mobile_sam_encoder_f16)
if [[ -n "$repository" ]]; then
  [[ -d "$repository" ]] || die "no model repository $repository"
  repository="$(cd "$repository" && pwd)"
else
  # The exported encoders, checked against the manifest before anything is
  # installed (a partial or older export fails here, not at the first request).
  [[ -d "$model_dir" ]] || die "no model directory $model_dir; run models/export.sh"
  model_dir="$(cd "$model_dir" && pwd)"
  python3 - "$model_dir" <<'EOF' || exit 1
import hashlib, json, pathlib, sys
out = pathlib.Path(sys.argv[1])
try:
    entries = [json.loads((out / "manifest.json").read_text())["offload"][k] for k in ("f32", "f16")]
except (OSError, KeyError, ValueError):
    sys.exit(f"maskd: {out} has no encoder offload files (manifest.json 'offload'); run models/export.sh")
for entry in entries:
    path = out / entry["file"]
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        sys.exit(f"maskd: {path} is missing or differs from manifest.json; run models/export.sh")
EOF
fi

ensure_venv >&2

# The stub embeds Python: it needs the shared libpython of the venv's Python.
read -r libdir soname < <("$venv/bin/python" -c \
  'import sys, sysconfig; print(sysconfig.get_config_var("LIBDIR"), "libpython%d.%d.so.1.0" % sys.version_info[:2])')
if [[ -f "$libdir/$soname" ]]; then
  export LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
if ldd "$backends/python/triton_python_backend_stub" | grep -q "$soname => not found"; then
  die "Triton's Python backend needs the shared library $soname, which this Python" \
    "($(readlink -f "$venv/bin/python")) does not provide. On Debian/Ubuntu install" \
    "the package libpython$pyver (apt-get install libpython$pyver); a Python built" \
    "from source needs --enable-shared."
fi
# The stub's Python takes the first python3 on PATH as its executable, and so
# its prefix and site-packages: with the venv's first, the venv's (it runs
# isolated, so PYTHONPATH would not do).
export PATH="$venv/bin:$PATH"

if [[ -z "$repository" ]]; then
  # Lay out the model repository: per model its config (with the thread
  # count), model.py and a link to its ONNX file. One directory per input, so
  # a running server never sees it change; a few KB each.
  key="$( (cat "$here/model.py" "$model_dir/manifest.json"; for m in "${models[@]}"; do cat "$here/$m/config.pbtxt"; done
    echo "$model_dir $threads") | sha256sum | cut -c1-12)"
  repository="$cache/triton-repository-$key"
  if [[ ! -f "$repository/.complete" ]]; then
    tmp="$repository.tmp.$$"
    rm -rf "$tmp"
    for m in "${models[@]}"; do
      mkdir -p "$tmp/$m/1"
      sed "s/\(key: \"intra_op_thread_count\" value: { string_value: \"\)[0-9]*\"/\1$threads\"/" \
        "$here/$m/config.pbtxt" > "$tmp/$m/config.pbtxt"
      onnx="$(sed -n 's/.*key: "onnx_file" value: { string_value: "\([^"]*\)".*/\1/p' "$here/$m/config.pbtxt")"
      cp "$here/model.py" "$tmp/$m/1/model.py"
      ln -s "$model_dir/$onnx" "$tmp/$m/1/$onnx"
    done
    touch "$tmp/.complete"
    mv -T "$tmp" "$repository" 2>/dev/null || rm -rf "$tmp"  # a concurrent start made it
  fi
  echo "maskd: serving ${models[*]} from $model_dir" >&2
fi

echo "maskd: Triton on $address, gRPC port $grpc_port, HTTP port $http_port, repository $repository" >&2
# No GPU: no pinned memory pool (avoids its warning). The configs are
# complete: no stub starts just to auto-complete them.
exec "$pytriton/bin/tritonserver" \
  --model-repository="$repository" --backend-directory="$backends" --disable-auto-complete-config \
  --grpc-address="$address" --grpc-port="$grpc_port" "${tls[@]}" \
  --http-address="$address" --http-port="$http_port" \
  --allow-metrics=false --allow-gpu-metrics=false \
  --pinned-memory-pool-byte-size=0 \
  --exit-on-error=true --strict-readiness=true \
  --log-verbose=0 --log-info=true
