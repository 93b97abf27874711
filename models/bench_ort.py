#!/usr/bin/env python3
"""ONNX Runtime side of `maskd bench`.

Times the same ONNX files on the exact tensors maskd fed its own plans (dumped
as .npy by `maskd bench` under INPUTS/imageNNN/), with the same thread count,
frames, prompts and warm-up runs, and prints one JSON object with the raw
samples in milliseconds, the same fields maskd's workers report. Run once per
configuration, in a fresh process, so that the peak RSS is that configuration's.

Usage: bench_ort.py --encoder E.onnx --decoder D.onnx --inputs DIR --threads N
                    --frames F --warmup-frames W --warmup-prompts P
"""

import argparse
import json
import pathlib
import sys
import time


def memory_kb(field):
    """A kB field of /proc/self/status (VmRSS now, VmHWM the peak), None without procfs."""
    try:
        for line in pathlib.Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def ms(since):
    return (time.perf_counter() - since) * 1000.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", required=True)
    parser.add_argument("--decoder", required=True)
    parser.add_argument("--inputs", required=True, type=pathlib.Path)
    parser.add_argument("--threads", required=True, type=int)
    parser.add_argument("--frames", required=True, type=int)
    parser.add_argument("--warmup-frames", required=True, type=int)
    parser.add_argument("--warmup-prompts", required=True, type=int)
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort

    base_rss_kb = memory_kb("VmRSS")
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    providers = ["CPUExecutionProvider"]
    started = time.perf_counter()
    encoder = ort.InferenceSession(args.encoder, options, providers=providers)
    decoder = ort.InferenceSession(args.decoder, options, providers=providers)
    samples = {"load_ms": ms(started), "encoder_ms": [], "decoder_ms": [], "base_rss_kb": base_rss_kb}

    images = sorted(args.inputs.glob("image[0-9]*"))
    if not images:
        sys.exit(f"bench_ort.py: no image inputs in {args.inputs}")
    for i, image_dir in enumerate(images):
        # Inputs are read per image and per prompt, outside the timed runs,
        # as maskd builds them.
        image = {"image": np.load(image_dir / "image.npy")}
        warmup = args.warmup_frames if i == 0 else 0
        for frame in range(warmup + args.frames):
            started = time.perf_counter()
            encoder.run(["image_embeddings"], image)
            if frame >= warmup:
                samples["encoder_ms"].append(ms(started))
        del image

        embedding = np.load(image_dir / "image_embeddings.npy")
        prompts = sorted(image_dir.glob("prompt[0-9]*"))
        warmup = min(args.warmup_prompts, len(prompts)) if i == 0 else 0
        for j, prompt_dir in enumerate(prompts[:warmup] + prompts):
            feed = {"image_embeddings": embedding}
            feed.update((f.stem, np.load(f)) for f in prompt_dir.glob("*.npy"))
            started = time.perf_counter()
            decoder.run(["iou_predictions", "low_res_masks"], feed)
            if j >= warmup:
                samples["decoder_ms"].append(ms(started))

    samples["peak_rss_kb"] = memory_kb("VmHWM")
    samples["version"] = ort.__version__
    json.dump(samples, sys.stdout)
    print()


if __name__ == "__main__":
    main()
