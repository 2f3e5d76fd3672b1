"""Model selection for the segmentation stage: validate after every epoch, keep the best weights.

The default protocol never looks at ground truth: a deterministic held-out part of the training
split (:func:`holdout_ids`) is scored against its PSEUDO masks. Selecting against ground truth
(``select_on="gt"``) is a different, optimistic protocol; it is recorded in every output.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data.io import write_json
from ..engine import distributed as du
from ..engine.checkpoint import save_checkpoint
from ..engine.metrics import MetricsLog
from ..errors import ConfigError
from ..metrics.confusion import confusion_matrix
from ..metrics.miou import summarize_confusion
from .inference import multiscale_logits

SELECT_ON = ("pseudo", "gt", "none")


def holdout_ids(ids, fraction):
    """A deterministic ``fraction`` of ``ids`` (at least one): the ids with the smallest MD5.

    Independent of list order and of the other ids' presence, so it is stable across runs.
    """
    if not 0 < fraction < 1:
        raise ConfigError(f"select.holdout={fraction} must be in (0, 1)", fix="e.g. select.holdout=0.05")
    n = max(1, int(round(len(ids) * fraction)))
    if n >= len(ids):
        raise ConfigError(f"select.holdout={fraction} leaves no training image out of {len(ids)}",
                          fix="lower select.holdout")
    return sorted(ids, key=lambda i: hashlib.md5(i.encode()).hexdigest())[:n]


@torch.no_grad()
def evaluate_model(model, dataset, transform, num_outputs, device, scales=(1.0,), flip=False, desc="val"):
    """Confusion matrix ``(K, K + 1)`` of ``model``'s argmax against ``dataset``'s masks.

    ``dataset`` yields raw samples (no transform); ``transform`` prepares the network input.
    Logits are brought back to the mask's size when the transform resized the image.
    """
    was_training = model.training
    model.eval()
    conf = np.zeros((num_outputs, num_outputs + 1), dtype=np.int64)
    for i in tqdm(range(len(dataset)), desc=desc, leave=False, dynamic_ncols=True, mininterval=1.0):
        sample = dataset[i]
        image = transform(sample)["image"].to(device)
        logits = multiscale_logits(model, image, scales, flip)
        mask = sample["mask"]
        if tuple(logits.shape[-2:]) != mask.shape:
            logits = F.interpolate(logits[None], size=mask.shape, mode="bilinear", align_corners=False)[0]
        pred = logits.argmax(0).to(torch.uint8).cpu().numpy()
        conf += confusion_matrix(mask, pred, num_outputs)
    model.train(was_training)
    return conf


class ModelSelector:
    """Callable ``(task, epoch, step)``: score ``task.model`` on the selection set, keep the best.

    Writes ``selection.json`` (every epoch's score; epochs already scored are skipped on resume),
    ``checkpoints/best.pth`` (``state_dict`` of the task, ``config``, ``epoch``, ``step``,
    ``selection``) and a ``{"kind": "val", ...}`` record in ``metrics.jsonl``. Epoch 0 (the
    initial weights) is scored as the baseline but never selected. Runs on rank 0 only.
    ``log`` (e.g. the engine's, which also feeds its experiment loggers) replaces the own
    ``metrics.jsonl`` writer.
    """

    def __init__(self, exp_dir, dataset, transform, select_on, class_names, device, cfg=None,
                 scales=(1.0,), flip=False, describe="", log=None):
        if select_on not in ("pseudo", "gt"):
            raise ConfigError(f"select_on={select_on!r}", fix="use pseudo or gt")
        self.exp_dir = Path(exp_dir)
        self.dataset, self.transform = dataset, transform
        self.select_on, self.class_names = select_on, ["background", *class_names]
        self.device, self.cfg = device, cfg
        self.scales, self.flip = tuple(scales), bool(flip)
        self.describe = describe
        self.state_path = self.exp_dir / "selection.json"
        self.best_path = self.exp_dir / "checkpoints" / "best.pth"
        self.log = log or MetricsLog(self.exp_dir / "metrics.jsonl", enabled=du.is_main()).write
        self.state = self._load_state()

    def _load_state(self):
        fresh = {"select_on": self.select_on, "set": self.describe, "images": len(self.dataset),
                 "epochs": {}, "best_epoch": None, "best_miou": None}
        if not self.state_path.is_file():
            return fresh
        state = json.loads(self.state_path.read_text())
        if state.get("select_on") != self.select_on or state.get("set") != self.describe:
            raise ConfigError(f"this experiment selected models on {state.get('select_on')} ({state.get('set')}), "
                              f"now asked for {self.select_on} ({self.describe})", path=self.state_path,
                              fix="keep the same --select-on, or retrain with --overwrite")
        return state

    def reset(self):
        """Forget earlier scores and the best checkpoint (a training run from scratch)."""
        if du.is_main():
            for p in (self.state_path, self.best_path):
                if p.is_file():
                    p.unlink()
        self.state = self._load_state()

    @property
    def scores(self):
        """``{epoch: mIoU}`` of every scored epoch."""
        return {int(e): v["miou"] for e, v in self.state["epochs"].items()}

    def __call__(self, task, epoch, step):
        if du.is_main() and str(epoch) not in self.state["epochs"]:
            self._score(task, int(epoch), int(step))
        du.barrier()

    def _score(self, task, epoch, step):
        conf = evaluate_model(task.model, self.dataset, self.transform, task.num_outputs, self.device,
                              self.scales, self.flip, desc=f"select ({self.select_on}) epoch {epoch}")
        s = summarize_confusion(conf, self.class_names)
        miou = round(s["miou"], 4)
        best = self.state["best_miou"]
        if epoch >= 1 and (best is None or miou > best):
            save_checkpoint(self.best_path, {
                "state_dict": task.state_dict(), "config": self.cfg, "epoch": epoch, "step": step,
                "selection": {"select_on": self.select_on, "set": self.describe, "miou": miou}})
            self.state.update(best_epoch=epoch, best_miou=miou)
        self.state["epochs"][str(epoch)] = {"step": step, "miou": miou}
        write_json(self.state_path, self.state)
        self.log({"kind": "val", "epoch": epoch, "step": step, "select_on": self.select_on,
                  "set": self.describe, "miou": miou,
                  "iou": {k: round(v["iou"], 4) for k, v in s["per_class"].items()}})
        tag = " (best)" if self.state["best_epoch"] == epoch else ""
        print(f"[select] epoch {epoch}: mIoU {miou:.2f} on {self.describe}{tag}", flush=True)
