"""Vanilla CAM (``--method cam``): a classifier trained with the multi-label soft-margin loss.

Also the ordinary classifier of P-OC/P-NOC: P-NOC trains it as a plain classifier (BatchNorm
trained) with RandAugment and ``method.label_smoothing: 0.1`` (``configs/<dataset>/oc.yaml``);
P-OC/P-NOC then load it with every BatchNorm frozen (``docs/methods/pnoc.md``).
"""

from ..engine import param_groups_4
from .base import METHODS, CAMMethod
from .classifier import Classifier
from .losses import mlsm


@METHODS.register("cam")
class VanillaCAM(CAMMethod):
    """``net``: :class:`~wsss.cams.classifier.Classifier`; loss MLSM(GAP(A), y~)."""

    name = "cam"

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        self.net = Classifier.from_config(cfg, num_classes)

    def param_groups(self):
        return {"main": param_groups_4(self.net.backbone, self.net.head)}

    def training_step(self, batch, ctx):
        logits, _ = self.net(batch["image"])
        cls = mlsm(logits, self.smooth(batch["label"]))
        return {"loss": cls, "cls": cls.detach()}

    def cam_forward(self, images):
        return self.net(images)[1]
