"""The one training loop of every trainable stage (CAM methods, saliency, affinity, segmentation).

``Trainer(cfg, task, train_dataset, exp_dir).fit(resume=True)``:

- ``train.batch_size`` is the effective batch of one optimizer step, summed over GPUs and
  accumulated micro-batches: each rank loads ``batch_size / (world_size * accumulate)``
  images per micro-batch, so a config reproduces the same recipe on any number of GPUs
  (losses that couple a micro-batch's images gather it from every rank: ``distributed.all_gather_grad``).
- one optimizer per name of ``task.param_groups()``; per step: poly lr on every group,
  zero every optimizer, ``accumulate`` forward/backward passes of ``loss / accumulate``
  (DDP synchronises on the last), step every optimizer. ``step`` counts optimizer steps.
  (References that SUM micro-batch gradients, as P-NOC's, take the same SGD step at
  ``accumulate x lr`` and ``weight_decay / accumulate``: docs/methods/pnoc.md.)
- data order and augmentation are reproducible from ``train.seed``: the sampler shuffles
  with (seed, epoch) and the loader generator that seeds workers is reset each epoch.
- ``checkpoints/last.pth`` is written atomically after every epoch with the optimizer,
  scaler and RNG states of every rank, so ``fit(resume=True)`` after a kill continues
  exactly as if the run had never stopped (at epoch granularity: a partial epoch reruns).
- the task's hooks: ``on_train_start(ctx, resumed)`` once (also for a finished run),
  ``on_epoch_start(ctx)``, ``on_epoch_end(ctx)`` (before the epoch's checkpoint); ``ctx.log``
  writes a record to ``metrics.jsonl`` and the loggers. ``task.epoch_batch_size(epoch, train.batch_size)`` may change the batch
  at epoch boundaries (phases): the loader is rebuilt for each micro-batch size and ``max_step``
  sums the steps of every epoch, so poly schedules and resume stay exact across phases;
  ``task.lr_schedule_steps(epoch_steps)`` (default: that sum) is the poly schedule's length.
- ``train.loggers`` (e.g. ``[tensorboard]``) mirror ``metrics.jsonl`` to optional loggers
  (:mod:`wsss.engine.loggers`).
- AMP (``train.amp``: ``bf16``/``fp16``) and ``channels_last`` apply on CUDA only.
- losses that couple the images of a batch (C2AM's similarity matrices, the CSE soft mask's
  batch maximum) see only each rank's micro-batch under DDP (``batch_size / (world_size x
  accumulate)`` images), not the whole batch as the references' DataParallel does: such a
  recipe is not yet the same on 1 and N GPUs.
"""

import contextlib
import copy
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from ..config import merge, save_config
from ..errors import CheckpointError, ConfigError
from . import distributed as du
from .checkpoint import FORMAT, load_checkpoint, load_weights, save_checkpoint
from .loggers import build_loggers
from .metrics import MetricsLog
from .module import StepContext
from .optim import build_optimizer, optimizer_settings, set_poly_lr
from .seed import get_rng_state, loader_seed, seed_everything, set_rng_state, worker_init_fn

TRAIN_DEFAULTS = {
    "epochs": 15,
    "batch_size": 32,
    "accumulate": 1,
    "lr": 0.1,
    "weight_decay": 1e-4,
    "momentum": 0.9,
    "nesterov": False,
    "poly_power": 0.9,
    "amp": "none",
    "channels_last": True,
    "num_workers": 4,
    "optimizers": {},
    "seed": 0,
    "log_every": 10,
    "device": "auto",
    "deterministic": False,
    "loggers": [],
}

AMP_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def default_collate_fn():
    """The data layer's ``collate`` (imported lazily so the engine does not need wsss.data)."""
    from ..data import collate

    return collate


def to_device(obj, device, channels_last=False):
    """Move every tensor of a (nested) batch to ``device``; 4-D float tensors optionally NHWC."""
    if torch.is_tensor(obj):
        if channels_last and obj.ndim == 4 and obj.is_floating_point():
            return obj.to(device, memory_format=torch.channels_last, non_blocking=True)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device, channels_last) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and any(torch.is_tensor(v) for v in obj):
        return type(obj)(to_device(v, device, channels_last) for v in obj)
    return obj


def _scalar(v):
    if torch.is_tensor(v):
        return v.detach().float().mean()
    return torch.tensor(float(v))


def _diff_keys(a, b, prefix=""):
    """Dotted keys whose values differ between two nested dicts."""
    out = []
    for k in sorted(set(a) | set(b), key=str):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff_keys(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}")
    return out


def effective_train_config(cfg):
    """``cfg`` with ``train`` completed by :data:`TRAIN_DEFAULTS` and validated."""
    cfg = copy.deepcopy(cfg)
    t = cfg["train"] = merge(TRAIN_DEFAULTS, cfg.get("train") or {})
    if t["amp"] not in AMP_DTYPES:
        raise ConfigError(f"train.amp={t['amp']!r}", fix=f"use one of {', '.join(AMP_DTYPES)}")
    for key in ("epochs", "batch_size", "accumulate", "log_every"):
        if not isinstance(t[key], int) or t[key] < 1:
            raise ConfigError(f"train.{key}={t[key]!r} must be a positive integer")
    if not isinstance(t["loggers"], (list, tuple)):
        raise ConfigError(f"train.loggers={t['loggers']!r} must be a list", fix="e.g. train.loggers=[tensorboard]")
    return cfg


class Trainer:
    """Train ``task`` on ``train_dataset``; writes ``exp_dir/{config.yaml, metrics.jsonl,
    checkpoints/last.pth}``. See the module docstring for the semantics."""

    def __init__(self, cfg, task, train_dataset, exp_dir, collate_fn=None):
        self.cfg = effective_train_config(cfg)
        t = self.cfg["train"]
        self.rank, self.world_size = du.init_distributed()
        self.is_main = self.rank == 0
        self.device = du.resolve_device(t["device"])
        cuda = self.device.type == "cuda"
        if cuda:
            torch.backends.cudnn.benchmark = not t["deterministic"]
            torch.backends.cudnn.deterministic = bool(t["deterministic"])
        self.amp_dtype = AMP_DTYPES[t["amp"]] if cuda else None
        self.channels_last = bool(t["channels_last"]) and cuda
        self.exp_dir = Path(exp_dir)
        self.ckpt_path = self.exp_dir / "checkpoints" / "last.pth"
        self.metrics = MetricsLog(self.exp_dir / "metrics.jsonl", enabled=self.is_main)

        self.task = task.to(self.device)
        if self.channels_last:
            self.task = self.task.to(memory_format=torch.channels_last)

        self.train_dataset = train_dataset
        self.collate_fn = collate_fn or default_collate_fn()
        self.sampler = DistributedSampler(train_dataset, num_replicas=self.world_size, rank=self.rank,
                                          shuffle=True, seed=int(t["seed"]), drop_last=True)
        self.generator = torch.Generator()
        self._loaders = {}
        self.micro_batches, self.epoch_steps = self._phases()
        self.micro_batch, self.steps_per_epoch = self.micro_batches[0], self.epoch_steps[0]
        self.max_step = sum(self.epoch_steps)
        self.poly_steps = self.task.lr_schedule_steps(list(self.epoch_steps))
        if not isinstance(self.poly_steps, int) or self.poly_steps < 1:
            raise ConfigError(f"{type(task).__name__}.lr_schedule_steps returned {self.poly_steps!r}",
                              fix="return a positive number of optimizer steps")

        groups = self.task.param_groups()
        self.optimizers = {name: build_optimizer(name, g, optimizer_settings(t, name)) for name, g in groups.items()}
        # Hyper-parameters from the current config win over those stored in a checkpoint.
        self._group_settings = {n: [{k: v for k, v in g.items() if k != "params"} for g in o.param_groups]
                                for n, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler("cuda", enabled=cuda and t["amp"] == "fp16")

        self.model = self.task
        if self.world_size > 1:
            unused = t.get("find_unused_parameters", self.task.find_unused_parameters)
            self.model = DistributedDataParallel(self.task, device_ids=[self.device.index] if cuda else None,
                                                 find_unused_parameters=bool(unused))
        self.epoch = 0
        self.step = 0
        self.train_seconds = 0.0
        self.last_epoch_metrics = {}
        self.loggers = build_loggers(t["loggers"], self.exp_dir, self.cfg) if self.is_main else []

    # ------------------------------------------------------------------ public
    def fit(self, resume=True):
        """Train to ``train.epochs``; resume from ``checkpoints/last.pth`` when it exists and
        ``resume`` (a finished run returns at once). Returns a summary dict."""
        t = self.cfg["train"]
        resumed = resume and self.ckpt_path.is_file()
        if resumed:
            self._restore(load_checkpoint(self.ckpt_path))
        else:
            self.metrics.reset()
            seed_everything(int(t["seed"]) + self.rank)
        if self.is_main:
            save_config(self.cfg, self.exp_dir / "config.yaml")
        du.barrier()
        for logger in self.loggers:
            logger.start(resumed, self.step)
        try:
            self.task.on_train_start(self.context(self.epoch), resumed)
            if self.epoch >= t["epochs"]:
                self._print(f"[train] {self.exp_dir}: already trained ({self.epoch} epochs, {self.step} steps)")
                return self.summary()
            for epoch in range(self.epoch, t["epochs"]):
                self._train_epoch(epoch)
                self.epoch = epoch + 1
                self.task.on_epoch_end(self.context(epoch))
                self._save()
        finally:
            for logger in self.loggers:
                logger.close()
        self._print(f"[train] done: {self.epoch} epochs, {self.step} steps, {self.train_seconds:.1f}s, "
                    f"loss {self.last_epoch_metrics.get('loss', float('nan')):.4f} -> {self.ckpt_path}")
        return self.summary()

    def summary(self):
        return {"epochs": self.epoch, "steps": self.step, "seconds": self.train_seconds, **self.last_epoch_metrics}

    def context(self, epoch, micro=0):
        """The :class:`StepContext` of ``epoch`` (0-based; ``train.epochs`` once training is done)."""
        t = self.cfg["train"]
        phase = min(epoch, t["epochs"] - 1)
        return StepContext(step=self.step, max_step=self.max_step, epoch=epoch, epochs=t["epochs"],
                           steps_per_epoch=self.epoch_steps[phase], micro=micro, accumulate=t["accumulate"],
                           rank=self.rank, world_size=self.world_size, device=self.device, cfg=self.cfg,
                           batch_size=self.micro_batches[phase] * self.world_size * t["accumulate"],
                           exp_dir=self.exp_dir, log=self._log)

    def loader(self, micro_batch):
        """The training loader for ``micro_batch`` images per rank and forward pass (built once
        per size; every epoch reseeds its sampler and generator)."""
        if micro_batch not in self._loaders:
            t = self.cfg["train"]
            self._loaders[micro_batch] = DataLoader(
                self.train_dataset, batch_size=micro_batch, sampler=self.sampler, num_workers=int(t["num_workers"]),
                collate_fn=self.collate_fn, pin_memory=self.device.type == "cuda", drop_last=True,
                worker_init_fn=worker_init_fn, generator=self.generator)
        return self._loaders[micro_batch]

    # ----------------------------------------------------------------- private
    def _phases(self):
        """Per epoch: the micro-batch per rank and the optimizer steps (the task's batch sizes)."""
        t = self.cfg["train"]
        per_step = self.world_size * t["accumulate"]
        micro, steps = [], []
        for epoch in range(t["epochs"]):
            batch = self.task.epoch_batch_size(epoch, t["batch_size"])
            if not isinstance(batch, int) or batch < 1 or batch % per_step:
                raise ConfigError(
                    f"the batch size {batch!r} of epoch {epoch + 1} is not divisible by world_size x accumulate "
                    f"= {per_step}", fix="choose a batch size that splits evenly over GPUs and accumulation steps")
            micro.append(batch // per_step)
            steps.append(len(self.sampler) // micro[-1] // t["accumulate"])
            if steps[-1] < 1:
                raise ConfigError(f"the training set has {len(self.train_dataset)} images, fewer than one batch "
                                  f"({batch}) of epoch {epoch + 1}", fix="lower train.batch_size or check the split")
        return micro, steps

    def _log(self, record):
        self.metrics.write(record)
        for logger in self.loggers:
            logger.log(record)

    def _print(self, msg):
        if self.is_main:
            print(msg, flush=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def _lrs(self):
        out = {}
        for i, (name, opt) in enumerate(self.optimizers.items()):
            out["lr" if i == 0 else f"lr/{name}"] = opt.param_groups[0]["lr"]
        return out

    def _train_epoch(self, epoch):
        t = self.cfg["train"]
        accumulate = t["accumulate"]
        self.task.train()
        self.sampler.set_epoch(epoch)
        self.generator.manual_seed(loader_seed(t["seed"], epoch, self.rank))
        self.micro_batch, self.steps_per_epoch = self.micro_batches[epoch], self.epoch_steps[epoch]
        self.task.on_epoch_start(self.context(epoch))
        start = time.perf_counter()
        epoch_sums, window, n_window = {}, {}, 0
        it = iter(self.loader(self.micro_batches[epoch]))
        bar = tqdm(range(self.steps_per_epoch), desc=f"epoch {epoch + 1}/{t['epochs']}", disable=not self.is_main,
                   dynamic_ncols=True, mininterval=1.0, leave=False)
        for i in bar:
            for opt in self.optimizers.values():
                set_poly_lr(opt, self.step, self.poly_steps, t["poly_power"])
                opt.zero_grad(set_to_none=True)
            step_vals = {}
            for micro in range(accumulate):
                batch = to_device(next(it), self.device, self.channels_last)
                ctx = self.context(epoch, micro)
                last = micro == accumulate - 1
                sync = contextlib.nullcontext() if last or self.model is self.task else self.model.no_sync()
                with sync:
                    with self._autocast():
                        out = self.model(batch, ctx)
                    if not isinstance(out, dict) or "loss" not in out:
                        raise TypeError(f"{type(self.task).__name__}.training_step must return a dict with 'loss'")
                    self.scaler.scale(out["loss"] / accumulate).backward()
                for k, v in out.items():
                    step_vals[k] = step_vals.get(k, 0.0) + _scalar(v) / accumulate
            for opt in self.optimizers.values():
                # An optimizer none of whose parameters got a gradient this step is skipped
                # (GradScaler refuses to step it; plain SGD would skip every parameter anyway).
                if any(p.grad is not None for g in opt.param_groups for p in g["params"]):
                    self.scaler.step(opt)
            self.scaler.update()
            lrs = self._lrs()
            self.step += 1
            for k, v in step_vals.items():
                epoch_sums[k] = epoch_sums.get(k, 0.0) + v
                window[k] = window.get(k, 0.0) + v
            n_window += 1
            if self.step % t["log_every"] == 0 or i == self.steps_per_epoch - 1:
                means = {k: float(v) / n_window for k, v in window.items()}
                if not torch.isfinite(torch.tensor(means["loss"])):
                    raise ConfigError(f"the loss became {means['loss']} at step {self.step}",
                                      fix="lower train.lr, or use train.amp=none/bf16")
                self._log({"kind": "step", "epoch": epoch + 1, "step": self.step, **lrs, **means,
                           "time": round(time.perf_counter() - start, 3)})
                bar.set_postfix(loss=f"{means['loss']:.4f}")
                window, n_window = {}, 0
        del it
        bar.close()
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        keys = sorted(epoch_sums)
        totals = du.all_reduce_sum([float(epoch_sums[k]) for k in keys], self.device)
        n = self.steps_per_epoch * self.world_size
        self.last_epoch_metrics = {k: v / n for k, v in zip(keys, totals)}
        self._log({"kind": "epoch", "epoch": epoch + 1, "step": self.step, **self.last_epoch_metrics,
                   "seconds": round(seconds, 3)})
        scalars = " ".join(f"{k} {v:.4f}" for k, v in self.last_epoch_metrics.items())
        self._print(f"[train] epoch {epoch + 1}/{t['epochs']} step {self.step}/{self.max_step} {scalars} "
                    f"({seconds:.1f}s)")

    def _save(self):
        rng = du.all_gather_object(get_rng_state())
        if self.is_main:
            save_checkpoint(self.ckpt_path, {
                "format": FORMAT,
                "state_dict": self.task.state_dict(),
                "config": self.cfg,
                "epoch": self.epoch,
                "step": self.step,
                "optimizers": {n: o.state_dict() for n, o in self.optimizers.items()},
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "world_size": self.world_size,
                "train_seconds": self.train_seconds,
                "metrics": self.last_epoch_metrics,
            })
        du.barrier()

    def _restore(self, ckpt):
        path = self.ckpt_path
        if ckpt.get("format") != FORMAT:
            raise CheckpointError("not a wsss training checkpoint", path=path,
                                  fix="delete it or train with --overwrite")
        changed = _diff_keys(ckpt.get("config") or {}, self.cfg)
        if changed:
            self._print(f"[train] note: config differs from the checkpoint's in {', '.join(changed[:8])}")
        load_weights(self.task, ckpt, strict=True, path=path)
        for name, opt in self.optimizers.items():
            if name not in ckpt["optimizers"]:
                raise CheckpointError(f"checkpoint has no state for optimizer {name!r}", path=path,
                                      fix="train from scratch with --overwrite")
            try:
                opt.load_state_dict(ckpt["optimizers"][name])
            except (ValueError, KeyError) as e:
                raise CheckpointError(f"optimizer {name!r} state does not fit ({e})", path=path,
                                      fix="train from scratch with --overwrite") from None
            for g, fresh in zip(opt.param_groups, self._group_settings[name]):
                g.update(fresh)
        if ckpt.get("scaler"):
            self.scaler.load_state_dict(ckpt["scaler"])
        rng = ckpt.get("rng") or []
        if len(rng) == self.world_size:
            set_rng_state(rng[self.rank])
        else:
            self._print(f"[train] note: checkpoint was written by {len(rng)} ranks, now {self.world_size}: "
                        "data order continues, augmentation randomness is reseeded")
            seed_everything(int(self.cfg["train"]["seed"]) + 7919 * (ckpt["epoch"] + 1) + self.rank)
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.train_seconds = float(ckpt.get("train_seconds", 0.0))
        self.last_epoch_metrics = dict(ckpt.get("metrics") or {})
        self.metrics.truncate(self.step)
        self._print(f"[train] resumed {path} at epoch {self.epoch}, step {self.step}")
