"""One way to train any stage: config -> data -> task -> Trainer -> summary.

``tools/train_cam.py``, ``train_saliency.py``, ``train_affinity.py`` and ``train_seg.py`` are
this module with a registry (``wsss.cams.METHODS``, ``wsss.saliency.SALIENCY_TASKS``,
``wsss.affinity.AFFINITY_TASKS``, ``wsss.segmentation.SEG_TASKS``) and a few stage-specific
arguments::

    parser = train_parser(__doc__, METHODS)
    run = train_stage(parser.parse_args(argv), METHODS, "train_cam")
    # run.cfg (effective, saved as <exp>/config.yaml), run.task, run.trainer, run.summary

The task named by ``--method`` (default: the config's ``method.name``) is looked up in the
registry; its declared options complete ``method`` (a typo is an error listing the known
keys; ``--list-options`` prints them); ``Task.train_dataset(cfg, data)`` builds the training
set and ``Task(cfg, num_classes)`` the networks; the engine trains (a rerun resumes).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

from .cli import Timer, resolve_data
from .config import load_config
from .data.io import remove_stale_temporaries
from .engine.options import format_options
from .errors import ConfigError


#: stage -> (module, registry attribute, task used when a config names none), imported on first use
STAGE_REGISTRIES = {
    "cam": ("wsss.cams", "METHODS", None),
    "saliency": ("wsss.saliency", "SALIENCY_TASKS", None),
    "affinity": ("wsss.affinity", "AFFINITY_TASKS", "irn"),
    "segmentation": ("wsss.segmentation", "SEG_TASKS", "deeplab"),
    "superpixel": ("wsss.superpixel", "SUPERPIXEL_TASKS", None),
}


def stage_registry(stage):
    """The registry of ``stage``'s trainable tasks (``cam``, ``saliency``, ``affinity``,
    ``segmentation``, ``superpixel``): the one place that maps a stage name to its registry."""
    import importlib

    if stage not in STAGE_REGISTRIES:
        raise ConfigError(f"unknown stage {stage!r}", fix=f"use one of {', '.join(STAGE_REGISTRIES)}")
    module, attr, _ = STAGE_REGISTRIES[stage]
    return getattr(importlib.import_module(module), attr)


def stage_task(stage, cfg):
    """The task class of ``stage`` that ``cfg``'s ``method.name`` names (else the stage's default)."""
    name = (cfg.get("method") or {}).get("name") or STAGE_REGISTRIES[stage][2]
    if not name:
        raise ConfigError(f"the config names no {stage} task", fix="set method.name")
    return stage_registry(stage).get(name)


def train_parser(doc, registry, exp_default="", required=("config",)):
    """The arguments every train tool shares; ``required`` are required unless ``--list-options``
    (check them with :func:`check_required`)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default=None,
                   help=f"one of {', '.join(registry.names())} (default: the config's method.name)")
    p.add_argument("--config", default=None, help="configs/<dataset>/<method>.yaml")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the config)")
    p.add_argument("--exp", default=None, help=f"experiment folder (checkpoints, config, metrics){exp_default}")
    p.add_argument("--overwrite", action="store_true", help="train from scratch even if a checkpoint exists")
    p.add_argument("--check-data", action="store_true",
                   help="decode every training image before training (labels and masks are always checked)")
    p.add_argument("--list-options", action="store_true",
                   help="print the method's options (method.*: default, or the config's value) and exit")
    p.add_argument("overrides", nargs="*", help="config overrides key.sub=value")
    p.set_defaults(required=tuple(required))
    return p


def parse_train_args(parser, argv=None):
    """Parse, then require ``parser``'s required arguments unless ``--list-options``."""
    args = parser.parse_args(argv)
    if not args.list_options:
        missing = [f"--{k.replace('_', '-')}" for k in args.required if getattr(args, k) is None]
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
    return args


@dataclass
class TrainRun:
    """What :func:`train_stage` built and trained."""

    cfg: dict
    name: str
    task: object
    trainer: object
    dataset: object
    exp: Path
    summary: dict
    timer: Timer

    def line(self, tool):
        """The one-line summary of the run."""
        s, data = self.summary, self.cfg["data"]
        return (f"[{tool}] {len(self.dataset)} images, {s['epochs']} epochs, {s['steps']} steps, "
                f"loss {s.get('loss', float('nan')):.4f}, {s['seconds']:.1f}s training, wall {self.timer.seconds:.1f}s "
                f"({self.name} on {data['dataset']}/{data['train_split']}) -> {self.exp}")


def task_class(args, registry, cfg, default=None):
    """(name, class) of the task of ``--method``, else ``method.name``, else ``default``."""
    name = args.method or (cfg.get("method") or {}).get("name") or default
    if not name:
        raise ConfigError(f"no {registry.kind} given", path=args.config, fix="pass --method or set method.name")
    return name, registry.get(name)


def list_options(name, task_cls, cfg):
    """Print the task's declared options (with the config's values when a config is given)."""
    print(f"{task_cls.__name__} ({name}): method options (default, or the config's value)")
    for line in format_options(task_cls, {k: v for k, v in (cfg.get("method") or {}).items() if k != "name"}):
        print(f"  {line}")


def train_stage(args, registry, tool, default_method=None, prepare=None, default_exp=None):
    """Train the task of ``registry`` that ``args`` name (see the module docstring).

    ``prepare(cfg)`` adds the tool's own inputs to the config before anything is built (e.g.
    ``method.label_dir``); ``default_exp(cfg)`` names the experiment folder without ``--exp``.
    Returns a :class:`TrainRun`, or None after ``--list-options``."""
    from .data.check import check_split
    from .engine import Trainer, seed_everything

    timer = Timer()
    cfg = load_config(args.config, args.overrides) if args.config else load_config(None, args.overrides)
    name, task_cls = task_class(args, registry, cfg, default_method)
    if args.list_options:
        list_options(name, task_cls, cfg)
        return None
    cfg.setdefault("method", {})["name"] = name
    if prepare is not None:
        prepare(cfg)
    cfg["method"] = task_cls.effective_options(cfg)  # a typo fails here; saved with the experiment
    data = resolve_data(cfg, args.data, args.config)
    data.setdefault("train_split", "train")
    exp = Path(args.exp or cfg.get("exp") or (default_exp(cfg) if default_exp else f"experiments/{data['dataset']}_{name}"))
    cfg["exp"] = str(exp)
    remove_stale_temporaries(exp)  # config, label cache, metrics... a killed run was writing
    seed_everything(int((cfg.get("train") or {}).get("seed", 0)))  # the networks' initialisation
    dataset = task_cls.train_dataset(cfg, data)
    check_split(dataset, exp / "labels", decode=getattr(args, "check_data", False))
    task = task_cls(cfg, dataset.num_classes)
    trainer = Trainer(cfg, task, dataset, exp)
    summary = trainer.fit(resume=not args.overwrite)
    return TrainRun(cfg, name, task, trainer, dataset, exp, summary, timer)
