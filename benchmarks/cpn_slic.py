"""CPN's complementary pairs: what SLIC costs in the data workers, next to a training step.

Three measurements, CPU seconds of one process with one torch thread (``time.process_time``;
the development machine is shared, so wall time is noise):

1. ``pair``: the after_crop step alone (:class:`wsss.cams.complementary.ComplementaryPatches`:
   SLIC + the hidden-set lookup) on normalised crops, for the VOC recipe (448 px crops, 300
   superpixels) and the synthetic one (128 px, 25), and the same mask built by a per-pixel Python
   loop over the superpixel ids (the formulation the lookup replaces), on the same ids.
2. ``sample``: a whole training sample (load, resize, flip, jitter, normalise, crop, [pair],
   ToTensor) with and without the pair step: the pair's share of the data time.
3. ``step``: one CPN training step (the triplet forward, the losses, backward, SGD) of the
   synthetic config (ResNet-18 width 32, batch 32, 128 px), next to vanilla CAM's step on the same
   batch: the SLIC time of a batch as a share of its step (SLIC runs in the DataLoader workers,
   in parallel with the step; with W workers it stalls the step only when batch x pair / W
   exceeds the step). The VOC step (ResNet-38d, batch 4, 448 px) needs a GPU and is not measured.

    flock /tmp/wsss-heavy.lock python benchmarks/cpn_slic.py --data /work/data/synthetic

Writes ``benchmarks/results/cpn_slic.json``; the last line printed is ``slic share: ...``.
"""

import argparse
import os
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsss.cams import build_method  # noqa: E402
from wsss.cams.complementary import ComplementaryPatches, hidden_superpixels, slic_superpixels  # noqa: E402
from wsss.cams.cpn import CPN  # noqa: E402
from wsss.cli import run_main  # noqa: E402
from wsss.config import load_config  # noqa: E402
from wsss.data import LabelsOnly, build_dataset, collate  # noqa: E402
from wsss.data.io import write_json  # noqa: E402
from wsss.data.transforms import build_train_transform  # noqa: E402
from wsss.engine import StepContext  # noqa: E402

RECIPES = {  # name: (augment, n_segments)
    "voc": ({"resize_long": [448, 768], "hflip": True, "color_jitter": 0.3, "crop": 448}, 300),
    "synthetic": ({"resize_long": [112, 160], "hflip": True, "crop": 128}, 25),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/synthetic", help="synthetic dataset root (images to crop)")
    p.add_argument("--samples", type=int, default=24, help="samples per data measurement")
    p.add_argument("--steps", type=int, default=3, help="training steps measured (after one warm-up)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/cpn_slic.json"))
    return p.parse_args(argv)


def cpu_seconds(fn, repeat):
    """CPU seconds per call of ``fn`` over ``repeat`` calls."""
    start = time.process_time()
    for i in range(repeat):
        fn(i)
    return (time.process_time() - start) / repeat


def loop_mask(ids, hidden):
    """The keep mask by a per-pixel Python loop (the formulation the lookup table replaces)."""
    hidden_set = set(np.flatnonzero(hidden).tolist())
    keep = np.ones(ids.shape, np.float32)
    h, w = ids.shape
    for y in range(h):
        for x in range(w):
            if int(ids[y, x]) in hidden_set:
                keep[y, x] = 0.0
    return keep


def pair_costs(base, augment, n_segments, samples):
    """Per-crop CPU seconds of the pair step, of SLIC alone, and of the mask by lookup vs loop."""
    crops = LabelsOnly(base, build_train_transform(augment, steps={"after_crop": lambda s: s}))
    random.seed(0)
    images = [crops[i % len(crops)]["image"].permute(1, 2, 0).numpy() for i in range(samples)]
    step = ComplementaryPatches("superpixel", n_segments=n_segments)
    pair = cpu_seconds(lambda i: step({"image": images[i], "maps": {}}), samples)
    slic = cpu_seconds(lambda i: slic_superpixels(images[i], n_segments), samples)
    ids = [slic_superpixels(images[i], n_segments) for i in range(min(samples, 4))]
    rng = np.random.default_rng(0)
    tables = [hidden_superpixels(int(s.max()), "half", rng) for s in ids]
    lookup = cpu_seconds(lambda i: ~tables[i % len(ids)][ids[i % len(ids)]], 50)
    loop = cpu_seconds(lambda i: loop_mask(ids[i], tables[i]), len(ids))
    same = all(np.array_equal(loop_mask(s, t), (~t[s]).astype(np.float32)) for s, t in zip(ids, tables))
    return {"crop": augment["crop"], "n_segments": n_segments, "superpixels_mean": float(np.mean([s.max() for s in ids])),
            "pair_step_s": round(pair, 4), "slic_s": round(slic, 4), "mask_lookup_s": round(lookup, 6),
            "mask_python_loop_s": round(loop, 4), "loop_over_lookup": round(loop / max(lookup, 1e-9), 1),
            "loop_equals_lookup": same}


def sample_costs(base, augment, n_segments, samples):
    """Per-sample CPU seconds of the whole training transform with and without the pair step."""
    cfg = {"augment": augment, "method": {"n_segments": n_segments}}
    with_pair = LabelsOnly(base, CPN.train_transform(cfg))
    without = LabelsOnly(base, build_train_transform(augment))
    random.seed(1)
    a = cpu_seconds(lambda i: with_pair[i % len(base)], samples)
    random.seed(1)
    b = cpu_seconds(lambda i: without[i % len(base)], samples)
    return {"with_pair_s": round(a, 4), "without_pair_s": round(b, 4), "pair_share_of_sample": round((a - b) / a, 3)}


def step_costs(base, steps):
    """CPU seconds of a CPN and a vanilla CAM training step on one synthetic batch (config values)."""
    results = {}
    for name in ("cpn", "cam"):
        cfg = load_config(ROOT / "configs" / "synthetic" / f"{name}.yaml")
        cfg["model"]["weights"] = None
        dataset = LabelsOnly(base, CPN.train_transform(cfg)) if name == "cpn" else \
            LabelsOnly(base, build_train_transform(cfg["augment"]))
        random.seed(2)
        batch = collate([dataset[i % len(base)] for i in range(int(cfg["train"]["batch_size"]))])
        torch.manual_seed(0)
        task = build_method(name, cfg, base.num_classes).train()
        opt = torch.optim.SGD(task.parameters(), lr=1e-3, momentum=0.9)

        def one(_):
            opt.zero_grad()
            task.training_step(batch, StepContext())["loss"].backward()
            opt.step()

        one(0)  # warm-up
        results[name] = {"batch_size": int(cfg["train"]["batch_size"]), "step_s": round(cpu_seconds(one, steps), 3)}
    return results


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    base = build_dataset("synthetic", args.data, "train")
    out = {"benchmark": "cpn_slic", "command": " ".join([Path(sys.executable).name, *sys.argv]),
           "torch_threads": 1, "torch": torch.__version__, "platform": platform.platform(),
           "load_average_start": os.getloadavg()[0]}
    out["pair"] = {name: pair_costs(base, aug, n, args.samples) for name, (aug, n) in RECIPES.items()}
    out["sample"] = {name: sample_costs(base, aug, n, args.samples) for name, (aug, n) in RECIPES.items()}
    out["step"] = step_costs(base, args.steps)
    syn, step = out["pair"]["synthetic"], out["step"]["cpn"]
    out["synthetic_slic_share_of_step"] = round(step["batch_size"] * syn["pair_step_s"] / step["step_s"], 3)
    voc = out["pair"]["voc"]
    out["voc_pairs_per_second_per_worker"] = round(1.0 / voc["pair_step_s"], 2)
    out["load_average_end"] = os.getloadavg()[0]
    write_json(args.out, out)
    for name, p in out["pair"].items():
        print(f"[cpn_slic] {name}: pair step {p['pair_step_s'] * 1000:.1f} ms per {p['crop']} px crop "
              f"(SLIC {p['slic_s'] * 1000:.1f} ms, {p['superpixels_mean']:.0f} superpixels); mask by lookup "
              f"{p['mask_lookup_s'] * 1e6:.0f} us vs per-pixel loop {p['mask_python_loop_s'] * 1000:.0f} ms; "
              f"{out['sample'][name]['pair_share_of_sample']:.0%} of a training sample's data time")
    print(f"[cpn_slic] synthetic step: cpn {step['step_s']:.2f} s, cam {out['step']['cam']['step_s']:.2f} s "
          f"(batch {step['batch_size']}, 1 thread) -> {args.out}")
    print(f"slic share: {out['synthetic_slic_share_of_step']:.1%} of a synthetic CPN step (1 worker); "
          f"VOC crops {voc['pair_step_s']:.2f} s each = {out['voc_pairs_per_second_per_worker']:.1f} pairs/s per worker")
    return 0


if __name__ == "__main__":
    run_main(main)
