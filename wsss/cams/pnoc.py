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

``method`` options are declared on :class:`PuzzleOC` and :class:`PuzzleNOC` (``python
tools/train_cam.py --method pnoc --list-options`` prints them with their defaults): ``oc_exp``
(required for training), ``oc_model`` (overrides of ``model`` for the OC's architecture;
default: the same as f, as the reference), the CSE / NOC schedules, ``delta_noc``,
``leak_cse_grad_to_oc`` and ``puzzle`` (false drops the Puzzle terms: OC-CSE's loss, an
ablation), plus Puzzle's options. The NOC optimizer is named ``noc``:
``train.optimizers.noc.lr`` sets its learning rate (the reference's ``lr_alpha_oc`` = 1: same
lr as f). The OC's weights are loaded at the start of a fresh run (:meth:`on_train_start`); a
resumed run and inference take them from this experiment's own checkpoint.

See docs/methods/pnoc.md (P-NOC, the OC) and docs/methods/poc.md.
"""

import contextlib

from ..backbones import PRETRAINED_KEYS
from ..engine import Option, check_experiment, frozen_call, load_network, param_groups_4
from ..errors import ConfigError
from .base import METHODS
from .classifier import Classifier
from .erasing import hard_keep, linear_schedule, remove_class, sample_classes, soft_mask
from .losses import mlsm
from .puzzle import PuzzleCAM

#: how to make the OC experiment, for error messages
TRAIN_OC = "train the ordinary classifier first: tools/train_cam.py --config configs/<dataset>/oc.yaml --exp DIR"


@contextlib.contextmanager
def module_mode(module, training):
    """Temporarily put ``module`` in train (``True``) or eval (``False``) mode."""
    before = module.training
    module.train(training)
    try:
        yield module
    finally:
        module.train(before)


def oc_model_config(cfg, oc_model):
    """The OC's ``model`` section: ``cfg["model"]`` <- ``oc_model`` (``method.oc_model``),
    BatchNorm frozen (running statistics and affine parameters: P-NOC builds the OC with
    ``mode="fix"``, whose BN weight and bias get ``requires_grad=False``, so the NOC optimizer
    never moves them) and no weight files to load (they come from the OC experiment)."""
    if not isinstance(oc_model, dict):
        raise ConfigError("method.oc_model must be a mapping of model keys",
                          fix="e.g. method.oc_model.backbone=resnet50")
    return {**(cfg.get("model") or {}), **oc_model, "norm_mode": "frozen_affine", **dict.fromkeys(PRETRAINED_KEYS)}


def check_oc_experiment(exp_dir, model_cfg):
    """Validate a finished classifier experiment for use as the OC (:func:`wsss.engine.check_experiment`:
    folder, files, architecture equal to ``model_cfg``); returns its checkpoint path."""
    if not exp_dir:
        raise ConfigError("P-OC/P-NOC need an ordinary classifier: method.oc_exp is not set",
                          fix="train one (tools/train_cam.py --config configs/<dataset>/oc.yaml --exp DIR) "
                              "and pass method.oc_exp=DIR")
    return check_experiment(exp_dir, model_cfg, kind="CAM",
                            fix=f"{TRAIN_OC} (or set method.oc_model to the OC's architecture, "
                                "e.g. method.oc_model.backbone=...)")


@METHODS.register("poc")
class PuzzleOC(PuzzleCAM):
    """P-OC: Puzzle-CAM + class-specific erasing judged by a fixed ordinary classifier ``oc``."""

    name = "poc"
    options = {
        "oc_exp": Option(None, "experiment folder of the trained ordinary classifier (configs/<dataset>/oc.yaml)"),
        "oc_model": Option({}, "model keys of the OC that differ from model (default: the same network as f)"),
        "lambda_cse_init": Option(0.3, "CSE loss weight at the start"),
        "lambda_cse": Option(1.0, "CSE loss weight at the end of its schedule"),
        "lambda_cse_schedule": Option(1.0, "fraction of training over which lambda_cse moves linearly (0: at once)"),
        "leak_cse_grad_to_oc": Option(False, "the reference's quirk: the CSE loss also trains the OC (P-NOC)"),
        "puzzle": Option(True, "keep Puzzle-CAM's terms (false: OC-CSE's generator loss)"),
    }
    #: whether ``oc`` is trained (P-NOC) or frozen (P-OC)
    trains_oc = False

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.opts
        self.oc_exp = m["oc_exp"]
        self.oc_model = oc_model_config(cfg, m["oc_model"])
        self.lambda_cse = (float(m["lambda_cse_init"]), float(m["lambda_cse"]), float(m["lambda_cse_schedule"]))
        self.leak_cse_grad = bool(m["leak_cse_grad_to_oc"])
        self.use_puzzle = bool(m["puzzle"])
        self.oc = Classifier.from_config({"model": self.oc_model}, num_classes)
        if not self.trains_oc:  # P-NOC trains every OC parameter except the frozen BN affines
            self.oc.requires_grad_(False)
        self.oc.eval()

    # -------------------------------------------------------------- ordinary classifier
    @classmethod
    def train_dataset(cls, cfg, data):
        # called by the train tools before anything heavy: fail early on a bad OC experiment
        m = cls.effective_options(cfg)
        check_oc_experiment(m["oc_exp"], oc_model_config(cfg, m["oc_model"]))
        return super().train_dataset(cfg, data)

    def load_oc(self, exp_dir=None):
        """Load the OC's weights (the ``net`` of a finished CAM experiment) from ``exp_dir``
        (default ``method.oc_exp``)."""
        exp_dir = exp_dir or self.oc_exp
        check_oc_experiment(exp_dir, self.oc_model)
        load_network(self.oc, exp_dir, prefix="net.", finished=True, what="classifier",
                     fix=f"point method.oc_exp to a finished vanilla CAM experiment ({TRAIN_OC})")

    def on_train_start(self, ctx, resumed):
        # A fresh run loads the OC; a resumed one got it (P-NOC: trained) from its own
        # checkpoint, and inference never needs the OC experiment.
        if not resumed:
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
    options = {
        "lambda_noc_init": Option(0.0, "NOC loss weight at the start"),
        "lambda_noc": Option(1.0, "NOC loss weight at the end of its schedule"),
        "lambda_noc_schedule": Option(1.0, "fraction of training over which lambda_noc moves linearly (0: at once)"),
        "delta_noc": Option(0.2, "hard erasing keeps the pixels whose CAM / its image maximum is <= delta_noc"),
    }
    exports = ("net", "oc")
    trains_oc = True

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        m = self.opts
        self.lambda_noc = (float(m["lambda_noc_init"]), float(m["lambda_noc"]), float(m["lambda_noc_schedule"]))
        self.delta_noc = float(m["delta_noc"])

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
