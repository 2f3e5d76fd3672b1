"""Multi-scale CAM inference: wsss.cams.inference against the plain per-scale, per-flip fp32 loop.

Both compute docs/methods/cam.md's CAMs (scales 0.5/1/1.5/2 with flips, ReLU, upsample to stride 4 and
to the image size, sum, present classes, max-normalise) with the same network on the same
images, preprocessing included. The plain loop runs every scale and every flip as its own
batch-1 forward pass under ``torch.no_grad`` and upsamples all classes; this implementation
batches the flip with the image and equal-size images together, runs NHWC (channels_last)
under ``torch.inference_mode`` (plus autocast on CUDA with ``--amp``), and upsamples only the
present classes. Besides wall time, the process CPU time of both is recorded: on a CPU shared
with other jobs it is the more stable measure of the work each does.

    python benchmarks/cam_inference.py                      # synthetic 128 px images, CPU
    python benchmarks/cam_inference.py --exp experiments/synthetic_cam --images 64

Writes benchmarks/results/cam_inference.json; the last line printed is
``speedup: <x> max_abs_diff: <y>``.
"""

import argparse
import copy
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from wsss.cams import build_method
from wsss.cams.inference import (DEFAULT_SCALES, PyramidDataset, group_by_size, image_pyramid, infer_group,
                                 make_cam_fn, strided_size)
from wsss.config import load_config
from wsss.data.io import write_json
from wsss.data.synthetic import NUM_CLASSES, render_sample
from wsss.engine import load_weights, resolve_device

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default=str(ROOT / "configs/synthetic/cam.yaml"), help="network config")
    p.add_argument("--exp", default=None, help="use this experiment's config and trained weights")
    p.add_argument("--images", type=int, default=32, help="number of synthetic images")
    p.add_argument("--size", type=int, default=128, help="image side")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch (this implementation)")
    p.add_argument("--device", default="auto")
    p.add_argument("--amp", default="none", help="none|bf16|fp16 (CUDA only)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cam_inference.json"))
    return p.parse_args(argv)


class ListDataset:
    """Raw samples in the data layer's format (uint8 image, multi-hot label)."""

    def __init__(self, samples):
        self.samples = samples

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


def synthetic_samples(n, size):
    out = []
    for i in range(n):
        r = render_sample(0, i, size=size, split="val")
        image, mask = r.image, r.mask
        label = np.zeros(NUM_CLASSES, np.float32)
        present = np.unique(mask)
        label[present[(present > 0) & (present < 255)] - 1] = 1
        out.append({"id": f"bench_{i:04d}", "image": image, "label": label, "mask": mask, "maps": {}})
    return out


@torch.no_grad()
def plain_loop(task, samples, scales, device):
    """Every scale and flip as its own fp32 batch-1 forward; all classes upsampled; keys last."""
    out = {}
    for s in samples:
        image = s["image"]
        h, w = image.shape[:2]
        st = strided_size((h, w), 4)
        up = tuple(x * 16 for x in strided_size((h, w), 16))
        cam = hr = 0
        for x in image_pyramid(image, scales):
            for flipped in (False, True):
                xi = (x.flip(-1) if flipped else x)[None].to(device)
                a = F.relu(task.cam_forward(xi).float())
                a = a.flip(-1) if flipped else a
                cam = cam + F.interpolate(a, st, mode="bilinear", align_corners=False)[0]
                hr = hr + F.interpolate(a, up, mode="bilinear", align_corners=False)[0, :, :h, :w]
        keys = torch.as_tensor(np.flatnonzero(s["label"] > 0.5), device=cam.device)
        cam, hr = cam[keys], hr[keys]
        out[s["id"]] = (cam / (cam.amax((1, 2), keepdim=True) + 1e-5)).cpu(), \
            (hr / (hr.amax((1, 2), keepdim=True) + 1e-5)).cpu()
    return out


def ours(task, samples, scales, device, batch_size, amp):
    cam_fn = make_cam_fn(task, device, amp, channels_last=True)
    ds = PyramidDataset(ListDataset(samples), range(len(samples)), scales)
    out = {}
    with torch.inference_mode():
        for start in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(start, min(start + batch_size, len(ds)))]
            for group in group_by_size(items):
                for it, cam, hr in infer_group(cam_fn, group):
                    out[it["id"]] = (cam.cpu(), hr.cpu())
    return out


def timed(fn, device):
    """``(result, wall seconds, process CPU seconds)``; CPU time is robust to other jobs sharing the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t, c = time.perf_counter(), time.process_time()
    result = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - t, time.process_time() - c


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = load_config(Path(args.exp) / "config.yaml" if args.exp else args.config)
    torch.manual_seed(0)
    task = build_method(cfg["method"]["name"], cfg, NUM_CLASSES)
    if args.exp:
        load_weights(task, Path(args.exp) / "checkpoints" / "last.pth")
    task.to(device).eval()
    fast = copy.deepcopy(task).to(memory_format=torch.channels_last)  # plain loop keeps NCHW weights
    samples = synthetic_samples(args.images, args.size)
    scales = DEFAULT_SCALES

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    # warm-up (allocator, oneDNN/cuDNN kernel selection) on two images, not timed
    plain_loop(task, samples[:2], scales, device)
    ours(fast, samples[:2], scales, device, args.batch_size, args.amp)
    ref, t_plain, c_plain = timed(lambda: plain_loop(task, samples, scales, device), device)
    new, t_ours, c_ours = timed(lambda: ours(fast, samples, scales, device, args.batch_size, args.amp), device)

    diff = max(max((ref[k][0] - new[k][0]).abs().max().item() if ref[k][0].numel() else 0.0,
                   (ref[k][1] - new[k][1]).abs().max().item() if ref[k][1].numel() else 0.0) for k in ref)
    speedup = t_plain / t_ours
    result = {
        "benchmark": "multi-scale CAM inference (scales 0.5/1/1.5/2 + flips)",
        "network": f"{cfg['model']['backbone']} {cfg['model'].get('backbone_kwargs') or {}} "
                   f"OS{cfg['model'].get('output_stride', 16)}" + (f" trained ({args.exp})" if args.exp else " random init"),
        "images": args.images, "image_size": args.size, "batch_size": args.batch_size, "amp": args.amp,
        "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
        "cpu_threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
        "plain_loop_seconds": round(t_plain, 3), "ours_seconds": round(t_ours, 3),
        "plain_images_per_second": round(args.images / t_plain, 2), "ours_images_per_second": round(args.images / t_ours, 2),
        "plain_loop_cpu_seconds": round(c_plain, 3), "ours_cpu_seconds": round(c_ours, 3),
        "speedup": round(speedup, 3), "cpu_time_ratio": round(c_plain / max(c_ours, 1e-9), 3), "max_abs_diff": diff,
        # 1-minute load average before/after: other processes sharing the CPU slow both loops
        "load_average": [load_before, os.getloadavg()[0] if hasattr(os, "getloadavg") else None],
    }
    write_json(args.out, result)
    print(json.dumps(result, indent=2))
    print(f"speedup: {speedup:.2f} max_abs_diff: {diff:.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
