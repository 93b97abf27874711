"""Reference for `maskd eval`: the same click protocol and metrics, run on
PyTorch MobileSAM (the package's SamPredictor) instead of maskd's ONNX models.

An independent implementation (numpy + scipy, not a port of the Rust code),
so that the two agreeing checks both. See docs/EVAL.md for the protocol.

    $(models/export.sh --python) models/reference_eval.py --dataset DIR [--out results/]

Writes OUT/<dataset>.pytorch.json (the summary, same keys as maskd's) and
OUT/<dataset>.pytorch.csv (IoU after each click, per image).
"""

import argparse
import csv
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from export import fetch_package, log

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp"}
FORMATS = ("grabcut", "berkeley", "davis", "coco-mval")
NOC_THRESHOLDS = (0.85, 0.90)
MIOU_CLICKS = (1, 3, 5)
# Early stop: once IoU >= 0.90 after at least 5 clicks, every reported metric is final.
STOP_IOU = 0.90
MIN_CLICKS = 5


def detect_format(root: Path) -> str:
    name = re.sub(r"[^a-z0-9]", "", root.name.lower())
    for key, fmt in (("grabcut", "grabcut"), ("berkeley", "berkeley"), ("davis", "davis"),
                     ("mval", "coco-mval")):
        if key in name:
            return fmt
    masks = sorted(p for p in (root / "masks").iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if masks and Image.open(masks[0]).mode == "P":
        return "davis"
    sys.exit(f"reference_eval: cannot tell the format of {root}; pass --format")


def pairs(root: Path) -> list[tuple[str, Path, Path]]:
    def by_stem(folder: Path) -> dict[str, Path]:
        return {p.stem: p for p in sorted(folder.iterdir())
                if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")}

    images, masks = by_stem(root / "images"), by_stem(root / "masks")
    missing = sorted(set(images) ^ set(masks))
    if missing:
        sys.exit(f"reference_eval: unpaired files in {root}: {missing}")
    return [(stem, images[stem], masks[stem]) for stem in sorted(images)]


def ground_truth(path: Path, fmt: str) -> tuple[np.ndarray, np.ndarray]:
    """(object, ignore) boolean masks."""
    im = Image.open(path)
    if fmt == "davis":
        a = np.array(im)
        obj = a != 0 if im.mode == "P" else (a.reshape(a.shape[0], a.shape[1], -1) != 0).any(axis=2)
        return obj, np.zeros_like(obj)
    grey = np.array(im.convert("L"))
    ignore = grey == 128 if fmt == "grabcut" else np.zeros(grey.shape, bool)
    return grey > 128, ignore


def edt_squared(region: np.ndarray) -> np.ndarray:
    """Squared Euclidean distance of each region pixel to the nearest pixel
    outside it, with everything beyond the image border outside."""
    padded = np.pad(region, 1)
    try:
        from scipy.ndimage import distance_transform_edt
        d = distance_transform_edt(padded)
        return np.rint(d * d)[1:-1, 1:-1]
    except ImportError:
        # Separable brute force, one line at a time: exact, slower, numpy only.
        f = np.where(padded, float(padded.size) ** 2, 0.0)
        for axis in (1, 0):
            f = np.moveaxis(f, axis, -1).copy()
            q = np.arange(f.shape[-1], dtype=float)
            square = (q[:, None] - q[None, :]) ** 2
            for line in f.reshape(-1, f.shape[-1]):
                line[:] = np.min(line[None, :] + square, axis=1)
            f = np.moveaxis(f, -1, axis)
        return f[1:-1, 1:-1]


def next_click(obj, ignore, pred, clicked):
    """RITM's clicker: the larger error region (by its largest distance to its
    own boundary) gets the click, at that farthest point; ties go negative,
    row-major first among equal distances. None when nothing is left to fix."""
    valid = ~ignore
    fn = obj & ~pred & valid
    fp = ~obj & pred & valid
    fn_dt = np.where(clicked, 0, edt_squared(fn))
    fp_dt = np.where(clicked, 0, edt_squared(fp))
    fn_max, fp_max = fn_dt.max(), fp_dt.max()
    if max(fn_max, fp_max) == 0:
        return None
    positive = fn_max > fp_max
    dt = fn_dt if positive else fp_dt
    y, x = np.argwhere(dt == dt.max())[0]
    return int(x), int(y), bool(positive)


def iou(obj, ignore, pred) -> float:
    valid = ~ignore
    union = ((obj | pred) & valid).sum()
    return 1.0 if union == 0 else float((obj & pred & valid).sum() / union)


def evaluate(predictor, image, obj, ignore, max_clicks):
    t = time.perf_counter()
    predictor.set_image(image)
    encode_ms = (time.perf_counter() - t) * 1000
    pred = np.zeros_like(obj)
    clicked = np.zeros_like(obj)
    points, labels, ious, decode_ms = [], [], [], []
    logits = None
    for _ in range(max_clicks):
        click = next_click(obj, ignore, pred, clicked)
        if click is None:
            break
        x, y, positive = click
        clicked[y, x] = True
        points.append([x, y])
        labels.append(1 if positive else 0)
        t = time.perf_counter()
        masks, scores, low_res = predictor.predict(
            point_coords=np.array(points, dtype=np.float32), point_labels=np.array(labels),
            mask_input=logits, multimask_output=True)
        decode_ms.append((time.perf_counter() - t) * 1000)
        best = int(np.argmax(scores))
        pred, logits = masks[best], low_res[best][None]
        ious.append(iou(obj, ignore, pred))
        if ious[-1] >= STOP_IOU and len(ious) >= MIN_CLICKS:
            break
    return ious, points, labels, encode_ms, decode_ms


def iou_after(ious, k):
    # The prediction stands once clicking stops.
    return ious[min(k, len(ious)) - 1]


def noc(ious, thr, max_clicks):
    return next((i + 1 for i, v in enumerate(ious) if v >= thr), max_clicks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", type=Path, required=True, help="DIR with images/ and masks/")
    ap.add_argument("--format", choices=FORMATS + ("auto",), default="auto")
    ap.add_argument("--max-clicks", type=int, default=20)
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("MASKD_CACHE", Path.home() / ".cache/maskd")))
    args = ap.parse_args()
    root = args.dataset.resolve()
    fmt = detect_format(root) if args.format == "auto" else args.format
    samples = pairs(root)

    code_root, checkpoint = fetch_package(args.cache)
    sys.path.insert(0, str(code_root))
    from mobile_sam import SamPredictor, sam_model_registry

    sam = sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()
    predictor = SamPredictor(sam)
    args.out.mkdir(parents=True, exist_ok=True)
    rows, started = [], time.perf_counter()
    with torch.no_grad():
        for i, (name, image_path, mask_path) in enumerate(samples):
            obj, ignore = ground_truth(mask_path, fmt)
            image = np.array(Image.open(image_path).convert("RGB"))
            if image.shape[:2] != obj.shape:
                sys.exit(f"reference_eval: {mask_path} is {obj.shape}, image {image.shape[:2]}")
            ious, points, labels, enc, dec = evaluate(predictor, image, obj, ignore, args.max_clicks)
            rows.append({"image": name, "ious": ious, "points": points, "labels": labels,
                         "encode_ms": enc, "decode_ms": dec})
            log(f"[{i + 1}/{len(samples)}] {name}: {len(ious)} clicks, IoU@1 {ious[0]:.3f}, "
                f"NoC@90 {noc(ious, 0.90, args.max_clicks)}")
    wall_s = time.perf_counter() - started

    m = args.max_clicks
    summary = {
        "dataset": root.name, "format": fmt, "runtime": "pytorch", "model": "mobile_sam",
        "precision": "f32",
        "max_clicks": m, "n": len(rows),
        **{f"noc{round(t * 100)}": float(np.mean([noc(r["ious"], t, m) for r in rows])) for t in NOC_THRESHOLDS},
        **{f"nof{round(t * 100)}": int(sum(max(r["ious"]) < t for r in rows))
           for t in NOC_THRESHOLDS},
        **{f"miou{k}": float(np.mean([iou_after(r["ious"], k) for r in rows])) for k in MIOU_CLICKS},
        "encode_ms": float(np.mean([r["encode_ms"] for r in rows])),
        "decode_ms": float(np.mean([d for r in rows for d in r["decode_ms"]])),
        "wall_s": wall_s,
    }
    stem = args.out / f"{root.name}.pytorch"
    Path(f"{stem}.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(f"{stem}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "clicks", "noc85", "noc90", "iou1", "iou3", "iou5", "ious", "points"])
        for r in rows:
            w.writerow([r["image"], len(r["ious"]), noc(r["ious"], 0.85, m), noc(r["ious"], 0.90, m),
                        *(f"{iou_after(r['ious'], k):.4f}" for k in MIOU_CLICKS),
                        " ".join(f"{v:.4f}" for v in r["ious"]),
                        " ".join(f"{x}:{y}:{'+' if l else '-'}" for (x, y), l in zip(r["points"], r["labels"]))])
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
