"""Regenerate tests/golden/: sample photos, PyTorch SamPredictor masks and
cases.json, plus the ONNX pipelines' (f32 and int8) agreement with them, and
the JPEG decoding fixtures of tests/golden/jpeg/ (make_jpeg_fixtures.py).

Run through `models/export.sh --goldens`, which exports the models first and
installs requirements-goldens.txt (scikit-image ships the photos).
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import skimage.data
from PIL import Image

from export import MASK_INPUT_SIZE, REPO, fetch_package, log, mask_iou, session
from make_jpeg_fixtures import write_fixtures

GOLDEN = REPO / "tests/golden"
# Public-domain / CC0 photos from scikit-image (see tests/golden/images/README.md).
PHOTOS = {"chelsea": "chelsea.png", "coffee": "coffee.png", "astronaut": "astronaut.png",
          "rocket": "rocket.jpg"}
# JPEG photos, encoded by Pillow from the PNGs: a frame as a UVC camera sends
# it (4:2:2) and a photo as a phone saves one (4:2:0). The reference reads
# them as it reads any file, `Image.open(path).convert("RGB")`; maskd must
# decode them to the same pixels to give the same masks.
JPEG_PHOTOS = {"coffee_camera": ("coffee", {"quality": 80, "subsampling": "4:2:2"}),
               "astronaut_photo": ("astronaut", {"quality": 90, "subsampling": "4:2:0"})}

# Points are [x, y, label] in original pixels (1 foreground, 0 background);
# boxes are [x0, y0, x1, y1]. A case with mask_input_from feeds back the best
# low-res logits of that earlier case.
CASES = [
    {"name": "chelsea_point", "image": "chelsea", "points": [[255, 180, 1]], "multimask": True},
    {"name": "chelsea_eye_single", "image": "chelsea", "points": [[172, 112, 1]], "multimask": False},
    {"name": "chelsea_refine", "image": "chelsea", "points": [[255, 180, 1], [330, 60, 1]],
     "mask_input_from": "chelsea_point", "multimask": False},
    {"name": "coffee_box", "image": "coffee", "box": [75, 15, 480, 385], "multimask": False},
    {"name": "coffee_fg_bg", "image": "coffee", "points": [[190, 180, 1], [110, 300, 0]],
     "multimask": False},
    {"name": "coffee_spoon_point", "image": "coffee", "points": [[365, 290, 1]], "multimask": True},
    {"name": "astronaut_face_box_point", "image": "astronaut", "points": [[225, 120, 1]],
     "box": [150, 20, 305, 190], "multimask": False},
    {"name": "astronaut_points", "image": "astronaut",
     "points": [[100, 330, 1], [300, 300, 1], [60, 450, 1], [225, 110, 1], [400, 430, 0],
                [400, 200, 0]], "multimask": False},
    {"name": "astronaut_patch_point", "image": "astronaut", "points": [[170, 385, 1]],
     "multimask": True},
    {"name": "rocket_point_single", "image": "rocket", "points": [[320, 250, 1]], "multimask": False},
    {"name": "rocket_box", "image": "rocket", "box": [295, 125, 345, 405], "multimask": False},
    {"name": "rocket_refine", "image": "rocket", "points": [[320, 250, 1], [320, 150, 1]],
     "mask_input_from": "rocket_point_single", "multimask": False},
    # The JPEG photos: the same kinds of prompt, on pixels only a decoder
    # that matches Pillow's reproduces.
    {"name": "coffee_camera_spoon_point", "image": "coffee_camera", "points": [[365, 290, 1]],
     "multimask": True},
    {"name": "coffee_camera_fg_bg", "image": "coffee_camera", "points": [[190, 180, 1], [110, 300, 0]],
     "multimask": False},
    {"name": "coffee_camera_box", "image": "coffee_camera", "box": [75, 15, 480, 385], "multimask": False},
    {"name": "astronaut_photo_points", "image": "astronaut_photo",
     "points": [[100, 330, 1], [300, 300, 1], [60, 450, 1], [225, 110, 1]], "multimask": False},
    {"name": "astronaut_photo_patch_point", "image": "astronaut_photo", "points": [[170, 385, 1]],
     "multimask": True},
    {"name": "astronaut_photo_face_box_point", "image": "astronaut_photo", "points": [[225, 120, 1]],
     "box": [150, 20, 305, 190], "multimask": False},
]


def write_photos() -> None:
    """Copy the photos as PNG so every decoder sees identical pixels, then
    encode the JPEG photos from them."""
    src = Path(skimage.data.__file__).parent
    out = GOLDEN / "images"
    out.mkdir(parents=True, exist_ok=True)
    for name, file in PHOTOS.items():
        Image.open(src / file).convert("RGB").save(out / f"{name}.png", optimize=True)
    for name, (photo, options) in JPEG_PHOTOS.items():
        Image.open(out / f"{photo}.png").convert("RGB").save(out / f"{name}.jpg", **options)


def photo_file(name: str) -> str:
    return f"{name}.jpg" if name in JPEG_PHOTOS else f"{name}.png"


def load_rgb(name: str) -> np.ndarray:
    return np.array(Image.open(GOLDEN / "images" / photo_file(name)).convert("RGB"))


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize of the last two axes, half-pixel centres (as
    torch.nn.functional.interpolate with align_corners=False)."""

    def taps(n_out, n_in):
        src = np.maximum((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0)
        i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    y0, y1, fy = taps(out_h, x.shape[-2])
    x0, x1, fx = taps(out_w, x.shape[-1])
    rows = x[..., y0, :] * (1 - fy)[:, None] + x[..., y1, :] * fy[:, None]
    return rows[..., x0] * (1 - fx) + rows[..., x1] * fx


class OnnxSam:
    """An ONNX variant with numpy pre/post-processing, as the runtime does it."""

    def __init__(self, models: Path, variant: str):
        manifest = json.loads((models / "manifest.json").read_text())
        self.size = manifest["image_size"]
        self.mean = np.array(manifest["pixel_mean"], np.float32)
        self.std = np.array(manifest["pixel_std"], np.float32)
        files = manifest["variants"][variant]
        self.encoder = session(models / files["encoder"]["file"])
        self.decoder = session(models / files["decoder"]["file"])

    def set_image(self, image: np.ndarray) -> None:
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        self.orig = (h, w)
        self.resized = (int(h * scale + 0.5), int(w * scale + 0.5))
        rh, rw = self.resized
        pixels = np.asarray(Image.fromarray(image).resize((rw, rh), Image.BILINEAR), np.float32)
        x = np.zeros((1, 3, self.size, self.size), np.float32)
        x[0, :, :rh, :rw] = ((pixels - self.mean) / self.std).transpose(2, 0, 1)
        self.embedding = self.encoder.run(None, {"image": x})[0]

    def predict(self, points, box, mask_input):
        """Returns (iou [4], low-res logits [4,256,256], masks [4,h,w] bool)."""
        (h, w), (rh, rw) = self.orig, self.resized
        coords = [[x, y] for x, y, _ in points]
        labels = [label for _, _, label in points]
        if box is None:
            coords.append([0, 0])
            labels.append(-1)
        else:
            coords += [box[:2], box[2:]]
            labels += [2, 3]
        coords = np.array(coords, np.float32) * np.array([rw / w, rh / h], np.float32)
        feeds = {
            "image_embeddings": self.embedding,
            "point_coords": coords[None],
            "point_labels": np.array(labels, np.float32)[None],
            "mask_input": (mask_input if mask_input is not None
                           else np.zeros((MASK_INPUT_SIZE, MASK_INPUT_SIZE), np.float32))[None, None],
            "has_mask_input": np.array([0.0 if mask_input is None else 1.0], np.float32),
        }
        iou, low_res = self.decoder.run(None, feeds)
        up = resize_bilinear(low_res[0], self.size, self.size)[:, :rh, :rw]
        return iou[0], low_res[0], resize_bilinear(up, h, w) > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", type=Path, required=True)
    ap.add_argument("--cache", type=Path, required=True)
    args = ap.parse_args()

    write_photos()
    write_fixtures()
    code_root, checkpoint = fetch_package(args.cache)
    sys.path.insert(0, str(code_root))
    from mobile_sam import SamPredictor, sam_model_registry

    sam = sam_model_registry["vit_t"](checkpoint=str(checkpoint)).eval()
    predictor = SamPredictor(sam)
    variants = ("f32", "int8")
    onnx_sams = {v: OnnxSam(args.models, v) for v in variants}

    masks_dir = GOLDEN / "masks"
    masks_dir.mkdir(parents=True, exist_ok=True)
    for old in masks_dir.glob("*.png"):
        old.unlink()

    # name -> (tokens, predicted iou, torch low-res, {variant: onnx low-res by token})
    done = {}
    records, image_name = [], None
    log(f"{'case':28} {'token':>5} {'iou':>6} {'area':>7}   mask IoU vs torch: onnx f32, int8")
    for case in CASES:
        name, points, box = case["name"], case.get("points", []), case.get("box")
        if case["image"] != image_name:
            image_name = case["image"]
            image = load_rgb(image_name)
            predictor.set_image(image, "RGB")
            for onnx_sam in onnx_sams.values():
                onnx_sam.set_image(image)

        # Each pipeline refines its own earlier logits, as a caller would.
        source = case.get("mask_input_from")
        torch_mask_in, onnx_mask_in, mask_index = None, dict.fromkeys(variants), None
        if source:
            tokens, iou, low_res, onnx_low_res = done[source]
            best = int(np.argmax(iou))
            mask_index = tokens[best]
            torch_mask_in = low_res[best][None]
            onnx_mask_in = {v: onnx_low_res[v][mask_index] for v in variants}

        masks, iou, low_res = predictor.predict(
            point_coords=np.array([p[:2] for p in points], np.float32) if points else None,
            point_labels=np.array([p[2] for p in points], np.float32) if points else None,
            box=np.array(box, np.float32) if box else None,
            mask_input=torch_mask_in,
            multimask_output=case["multimask"],
        )
        tokens = [1, 2, 3] if case["multimask"] else [0]
        onnx_low_res, onnx_masks = {}, {}
        for v, onnx_sam in onnx_sams.items():
            _, onnx_low_res[v], onnx_masks[v] = onnx_sam.predict(points, box, onnx_mask_in[v])
        done[name] = (tokens, iou, low_res, onnx_low_res)

        outputs = []
        for i, token in enumerate(tokens):
            path = masks_dir / f"{name}_{token}.png"
            Image.fromarray(masks[i].astype(np.uint8) * 255, "L").save(path, optimize=True)
            agreement = {v: mask_iou(onnx_masks[v][token], masks[i]) for v in variants}
            outputs.append({"token": token, "mask": str(path.relative_to(GOLDEN)),
                            "iou": round(float(iou[i]), 5), "area": int(masks[i].sum()),
                            **{f"onnx_{v}_iou": round(agreement[v], 5) for v in variants}})
            log(f"{name:28} {token:5d} {iou[i]:6.3f} {outputs[-1]['area']:7d}   "
                f"{agreement['f32']:.5f}, {agreement['int8']:.5f}")
        records.append({
            "name": name, "image": f"images/{photo_file(image_name)}", "size": list(image.shape[:2]),
            "points": points, "box": box, "mask_input_from": source,
            "mask_input_index": mask_index, "multimask": case["multimask"], "outputs": outputs,
        })

    (GOLDEN / "cases.json").write_text(json.dumps(records, indent=1) + "\n")
    log(f"wrote {len(records)} cases to {GOLDEN / 'cases.json'}")


if __name__ == "__main__":
    main()
