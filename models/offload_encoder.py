"""Host-side encoders for encoder offload, built from encoder.onnx.

With encoder offload a host runs the image encoder for a board
(models/triton/). The board sends the photo resized so that its longer side
is 1024 (SAM's ResizeLongestSide), as uint8 RGB [1, 3, H, W] without padding:
at most 3 MB instead of the 12 MB of the encoder's normalized, padded float
input. The rest of the preprocessing moves into the graph:

    image (uint8 [1,3,H,W]) -> Cast f32 -> Sub pixel_mean -> Div pixel_std
      -> Pad zeros bottom/right to [1,3,1024,1024] -> Reshape [1,3,1024,1024]
      -> encoder.onnx's graph -> image_embeddings f32 [1,256,64,64]

The Reshape to the fixed size is a guard: Pad with the negative padding of a
side over 1024 would crop, and the encoder's striped convolutions slice fixed
row ranges, so an oversized image would be cut silently; its padded size makes
the Reshape fail instead. It also gives the encoder a static input shape.

encoder_offload.f16.onnx is the same graph plus a final Cast to float16,
halving the answer to 2 MB; the encoder still computes in float32.

Both are checked with onnxruntime against encoder.onnx fed with the numpy
preprocessing of the runtime (models/make_goldens.py), on the sample photos
and a portrait copy of one. Called by export.py; run alone (in the export
venv) it rebuilds and checks the files of an existing export and prints the
manifest's "offload" entry.
"""

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

FILES = {"f32": "encoder_offload.onnx", "f16": "encoder_offload.f16.onnx"}
OUTPUT_TYPES = {"f32": "FP32", "f16": "FP16"}  # KServe v2 datatypes
INPUT = "image"
OUTPUT = "image_embeddings"
PREFIX = "offload/"  # names of the added nodes and tensors

REPO = Path(__file__).resolve().parent.parent
VERIFY_IMAGES = sorted((REPO / "tests/golden/images").glob("*.png"))

# The f32 graph computes what encoder.onnx computes on the same input: only
# float reassociation may differ. float16 rounding alone gives ~2e-4.
MAX_F32_REL_ERR = 1e-5
MAX_F16_REL_ERR = 1e-3


def log(msg: str) -> None:
    print(f"maskd: {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build(encoder: onnx.ModelProto, mean: list[float], std: list[float], size: int,
          f16: bool) -> onnx.ModelProto:
    """encoder.onnx with the uint8 preprocessing in front (and a float16 cast after)."""
    model = onnx.ModelProto()
    model.CopyFrom(encoder)
    graph = model.graph
    (old_input,) = graph.input
    (old_output,) = graph.output
    if old_input.name != INPUT or old_output.name != OUTPUT:
        sys.exit(f"maskd: encoder has {old_input.name} -> {old_output.name}, expected {INPUT} -> {OUTPUT}")
    dims = [d.dim_value for d in old_input.type.tensor_type.shape.dim]
    if dims != [1, 3, size, size]:
        sys.exit(f"maskd: encoder input is {dims}, expected [1, 3, {size}, {size}]")
    if any(n.name.startswith(PREFIX) or any(o.startswith(PREFIX) for o in n.output)
           for n in graph.node):
        sys.exit(f"maskd: encoder already has '{PREFIX}' names; build from the plain encoder.onnx")

    p = PREFIX
    encoder_input = p + "image_f32"
    graph.initializer.extend([
        numpy_helper.from_array(np.array(mean, np.float32).reshape(1, 3, 1, 1), p + "pixel_mean"),
        numpy_helper.from_array(np.array(std, np.float32).reshape(1, 3, 1, 1), p + "pixel_std"),
        numpy_helper.from_array(np.array([1, 3, size, size], np.int64), p + "full_shape"),
        numpy_helper.from_array(np.zeros(4, np.int64), p + "no_pads_before"),
        numpy_helper.from_array(np.zeros(1, np.int64), p + "zero"),
    ])
    pre = [
        helper.make_node("Cast", [INPUT], [p + "image_cast"], to=TensorProto.FLOAT, name=p + "cast"),
        helper.make_node("Sub", [p + "image_cast", p + "pixel_mean"], [p + "centered"], name=p + "sub_mean"),
        helper.make_node("Div", [p + "centered", p + "pixel_std"], [p + "normalized"], name=p + "div_std"),
        # pads = [0, 0, 0, 0, 0, 0, size - H, size - W], never negative
        helper.make_node("Shape", [INPUT], [p + "shape"], name=p + "shape"),
        helper.make_node("Sub", [p + "full_shape", p + "shape"], [p + "missing"], name=p + "missing"),
        helper.make_node("Max", [p + "missing", p + "zero"], [p + "pads_after"], name=p + "no_crop"),
        helper.make_node("Concat", [p + "no_pads_before", p + "pads_after"], [p + "pads"], axis=0,
                         name=p + "pads"),
        helper.make_node("Pad", [p + "normalized", p + "pads"], [p + "padded"], mode="constant",
                         name=p + "pad"),
        helper.make_node("Reshape", [p + "padded", p + "full_shape"], [encoder_input], name=p + "fixed_size"),
    ]
    for node in graph.node:
        node.input[:] = [encoder_input if name == INPUT else name for name in node.input]
    post = []
    if f16:
        for node in graph.node:
            node.output[:] = [p + "embeddings_f32" if name == OUTPUT else name for name in node.output]
        post.append(helper.make_node("Cast", [p + "embeddings_f32"], [OUTPUT], to=TensorProto.FLOAT16,
                                     name=p + "cast_f16"))
        old_output.type.tensor_type.elem_type = TensorProto.FLOAT16
    nodes = pre + list(graph.node) + post
    del graph.node[:]
    graph.node.extend(nodes)

    new_input = helper.make_tensor_value_info(INPUT, TensorProto.UINT8, [1, 3, "height", "width"])
    new_input.doc_string = (f"RGB, longer side resized to {size} (H, W <= {size}), not padded")
    del graph.input[:]
    graph.input.append(new_input)
    # Read by models/triton/model.py to refuse larger images before running.
    props = {prop.key: prop.value for prop in model.metadata_props}
    helper.set_model_props(model, {**props, "image_size": str(size)})
    onnx.checker.check_model(model, full_check=True)
    return model


def resized_photo(path: Path, size: int) -> np.ndarray:
    """uint8 HWC, longer side `size`, as SAM's ResizeLongestSide (bilinear)."""
    image = Image.open(path).convert("RGB")
    w, h = image.size
    scale = size / max(h, w)
    rh, rw = int(h * scale + 0.5), int(w * scale + 0.5)
    return np.asarray(image.resize((rw, rh), Image.BILINEAR))


def reference_input(pixels: np.ndarray, mean: list[float], std: list[float], size: int) -> np.ndarray:
    """encoder.onnx's input, prepared as the runtime prepares it."""
    rh, rw = pixels.shape[:2]
    x = np.zeros((1, 3, size, size), np.float32)
    normalized = (pixels.astype(np.float32) - np.array(mean, np.float32)) / np.array(std, np.float32)
    x[0, :, :rh, :rw] = normalized.transpose(2, 0, 1)
    return x


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a.astype(np.float64) - ref) / np.linalg.norm(ref))


def verify(out: Path, encoder_path: Path, mean: list[float], std: list[float], size: int) -> None:
    if not VERIFY_IMAGES:
        sys.exit("maskd: no verification photos in tests/golden/images/")

    def session(path: Path) -> ort.InferenceSession:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    ref_session = session(encoder_path)
    sessions = {k: session(out / f) for k, f in FILES.items()}
    photos = [(p.name, resized_photo(p, size)) for p in VERIFY_IMAGES]
    # The sample photos are landscape or square: pad the width once too.
    name, pixels = next((n, x) for n, x in photos if x.shape[0] != x.shape[1])
    photos.append((f"{name} transposed", pixels.transpose(1, 0, 2)))
    worst = {"f32": (0.0, 0.0), "f16": (0.0, 0.0)}
    for name, pixels in photos:
        ref = ref_session.run(None, {INPUT: reference_input(pixels, mean, std, size)})[0]
        image = np.ascontiguousarray(pixels.transpose(2, 0, 1)[None])
        line = []
        for k, s in sessions.items():
            emb = s.run(None, {INPUT: image})[0]
            want = np.float32 if k == "f32" else np.float16
            if emb.dtype != want or emb.shape != ref.shape:
                sys.exit(f"maskd: {FILES[k]} returned {emb.dtype} {emb.shape}, expected {want} {ref.shape}")
            diff, rel = float(np.abs(emb.astype(np.float32) - ref).max()), rel_err(emb, ref)
            worst[k] = (max(worst[k][0], diff), max(worst[k][1], rel))
            line.append(f"{k} max|diff| {diff:.2e} rel {rel:.2e}")
        log(f"  {name} (H {pixels.shape[0]}, W {pixels.shape[1]}): " + ", ".join(line))
    quiet = ort.RunOptions()
    quiet.log_severity_level = 4  # the failure below is expected
    try:
        sessions["f32"].run(None, {INPUT: np.zeros((1, 3, size + 1, size), np.uint8)}, quiet)
        sys.exit(f"maskd: {FILES['f32']} accepted an image taller than {size}")
    except ort.capi.onnxruntime_pybind11_state.Fail as e:
        if PREFIX + "fixed_size" not in str(e):
            raise
    log(f"  an image taller than {size}: refused by {PREFIX}fixed_size")
    log(f"  offload vs encoder.onnx: f32 max|diff| {worst['f32'][0]:.2e} rel {worst['f32'][1]:.2e}; "
        f"f16 max|diff| {worst['f16'][0]:.2e} rel {worst['f16'][1]:.2e}")
    if worst["f32"][1] > MAX_F32_REL_ERR or worst["f16"][1] > MAX_F16_REL_ERR:
        sys.exit("maskd: the offload encoders do not match encoder.onnx")


def export_offload(out: Path, encoder_file: str, mean: list[float], std: list[float], size: int,
                   model_name: str) -> dict:
    """Write and check both files; return the manifest's "offload" entry."""
    encoder_path = out / encoder_file
    encoder = onnx.load(str(encoder_path))
    for k, file in FILES.items():
        log(f"writing {file}")
        onnx.save(build(encoder, mean, std, size, f16=(k == "f16")), str(out / file))
    log(f"verifying {', '.join(FILES.values())} against {encoder_file}")
    verify(out, encoder_path, mean, std, size)
    entry = {k: {"file": f, "sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size,
                 "output": OUTPUT_TYPES[k]} for k, f in FILES.items()}
    return {**entry, "input": {"name": INPUT, "datatype": "UINT8", "shape": [1, 3, -1, -1]},
            "for_model": model_name}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, required=True, help="an export's directory (manifest.json)")
    args = ap.parse_args()
    manifest = json.loads((args.models / "manifest.json").read_text())
    entry = export_offload(args.models, manifest["variants"]["f32"]["encoder"]["file"],
                           manifest["pixel_mean"], manifest["pixel_std"], manifest["image_size"],
                           manifest["model"])
    print(json.dumps({"offload": entry}, indent=2))


if __name__ == "__main__":
    main()
