"""The base class and registry of CAM methods.

A CAM method is one file of ``wsss/cams/`` that defines a :class:`CAMMethod` subclass and
registers it under its ``--method`` name::

    @METHODS.register("mine")
    class Mine(CAMMethod):
        def __init__(self, cfg, num_classes):
            super().__init__(cfg, num_classes)
            self.net = Classifier.from_config(cfg, num_classes)         # networks from cfg["model"]
        def param_groups(self):                                         # one entry per optimizer
            return {"main": param_groups_4(self.net.backbone, self.net.head)}
        def training_step(self, batch, ctx):                            # see TaskModule
            logits, cams = self.net(batch["image"])
            loss = mlsm(logits, self.smooth(batch["label"]))
            return {"loss": loss, "cls": loss.detach()}
        def cam_forward(self, images):                                  # raw CAMs for inference
            return self.net(images)[1]

The engine (``wsss.engine.Trainer``) trains it; ``tools/infer_cam.py`` calls :meth:`cam_forward`
in eval mode under ``torch.inference_mode`` at every scale (flips batched with the image).
A method with a second network and optimizer (P-OC/P-NOC) returns two entries from
``param_groups()`` and uses ``wsss.engine.frozen_call`` where a loss must not train a network;
a method with its own data needs (saliency maps, superpixels) overrides :meth:`train_dataset`;
a method whose epochs switch behaviour (AEFT's erasing from epoch T) reads ``ctx.epoch``.

Batches (``wsss.data.collate``): ``image`` float (B, 3, H, W) normalised, ``label`` float (B, C)
multi-hot, ``id`` list, ``mask`` and ``maps`` as the data layer gives them.
"""

from ..engine import TaskModule
from ..registry import Registry
from .losses import smooth_labels

METHODS = Registry("CAM method")


class CAMMethod(TaskModule):
    """Base of the CAM methods: keeps ``cfg``, ``num_classes``, ``method_cfg`` (``cfg["method"]``)
    and ``label_smoothing`` (``method.label_smoothing``, default 0)."""

    #: the method's registry name
    name = None

    def __init__(self, cfg, num_classes):
        super().__init__()
        self.cfg = cfg
        self.num_classes = int(num_classes)
        self.method_cfg = dict(cfg.get("method") or {})
        self.label_smoothing = float(self.method_cfg.get("label_smoothing", 0.0))

    def smooth(self, labels):
        """Label-smoothed targets ``(1 - ls) y + ls / 2``."""
        return smooth_labels(labels, self.label_smoothing)

    def cam_forward(self, images):
        """Raw class activation maps (B, C, h, w) of ``images`` (before ReLU), used by inference."""
        raise NotImplementedError

    @classmethod
    def train_transform(cls, cfg):
        """The training augmentation pipeline, from ``cfg["augment"]``."""
        from ..data.transforms import build_train_transform

        return build_train_transform(cfg.get("augment"))

    @classmethod
    def train_dataset(cls, cfg, name, root, split):
        """The training set of dataset ``name`` at ``root`` (override to add ``maps``). Its samples
        carry no mask: CAM training sees image labels only."""
        from ..data import build_dataset

        dataset = build_dataset(name, root, split, transform=cls.train_transform(cfg))
        dataset.load_masks = False
        return dataset


def build_method(name, cfg, num_classes):
    """Instantiate the method registered as ``name``."""
    return METHODS.get(name)(cfg, num_classes)
