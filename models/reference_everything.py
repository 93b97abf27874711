"""Reference for `maskd everything`: SAM's own SamAutomaticMaskGenerator on
PyTorch MobileSAM (the downloaded package's code, unchanged), compared with
the masks maskd wrote.

    $(models/export.sh --python) models/reference_everything.py \
        --image tests/golden/images/chelsea.png --maskd chelsea.json [--image ... --maskd ...] \
        [--points-per-side 32] [--pred-iou-thresh 0.88] [--stability-thresh 0.95] \
        [--nms-iou 0.7] [--min-area 0] [--crop-layers 0] [--out results/everything]

Pass maskd the same settings. For each image the reference masks are written
to OUT/<stem>.pytorch.json (records as SAM writes them, plus the settings and
the generator's time) and reused when the settings match. A reference mask is
matched when some maskd mask overlaps it with IoU >= 0.9; a maskd mask is
extra when no reference mask does. Prints a Markdown table.

The RLE strings are decoded here from pycocotools' format independently of
maskd. With --min-area, SAM's generator calls OpenCV's connected components;
OpenCV is not in the model environment, so a scipy stand-in with the same
8-connectivity and raster-order labels is installed as `cv2`.
"""

import argparse
import json
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from export import fetch_package, log

MATCH_IOU = 0.9


def rle_counts_from_string(s: str) -> list[int]:
    """pycocotools' rleFrString."""
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def rle_to_mask(size, counts) -> np.ndarray:
    h, w = size
    flat = np.zeros(h * w, bool)
    at = 0
    for i, c in enumerate(counts):
        if i % 2:
            flat[at:at + c] = True
        at += c
    if at != h * w:
        sys.exit(f"reference_everything: RLE covers {at} pixels, {h}x{w} needs {h * w}")
    return flat.reshape(w, h).T


def mask_to_counts(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    return counts if flat[0] == 0 else [0] + counts


def install_cv2_stand_in() -> None:
    from scipy import ndimage

    def connected_components_with_stats(image, connectivity):
        assert connectivity == 8
        labels, n = ndimage.label(image != 0, structure=np.ones((3, 3), int))
        areas = np.bincount(labels.ravel(), minlength=n + 1)
        stats = np.zeros((n + 1, 5), np.int32)
        stats[:, -1] = areas
        return n + 1, labels, stats, None

    sys.modules["cv2"] = types.SimpleNamespace(connectedComponentsWithStats=connected_components_with_stats)


def settings(args) -> dict:
    return {
        "points_per_side": args.points_per_side,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_thresh,
        "box_nms_thresh": args.nms_iou,
        "crop_n_layers": args.crop_layers,
        "min_mask_region_area": args.min_area,
    }


def reference(generator_factory, image_path: Path, params: dict, out: Path) -> dict:
    cached = out / f"{image_path.stem}.pytorch.json"
    if cached.exists():
        data = json.loads(cached.read_text())
        if data["settings"] == params and data["image"] == str(image_path):
            log(f"{image_path.name}: reusing {cached}")
            return data
    image = np.array(Image.open(image_path).convert("RGB"))
    generator = generator_factory()
    log(f"{image_path.name}: running SamAutomaticMaskGenerator ({params['points_per_side']}^2 points)")
    started = time.perf_counter()
    anns = generator.generate(image)
    seconds = time.perf_counter() - started
    records = []
    for a in anns:
        seg = a.pop("segmentation")
        records.append({**a, "segmentation": {"size": list(seg.shape), "counts": mask_to_counts(seg)}})
    data = {"image": str(image_path), "settings": params, "seconds": seconds, "masks": records}
    cached.write_text(json.dumps(data))
    return data


def iou_matrix(a: list[np.ndarray], b: list[np.ndarray]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    fa = np.stack([m.ravel() for m in a]).astype(np.float32)
    fb = np.stack([m.ravel() for m in b]).astype(np.float32)
    inter = fa @ fb.T
    union = fa.sum(1)[:, None] + fb.sum(1)[None, :] - inter
    return inter / np.maximum(union, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", type=Path, action="append", required=True)
    ap.add_argument("--maskd", type=Path, action="append", required=True, help="maskd's --json, one per --image")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--pred-iou-thresh", type=float, default=0.88)
    ap.add_argument("--stability-thresh", type=float, default=0.95)
    ap.add_argument("--nms-iou", type=float, default=0.7)
    ap.add_argument("--min-area", type=int, default=0)
    ap.add_argument("--crop-layers", type=int, default=0, choices=(0, 1))
    ap.add_argument("--out", type=Path, default=Path("results/everything"))
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("MASKD_CACHE", Path.home() / ".cache/maskd")))
    args = ap.parse_args()
    if len(args.image) != len(args.maskd):
        sys.exit("reference_everything: give one --maskd per --image")
    args.out.mkdir(parents=True, exist_ok=True)
    params = settings(args)

    if args.min_area > 0:
        install_cv2_stand_in()
    code_root, checkpoint = fetch_package(args.cache)
    sys.path.insert(0, str(code_root))
    from mobile_sam import SamAutomaticMaskGenerator, sam_model_registry

    sam = sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()

    def factory():
        # Everything else at SAM's defaults: points_per_batch 64, offsets, crop overlap, ...
        return SamAutomaticMaskGenerator(sam, **params)

    print(f"| image | size | PyTorch masks | maskd masks | matched (IoU >= {MATCH_IOU}) | extra | "
          f"mean IoU of matches | PyTorch s |")
    print("|---|---|---|---|---|---|---|---|")
    totals = np.zeros(4)
    for image_path, maskd_path in zip(args.image, args.maskd):
        ref = reference(factory, image_path, params, args.out)
        ref_masks = [rle_to_mask(r["segmentation"]["size"], r["segmentation"]["counts"]) for r in ref["masks"]]
        ours = json.loads(maskd_path.read_text())
        our_masks = []
        for r in ours:
            m = rle_to_mask(r["segmentation"]["size"], rle_counts_from_string(r["segmentation"]["counts"]))
            if int(m.sum()) != r["area"]:
                sys.exit(f"reference_everything: {maskd_path}: a mask's RLE has {int(m.sum())} pixels, area says {r['area']}")
            our_masks.append(m)
        iou = iou_matrix(ref_masks, our_masks)
        best_ref = iou.max(1) if our_masks else np.zeros(len(ref_masks))
        best_ours = iou.max(0) if ref_masks else np.zeros(len(our_masks))
        matched = int((best_ref >= MATCH_IOU).sum())
        extra = int((best_ours < MATCH_IOU).sum())
        n_ref, n_ours = len(ref_masks), len(our_masks)
        mean_iou = float(best_ref[best_ref >= MATCH_IOU].mean()) if matched else float("nan")
        h, w = ref_masks[0].shape if ref_masks else (0, 0)
        print(f"| {image_path.name} | {w}x{h} | {n_ref} | {n_ours} | {matched}/{n_ref} "
              f"({100 * matched / max(n_ref, 1):.0f}%) | {extra} ({100 * extra / max(n_ref, 1):.0f}%) | "
              f"{mean_iou:.4f} | {ref['seconds']:.1f} |", flush=True)
        totals += [n_ref, n_ours, matched, extra]
    n_ref, n_ours, matched, extra = totals
    print(f"| all | | {n_ref:.0f} | {n_ours:.0f} | {matched:.0f}/{n_ref:.0f} ({100 * matched / max(n_ref, 1):.1f}%) | "
          f"{extra:.0f} ({100 * extra / max(n_ref, 1):.1f}%) | | |")


if __name__ == "__main__":
    with torch.no_grad():
        main()
