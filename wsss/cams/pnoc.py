"""P-OC and P-NOC (``--method poc`` / ``--method pnoc``): Puzzle-CAM plus class-specific erasing
judged by an ordinary classifier (OC), which P-NOC also trains adversarially.

Networks: the CAM generator ``net`` (the CAM classifier, as Puzzle-CAM) and the ordinary
classifier ``oc`` (same kind of classifier; every BatchNorm frozen, statistics AND affine
parameters, as P-NOC's "fix" mode: ``norm_mode: frozen_affine``), whose weights come from a
finished vanilla-CAM experiment ``method.oc_exp`` (trained with RandAugment + label smoothing,
``configs/<dataset>/oc.yaml``). Per step, with ``r`` one class drawn uniformly from each image's
labels (:mod:`wsss.cams.erasing`):

    L_f   = MLSM(GAP(A), y~) + MLSM(GAP(A_m), y~) + alpha_p * mean(|A - A_m| * y)
            + lambda_cse * MLSM(oc(x * (1 - soft(A, r))), smooth(y without r))
    L_noc = lambda_noc * MLSM(oc(x * [hard(A.detach(), r) <= delta_noc]), y~)     (P-NOC only)

``soft`` normalises by the batch maximum, ``hard`` by each image's maximum. Schedules (linear
in the training progress, P-NOC's ``linear_schedule``): ``alpha_p`` 0 -> 4 over the first half,
``lambda_cse`` 0.3 -> 1 and ``lambda_noc`` 0 -> 1 over the whole run; ``delta_noc`` = 0.2.

The reference takes two optimizer steps per batch (f on L_f, then oc on L_noc). The engine
backpropagates one ``loss`` and steps every optimizer; ``loss = L_f + L_noc`` is the same thing
because the CSE term reaches oc through :func:`wsss.engine.frozen_call` (gradient to the erased
image and so to f, none to oc's weights) and the NOC term's image is detached (nothing to f):
f's gradient is exactly that of L_f, oc's exactly that of L_noc, and both are computed from the
pre-step weights, as in the reference (the NOC step uses the A of the f step, detached, and oc
has not moved yet). ``tests/test_cams_pnoc.py`` checks this against two explicit backwards.

Quirk of the reference (P-NOC's ``train_pnoc.py``): oc's gradients are not zeroed between the
two steps, so ``lambda_cse * o_loss`` also trains oc (towards NOT seeing the erased class,
against the NOC objective). ``method.leak_cse_grad_to_oc: true`` reproduces it (the CSE term
then calls oc directly); the default, as the paper describes the method, is false.

``method`` keys: ``oc_exp`` (required for training), ``oc_model`` (overrides of ``model`` for
the OC's architecture; default: the same as f, as the reference), ``lambda_cse`` (1.0),
``lambda_cse_init`` (0.3), ``lambda_cse_schedule`` (1.0), ``lambda_noc`` (1.0),
``lambda_noc_init`` (0.0), ``lambda_noc_schedule`` (1.0), ``delta_noc`` (0.2),
``leak_cse_grad_to_oc`` (false), ``puzzle`` (true; false drops the Puzzle terms: OC-CSE's loss,
an ablation), plus Puzzle's ``num_pieces``/``alpha``/``alpha_schedule`` and ``label_smoothing``.
The NOC optimizer is named ``noc``: ``train.optimizers.noc.lr`` sets its
learning rate (the reference's ``lr_alpha_oc`` = 1: same lr as f).

See docs/methods/pnoc.md (P-NOC, the OC) and docs/methods/poc.md.
"""

import contextlib
from pathlib import Path

from ..config import read_yaml
from ..engine import frozen_call, load_checkpoint, load_weights, param_groups_4
from ..errors import CheckpointError, ConfigError
from .base import METHODS
from .classifier import Classifier
from .erasing import hard_keep, linear_schedule, remove_class, sample_classes, soft_mask
from .losses import mlsm
from .puzzle import PuzzleCAM

#: architecture keys of ``model`` that decide whether an OC checkpoint fits
ARCH_KEYS = ("backbone", "backbone_kwargs")


@contextlib.contextmanager
def module_mode(module, training):
    """Temporarily put ``module`` in train (``True``) or eval (``False``) mode."""
    before = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(before)


def oc_model_config(cfg):
    """The OC's ``model`` section: ``cfg["model"]`` <- ``method.oc_model``, BatchNorm frozen
    (running statistics and affine parameters: P-NOC builds the OC with ``mode="fix"``, whose BN
    weight and bias get ``requires_grad=False``, so the NOC optimizer never moves them) and no
    backbone weights to load (they come from the OC experiment)."""
    over = (cfg.get("method") or {}).get("oc_model") or {}
    if not isinstance(over, dict):
        raise ConfigError("method.oc_model must be a mapping of model keys",
                          fix="e.g. method.oc_model.backbone=resnet50")
    return {**(cfg.get("model") or {}), **over, "norm_mode": "frozen_affine", "weights": None}


def oc_checkpoint_path(exp_dir):
    return Path(exp_dir) / "checkpoints" / "last.pth"


def check_oc_experiment(exp_dir, model_cfg):
    """Validate a finished classifier experiment for use as the OC; returns its checkpoint path.

    Raises :class:`CheckpointError` when the folder, its ``config.yaml`` or its checkpoint is
    missing, when its training has not finished, or when its architecture differs from
    ``model_cfg`` (the OC this method builds)."""
    if not exp_dir:
        raise ConfigError("P-OC/P-NOC need an ordinary classifier: method.oc_exp is not set",
                          fix="train one (tools/train_cam.py --config configs/<dataset>/oc.yaml --exp DIR) "
                              "and pass method.oc_exp=DIR")
    exp_dir = Path(exp_dir)
    cfg_path, ckpt = exp_dir / "config.yaml", oc_checkpoint_path(exp_dir)
    if not cfg_path.is_file() or not ckpt.is_file():
        raise CheckpointError("not a finished CAM experiment (config.yaml or checkpoints/last.pth missing)",
                              path=exp_dir, fix="train the ordinary classifier first: tools/train_cam.py "
                                                f"--config configs/<dataset>/oc.yaml --exp {exp_dir}")
    trained = read_yaml(cfg_path).get("model") or {}
    differ = [k for k in ARCH_KEYS if (trained.get(k) or None) != (model_cfg.get(k) or None)]
    if differ:
        got = ", ".join(f"{k}={trained.get(k)!r}" for k in differ)
        want = ", ".join(f"{k}={model_cfg.get(k)!r}" for k in differ)
        raise CheckpointError(f"the ordinary classifier was trained with {got}, this run builds it with {want}",
                              path=cfg_path, fix="set method.oc_model to the OC's architecture "
                                                 "(e.g. method.oc_model.backbone=...) or train a matching OC")
    return ckpt


def load_oc_weights(oc, exp_dir):
    """Load the classifier ``net`` of a finished CAM experiment into ``oc``."""
    path = oc_checkpoint_path(exp_dir)
    ckpt = load_checkpoint(path)
    epochs = ((ckpt.get("config") or {}).get("train") or {}).get("epochs")
    if epochs is not None and int(ckpt.get("epoch", 0)) < int(epochs):
        raise CheckpointError(f"the ordinary classifier's training is not finished (epoch {ckpt.get('epoch')} "
                              f"of {epochs})", path=path,
                              fix=f"finish it: tools/train_cam.py --config {Path(exp_dir) / 'config.yaml'} "
                                  f"--exp {exp_dir}")
    state = {k[len("net."):]: v for k, v in (ckpt.get("state_dict") or {}).items() if k.startswith("net.")}
    if not state:
        raise CheckpointError("checkpoint holds no classifier 'net' (not a cam/puzzle experiment)", path=path,
                              fix="point method.oc_exp to a vanilla CAM experiment (configs/<dataset>/oc.yaml)")
    return load_weights(oc, state, strict=True, path=path)


@METHODS.register("poc")
class PuzzleOC(PuzzleCAM):
    """P-OC: Puzzle-CAM + class-specific erasing judged by a fixed ordinary classifier ``oc``."""

    name = "poc"
    #: whether ``oc`` is trained (P-NOC) or frozen (P-OC)
    trains_oc = False

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.method_cfg
        self.oc_exp = m.get("oc_exp")
        self.oc_model = oc_model_config(cfg)
        self.lambda_cse = (float(m.get("lambda_cse_init", 0.3)), float(m.get("lambda_cse", 1.0)),
                           float(m.get("lambda_cse_schedule", 1.0)))
        self.leak_cse_grad = bool(m.get("leak_cse_grad_to_oc", False))
        self.use_puzzle = bool(m.get("puzzle", True))
        self.oc = Classifier.from_config({"model": self.oc_model}, num_classes)
        if not self.trains_oc:  # P-NOC trains every OC parameter except the frozen BN affines
            self.oc.requires_grad_(False)
        self.oc.eval()

    # -------------------------------------------------------------- ordinary classifier
    @classmethod
    def train_dataset(cls, cfg, name, root, split):
        # called by tools/train_cam.py before anything heavy: fail early on a bad OC experiment
        check_oc_experiment((cfg.get("method") or {}).get("oc_exp"), oc_model_config(cfg))
        return super().train_dataset(cfg, name, root, split)

    def load_oc(self, exp_dir=None):
        """Load the OC's weights from ``exp_dir`` (default ``method.oc_exp``)."""
        exp_dir = exp_dir or self.oc_exp
        check_oc_experiment(exp_dir, self.oc_model)
        load_oc_weights(self.oc, exp_dir)

    def on_epoch_start(self, ctx):
        # A fresh run loads the OC here; a resumed one got it (P-NOC: trained) from its own
        # checkpoint, and inference never needs the OC experiment.
        if ctx.epoch == 0 and ctx.step == 0:
            self.load_oc()

    def train(self, mode=True):
        super().train(mode)
        self.oc.eval()  # the reference keeps oc in eval mode except during the NOC step
        return self

    # ----------------------------------------------------------------------- schedules
    def lambda_cse_at(self, ctx):
        return linear_schedule(ctx.step, ctx.max_step, *self.lambda_cse)

    # -------------------------------------------------------------------------- losses
    def cse_loss(self, images, cams, classes, labels):
        """MLSM of the OC on the softly erased images against the smoothed labels without the
        erased class. Gradients reach f through the mask; oc's weights get none unless
        ``leak_cse_grad_to_oc``."""
        erased = images * (1.0 - soft_mask(cams, classes, images.shape[-2:]).to(images.dtype))
        call = self.oc if self.leak_cse_grad else (lambda x: frozen_call(self.oc, x))
        with module_mode(self.oc, False):
            logits, _ = call(erased)
        return mlsm(logits, self.smooth(remove_class(labels, classes)))

    def generator_terms(self, batch, ctx):
        """L_f and its parts; also the raw CAMs and the sampled classes (for the NOC step)."""
        images, labels = batch["image"], batch["label"]
        targets = self.smooth(labels)
        logits, cams = self.net(images)
        cls = mlsm(logits, targets)
        classes = sample_classes(labels)
        cse = self.cse_loss(images, cams, classes, labels)
        lam = self.lambda_cse_at(ctx)
        loss = cls + lam * cse
        logs = {"cls": cls.detach(), "cse": cse.detach(), "lambda_cse": lam}
        if self.use_puzzle:
            puzzle = self.puzzle_terms(images, cams, labels, targets)
            alpha = self.alpha_at(ctx)
            loss = loss + puzzle["p_cls"] + alpha * puzzle["re"]
            logs.update(p_cls=puzzle["p_cls"].detach(), re=puzzle["re"].detach(), alpha=alpha)
        return loss, logs, cams, classes

    def training_step(self, batch, ctx):
        loss, logs, _, _ = self.generator_terms(batch, ctx)
        return {"loss": loss, "loss_f": loss.detach(), **logs}


@METHODS.register("pnoc")
class PuzzleNOC(PuzzleOC):
    """P-NOC: P-OC whose ordinary classifier is trained adversarially on hard-erased images."""

    name = "pnoc"
    trains_oc = True

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.method_cfg
        self.lambda_noc = (float(m.get("lambda_noc_init", 0.0)), float(m.get("lambda_noc", 1.0)),
                           float(m.get("lambda_noc_schedule", 1.0)))
        self.delta_noc = float(m.get("delta_noc", 0.2))

    def param_groups(self):
        groups = super().param_groups()
        groups["noc"] = param_groups_4(self.oc.backbone, self.oc.head)
        return groups

    def lambda_noc_at(self, ctx):
        return linear_schedule(ctx.step, ctx.max_step, *self.lambda_noc)

    def noc_loss(self, images, cams, classes, labels):
        """MLSM of the OC (train mode, BN frozen) on the hard-erased images against the smoothed
        FULL labels; the erased images carry no gradient back to f."""
        keep = hard_keep(cams.detach(), classes, images.shape[-2:], self.delta_noc)
        with module_mode(self.oc, self.training):
            logits, _ = self.oc((images * keep.to(images.dtype)).detach())
        return mlsm(logits, self.smooth(labels))

    def training_step(self, batch, ctx):
        loss_f, logs, cams, classes = self.generator_terms(batch, ctx)
        noc = self.noc_loss(batch["image"], cams, classes, batch["label"])
        lam = self.lambda_noc_at(ctx)
        loss_noc = lam * noc
        return {"loss": loss_f + loss_noc, "loss_f": loss_f.detach(), "loss_noc": loss_noc.detach(), **logs,
                "noc": noc.detach(), "lambda_noc": lam}
