"""Pseudo masks by the random walk: AffinityNet affinities + sparse walk of the CAMs.

    python tools/infer_rw.py --exp experiments/rw/affinitynet --split train_aug \
        --cams experiments/pnoc/cams/train_aug --out experiments/rw/pseudo/train_aug --workers 8
    torchrun --nproc_per_node=4 tools/infer_rw.py ...     # shards the images over the ranks

Per image (``wsss.affinity``; the experiment's task, ``method.name: irn``): boundary map of the image and its flip (padded to
``infer.pad_size``), stride-4 CAMs times (1 - boundary) (``infer.mask_edge``; off: psa's
unmasked CAMs), walked by T = column-normalised A^beta
applied 2^logt times with sparse products (``infer.beta`` / ``logt`` / ``radius``, IRN 10 / 8 /
5), bilinear x4, divided by the max, background padded at ``infer.bg_threshold`` (P-NOC 0.3;
or psa's walked ``(1 - max)^bg_alpha`` channel; CAM files that store their method's background
map ``cam_bg`` walk it with the classes instead), argmax, optional label CRF (``infer.crf``,
P-NOC: t 1, gt_prob 0.9) in ``--workers`` processes. Writes ``<out>/<id>.png`` (VOC-palette
index PNG) atomically, skips finished images unless ``--overwrite``, saves the effective config
as ``<out>/config.yaml``; ``--save-rw DIR`` also writes the walked scores as CAM files
(``keys``, ``cam`` stride 4, ``hr_cam``) for threshold sweeps with tools/evaluate.py;
``--scores-only`` writes just those (resumable on them) and leaves the masks to
tools/make_pseudo_masks.py, for a background threshold picked from that sweep
(``infer.bg_threshold: best``, resolved by runners/3-rw.sh). ``method.name: psa``: psa's
feature affinities on the stride-8 grid and its pooled image-size CAMs (``wsss.affinity.psa``),
presets ``psa`` / ``icam`` / ``aeft``; ``infer.crf_on: scores`` (AEFT) runs the CRF on the
walked scores (unary -log p) instead of on the argmax labels. The registered task provides
``build_net``, ``walk_cams`` (a CAM file -> the walk input) and ``walk``.
"""

import argparse
import functools
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from wsss.affinity.random_walk import RW_PRESETS
from wsss.cli import Timer, run_main
from wsss.config import load_config, save_config
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import find_cam, load_cam, remove_stale_temporaries, save_cam
from wsss.data.transforms import build_eval_transform
from wsss.engine import barrier, init_distributed, load_weights, resolve_device, shard
from wsss.engine.checkpoint import extract_state_dict, load_checkpoint
from wsss.engine.distributed import all_reduce_sum
from wsss.errors import ConfigError, DataError
from wsss.parallel import parallel_map
from wsss.postprocess.pseudo import foreground_keys, pad_background, pseudo_mask_job
from wsss.stage import stage_task

INFER_DEFAULTS = {"preset": "irn", "mask_edge": True, "pad_size": 512, "bg_threshold": 0.25, "bg_alpha": None,
                  "crf": None, "crf_on": "labels", "source_window": False, "batch_size": 4, "num_workers": 1,
                  "dtype": "float64", "device": "auto"}
CRF_ON = ("labels", "scores")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", required=True, help="experiment folder of tools/train_affinity.py")
    p.add_argument("--split", required=True, help="split to process, e.g. train")
    p.add_argument("--cams", required=True, help="folder of <id>.npz CAM files of that split")
    p.add_argument("--out", default=None, help="pseudo-mask folder (default: <exp>/pseudo/<split>)")
    p.add_argument("--save-rw", default=None, help="also write the walked scores as CAM files here")
    p.add_argument("--scores-only", action="store_true",
                   help="write only the --save-rw scores, no masks (threshold sweep first)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the experiment)")
    p.add_argument("--checkpoint", default=None, help="weights (default: <exp>/checkpoints/last.pth)")
    p.add_argument("--workers", type=int, default=1, help="processes for the CRF / PNG writing")
    p.add_argument("--overwrite", action="store_true", help="recompute images whose mask exists")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (e.g. infer.bg_threshold=0.3)")
    return p.parse_args(argv)


def resolve_config(args):
    cfg = load_config(Path(args.exp) / "config.yaml", args.overrides)
    own = cfg.get("infer") or {}  # the config's own keys override its preset, which overrides the defaults
    cfg["infer"] = infer = {**INFER_DEFAULTS, **RW_PRESETS.get(own.get("preset", INFER_DEFAULTS["preset"])), **own}
    if (infer["bg_threshold"] is None) == (infer["bg_alpha"] is None):
        raise ConfigError("set exactly one of infer.bg_threshold (IRN/P-NOC) and infer.bg_alpha (psa)",
                          fix="e.g. infer.bg_alpha=null for the threshold")
    if args.scores_only and not args.save_rw:
        raise ConfigError("--scores-only writes the walked scores and needs --save-rw DIR", fix="add --save-rw DIR")
    if not args.scores_only and infer["bg_alpha"] is None and not isinstance(infer["bg_threshold"], (int, float)):
        raise ConfigError(f"infer.bg_threshold={infer['bg_threshold']!r} is not a number",
                          fix="pass infer.bg_threshold=<float>, or --scores-only --save-rw DIR and then "
                              "tools/make_pseudo_masks.py at the threshold of a sweep (runners/3-rw.sh does this)")
    if infer["dtype"] not in DTYPES:
        raise ConfigError(f"infer.dtype={infer['dtype']!r}", fix=f"use one of {', '.join(DTYPES)}")
    if infer["crf_on"] not in CRF_ON:
        raise ConfigError(f"infer.crf_on={infer['crf_on']!r}", fix=f"use one of {', '.join(CRF_ON)}")
    if args.data:
        cfg["data"]["root"] = args.data
    if cfg["data"].get("dataset", "auto") == "auto":
        cfg["data"]["dataset"] = detect_dataset(cfg["data"]["root"])
    return cfg


def load_net(task, cfg, path, device):
    """The task's network with the weights of a train_affinity checkpoint (its ``net.*`` entries)."""
    net = task.build_net(cfg, load_backbone=False)
    state = extract_state_dict(load_checkpoint(path))
    load_weights(net, {k[len("net."):]: v for k, v in state.items() if k.startswith("net.")}, strict=True, path=path)
    return net.to(device).eval()


class WalkInputs(torch.utils.data.Dataset):
    """Normalised image, walk input (``prepare(cam, (h, w), path=)``: the task's ``walk_cams``,
    background channel included) and keys of the selected dataset indices."""

    def __init__(self, dataset, indices, cam_dir, prepare):
        self.dataset, self.indices, self.cam_dir, self.prepare = dataset, list(indices), cam_dir, prepare
        self.transform = build_eval_transform({})

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        index = self.indices[i]
        sample = self.transform(self.dataset[index])
        path = find_cam(self.cam_dir, sample["id"])
        cam = load_cam(path)
        keys = foreground_keys(cam["keys"], np.shape(cam.get("hr_cam", cam.get("cam")))[0], path=path)
        cams = self.prepare(cam, tuple(sample["image"].shape[1:]), path=path)
        return {"index": index, "id": sample["id"], "image": sample["image"], "cams": cams, "keys": keys,
                "bg": "cam_bg" in cam or "hr_cam_bg" in cam, "path": path}


def stored_background(items):
    """Whether the batch's CAM files store a background map (all or none of them)."""
    stored = [it["bg"] for it in items]
    if any(stored) and not all(stored):
        raise DataError("some CAM files store a background map (cam_bg) and others do not",
                        path=items[stored.index(False)]["path"], fix="re-run tools/infer_cam.py for the whole split")
    return all(stored)


def walked_scores(rw, scores, k, stored_bg):
    """The CAM-file arrays of a walk: class channels divided by their common max (as IRN
    thresholds them); a stored background channel keeps its ratio to the classes."""
    out = {}
    for name, x in (("cam", rw), ("hr_cam", scores)):
        classes = x[len(x) - k:]
        scale = max(float((x if stored_bg else classes).max(initial=0)), 1e-12)
        out[name] = classes / scale
        if stored_bg:
            out[f"{name}_bg"] = x[0] / scale
    return out


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    cfg = resolve_config(args)
    infer, data = cfg["infer"], cfg["data"]
    out = Path(args.out or Path(args.exp) / "pseudo" / args.split)
    for folder in (out, args.save_rw):  # what a killed run left mid-write
        if folder:
            remove_stale_temporaries(folder)
    if not Path(args.cams).is_dir():
        raise ConfigError("CAM folder not found", path=args.cams, fix="run tools/infer_cam.py for this split")
    rank, world = init_distributed()
    device = resolve_device(infer["device"])
    dataset = build_dataset(data["dataset"], data["root"], args.split)
    mine = shard(range(len(dataset)), rank, world)
    done_dir, ext = (Path(args.save_rw), ".npz") if args.scores_only else (out, ".png")
    todo = [i for i in mine if args.overwrite or not (done_dir / f"{dataset.ids[i]}{ext}").is_file()]
    task = stage_task("affinity", cfg)
    net = load_net(task, cfg, args.checkpoint or Path(args.exp) / "checkpoints" / "last.pth", device)
    prepare = functools.partial(task.walk_cams, infer=infer, stride=getattr(net, "stride", 4))
    loader = DataLoader(WalkInputs(dataset, todo, args.cams, prepare), batch_size=int(infer["batch_size"]),
                        num_workers=int(infer["num_workers"]), collate_fn=list)

    def index_maps():
        for items in loader:
            stored = stored_background(items)  # walked in front of the classes, like psa's power background
            for it, (scores, rw) in zip(items, task.walk(net, items, infer, device)):
                if args.save_rw:
                    save_cam(Path(args.save_rw) / f"{it['id']}.npz", it["keys"],
                             **walked_scores(rw, scores, len(it["keys"]), stored))
                if args.scores_only:
                    yield it["id"], 0.0
                    continue
                if infer["bg_alpha"] is None and not stored:
                    scores = pad_background(scores, threshold=float(infer["bg_threshold"]))
                if infer["crf_on"] == "scores":  # pseudo_mask_job: CRF of the scores, then argmax
                    yield it["index"], scores, it["keys"]
                    continue
                index = scores.argmax(0) if len(scores) else np.zeros(scores.shape[1:], np.int64)
                yield it["index"], index.astype(np.uint8), it["keys"]

    state = {"dataset": dataset, "out_dir": out, "crf": infer["crf"]}
    fg = []
    with torch.inference_mode():
        jobs = index_maps() if args.scores_only else parallel_map(pseudo_mask_job, index_maps(),
                                                                   workers=args.workers, state=state)
        for _, frac in tqdm(jobs, total=len(todo), desc=f"random walk {args.split}", disable=rank != 0,
                            dynamic_ncols=True, mininterval=1.0):
            fg.append(frac)
    done, skipped, fg_sum = all_reduce_sum([len(todo), len(mine) - len(todo), sum(fg)], device)
    barrier()
    if rank == 0:
        save_config(cfg | {"rw_cli": {"exp": str(args.exp), "split": args.split, "cams": str(args.cams),
                                      "out": None if args.scores_only else str(out), "save_rw": args.save_rw}},
                    done_dir / "config.yaml")
        bg = f"bg {infer['bg_threshold']}" if infer["bg_alpha"] is None else f"bg alpha {infer['bg_alpha']}"
        if args.scores_only:
            print(f"[infer_rw] {data['dataset']}/{args.split}: {int(done)} walked score files, {int(skipped)} "
                  f"skipped (done before), beta {infer['beta']} logt {infer['logt']} radius {infer['radius']}, "
                  f"{world} process(es), {timer.seconds:.1f}s -> {args.save_rw}")
            return 0
        print(f"[infer_rw] {data['dataset']}/{args.split}: {int(done)} masks, {int(skipped)} skipped (done before), "
              f"beta {infer['beta']} logt {infer['logt']} radius {infer['radius']} {bg}, crf {infer['crf']}, "
              f"fg {100 * fg_sum / max(done, 1):.1f}%, {world} process(es), {timer.seconds:.1f}s -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
