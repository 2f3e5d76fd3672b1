"""Write saliency maps ``<out>/<id>.png`` (uint8 gray) for a split.

    python tools/infer_saliency.py --exp experiments/ccamh --split train --out experiments/ccamh/saliency/train
    python tools/infer_saliency.py --exp experiments/poolnet --split train --out experiments/poolnet/saliency/train
    python tools/infer_saliency.py --method cam-max --config configs/synthetic/ccam.yaml --split val \
        --out experiments/cam-max/val method.cam_dir=experiments/cam/cams/val

``ccam`` (C2AM-H): scales (``infer.scales``) + flip, threshold ``infer.threshold`` and a
2-label dense CRF (``infer.crf``): 0/255 masks (``infer.binarize=false`` writes the activation
as 0..255). ``poolnet``: ``sigmoid * 255``. ``cam-max`` (training-free baseline): the max over
present classes of the CAMs * 255.

Any folder of ``<id>.png`` 0..255 maps, made here or by another tool, is accepted downstream
(PoolNet's ``method.sal_dir``, the random walk stage, ``tools/evaluate.py --mode saliency``).
Existing PNGs are skipped (``--overwrite`` redoes them); with torchrun each rank writes its
shard of the split; training-free methods (``threshold``: its dCRF) run in ``--workers``
processes. The effective config is saved as ``<out>/config.yaml``.
"""

import argparse
from pathlib import Path

from tqdm import tqdm

from wsss.cli import Timer, run_main
from wsss.config import apply_overrides, load_config, save_config, set_dotted
from wsss.data import build_dataset, detect_dataset
from wsss.data.io import remove_stale_temporaries, save_gray_png
from wsss.engine import is_main, load_checkpoint, resolve_device, shard
from wsss.errors import ConfigError
from wsss.parallel import parallel_map
from wsss.saliency import SALIENCY_METHODS
from wsss.saliency.methods import predict_and_save


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exp", default=None, help="trained experiment folder (reads checkpoints/last.pth and its config)")
    p.add_argument("--method", default=None, help=f"one of {', '.join(SALIENCY_METHODS.names())} "
                                                  "(default: the experiment's)")
    p.add_argument("--config", default=None, help="config for a training-free method (cam-max)")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--split", required=True, help="split to predict, e.g. train, val")
    p.add_argument("--out", required=True, help="output folder of <id>.png maps")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    p.add_argument("--overwrite", action="store_true", help="redo maps that already exist")
    p.add_argument("--workers", type=int, default=1, help="processes for training-free methods (e.g. threshold)")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value (e.g. infer.scales=[1.0])")
    return p.parse_args(argv)


def load_setup(args):
    """(method name, effective config, state_dict or None) from --exp or --config."""
    if args.exp:
        ckpt_path = Path(args.exp) / "checkpoints" / "last.pth"
        ckpt = load_checkpoint(ckpt_path)
        cfg = apply_overrides(ckpt.get("config") or {}, args.overrides)
        name = args.method or (cfg.get("method") or {}).get("name")
        if not name:
            raise ConfigError("the checkpoint's config names no method", path=ckpt_path, fix="pass --method")
        return name, cfg, ckpt
    if not args.method:
        raise ConfigError("pass --exp <trained experiment>, or --method cam-max with --config")
    cfg = load_config(args.config, args.overrides) if args.config else apply_overrides({}, args.overrides)
    return args.method, cfg, None


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    name, cfg, state = load_setup(args)
    method = SALIENCY_METHODS.get(name)()
    if method.task is not None and state is None:
        raise ConfigError(f"method {name!r} must be trained first", fix="pass --exp <experiment folder>")
    set_dotted(cfg, "method.name", name)
    if args.data:
        set_dotted(cfg, "data.root", args.data)
    data = cfg.get("data") or {}
    if not data.get("root"):
        raise ConfigError("data.root is not set", fix="pass --data <root>")
    ds_name = data.get("name") or data.get("dataset") or "auto"
    ds_name = detect_dataset(data["root"]) if ds_name == "auto" else ds_name
    dataset = build_dataset(ds_name, data["root"], args.split)
    out = Path(args.out)
    remove_stale_temporaries(out)  # what a killed run left mid-write
    out.mkdir(parents=True, exist_ok=True)
    if is_main():
        save_config({**cfg, "infer_run": {"split": args.split, "out": str(out), "exp": args.exp}}, out / "config.yaml")

    index = {image_id: i for i, image_id in enumerate(dataset.ids)}
    mine = shard(dataset.ids)
    todo = [i for i in mine if args.overwrite or not (out / f"{i}.png").is_file()]
    batch = max(1, int((cfg.get("infer") or {}).get("batch_size", 1)))
    if todo and method.task is None and args.workers > 1:
        job = {"dataset": ds_name, "root": data["root"], "split": args.split, "method": name, "cfg": cfg,
               "out": str(out)}
        for _ in tqdm(parallel_map(predict_and_save, todo, workers=args.workers, state=job), total=len(todo),
                      desc=f"saliency {name}", unit="img", dynamic_ncols=True, mininterval=1.0):
            pass
    elif todo:
        predict = method.predictor(cfg, state, resolve_device(args.device))
        bar = tqdm(total=len(todo), desc=f"saliency {name}", unit="img", dynamic_ncols=True, mininterval=1.0)
        for start in range(0, len(todo), batch):
            samples = [dataset[index[i]] for i in todo[start:start + batch]]
            for sample, png in zip(samples, predict(samples)):
                save_gray_png(out / f"{sample['id']}.png", png)
            bar.update(len(samples))
        bar.close()
    print(f"infer_saliency {name}: {len(todo)} written, {len(mine) - len(todo)} existing kept, "
          f"{len(mine)} images of {ds_name}/{args.split} in {timer.seconds:.1f} s -> {out}")
    return 0


if __name__ == "__main__":
    run_main(main)
