"""The base class and registry of CAM methods.

A CAM method is one file of ``wsss/cams/`` that defines a :class:`CAMMethod` subclass and
registers it under its ``--method`` name (the contract of every trainable task is in
:class:`wsss.engine.TaskModule` and CONTRIBUTING.md)::

    @METHODS.register("mine")
    class Mine(CAMMethod):
        options = {"beta": Option(0.5, "weight of my extra loss")}      # method.* keys, defaults
        def __init__(self, cfg, num_classes):
            super().__init__(cfg, num_classes)                          # self.opts: the options
            self.net = Classifier.from_config(cfg, num_classes)         # networks from cfg["model"]
        def param_groups(self):                                         # one entry per optimizer
            return {"main": param_groups_4(self.net.backbone, self.net.head)}
        def training_step(self, batch, ctx):                            # see TaskModule
            logits, cams = self.net(batch["image"])
            loss = mlsm(logits, self.smooth(batch["label"]))
            return {"loss": loss, "cls": loss.detach()}
        def cam_forward(self, images):                                  # raw CAMs for inference
            return self.net(images)[1]

The engine (``wsss.engine.Trainer``) trains it; ``tools/infer_cam.py`` calls :meth:`infer_cams`,
whose default is the multi-scale inference of :mod:`wsss.cams.inference` over the hooks
:meth:`view_maps` (default: ReLU of :meth:`cam_forward`) and :meth:`combine` (default: each
class divided by its maximum); ``background = True`` declares maps with a leading background
channel (C + 1 outputs), saved next to the classes in the CAM file; ``relu_after_upsample = True``
moves the ReLU after each view's upsampling (AEFT).

A method with a second network and optimizer (P-OC/P-NOC) returns two entries from
``param_groups()`` and uses ``wsss.engine.frozen_call`` where a loss must not train a network;
a method with its own data needs (saliency maps, superpixels) overrides :meth:`train_dataset`;
a method whose epochs switch behaviour (AEFT's erasing from epoch T) reads ``ctx.epoch``, and
one whose batch size changes overrides ``epoch_batch_size``.

Batches (``wsss.data.collate``): ``image`` float (B, 3, H, W) normalised, ``label`` float (B, C)
multi-hot, ``id`` list, ``maps`` as the data layer gives them, and ``mask`` None: CAM methods
never see pixel ground truth (:class:`wsss.data.LabelsOnly`).
"""

import torch.nn.functional as F

from ..engine import Option, TaskModule
from ..registry import Registry
from .inference import accumulate_views, normalise_max, on_device, stack_group
from .losses import smooth_labels

METHODS = Registry("CAM method")


class CAMMethod(TaskModule):
    """Base of the CAM methods: ``cfg``, ``num_classes``, ``opts`` (the effective ``method``
    options) and ``label_smoothing``."""

    options = {"label_smoothing": Option(0.0, "targets (1 - ls) y + ls / 2 of the classification losses")}
    exports = ("net",)
    #: the maps of :meth:`view_maps` carry a background channel first (C + 1 channels)
    background = False
    #: ReLU each view's maps after upsampling them (AEFT) instead of in :meth:`view_maps`
    relu_after_upsample = False

    def __init__(self, cfg, num_classes):
        super().__init__(cfg, num_classes)
        self.label_smoothing = float(self.opts["label_smoothing"])

    def smooth(self, labels):
        """Label-smoothed targets ``(1 - ls) y + ls / 2``."""
        return smooth_labels(labels, self.label_smoothing)

    # ---------------------------------------------------------------------- inference
    def cam_forward(self, images):
        """Raw class activation maps (B, C, h, w) of ``images`` (before ReLU)."""
        raise NotImplementedError

    def view_maps(self, images, labels):
        """Maps of a batch of views (images at one scale, then their flips): (B, C [+1], h, w).
        ``labels`` (B, C) are the views' image labels, for methods that condition on them.
        Default: ReLU of :meth:`cam_forward` (raw maps with :attr:`relu_after_upsample`)."""
        maps = self.cam_forward(images).float()
        return maps if self.relu_after_upsample else F.relu(maps)

    def combine(self, maps):
        """The saved maps of one image from their sum over views (K, h, w): each channel divided
        by its maximum + 1e-5."""
        return normalise_max(maps)

    def infer_cams(self, inputs, size, keys, device="cpu", amp="none", channels_last=False, flip=True,
                   stride=4, hr_stride=16):
        """CAMs of equal-size images from their per-scale ``inputs``: one dict per image with
        ``cam`` (K, ceil(H/4), ceil(W/4)), ``hr_cam`` (K, H, W) and, with :attr:`background`,
        ``cam_bg`` / ``hr_cam_bg``. Called in eval mode under ``torch.inference_mode``."""
        view_fn = on_device(self.view_maps, device, amp, channels_last)
        return accumulate_views(view_fn, inputs, size, keys, flip, stride, hr_stride, num_classes=self.num_classes,
                                background=self.background, combine=self.combine,
                                activation=F.relu if self.relu_after_upsample else None)

    def infer_group(self, group, **kw):
        """:meth:`infer_cams` of equal-size ``PyramidDataset`` items; yields ``(item, maps)``."""
        inputs, size, keys = stack_group(group)
        yield from zip(group, self.infer_cams(inputs, size, keys, **kw))

    # --------------------------------------------------------------------------- data
    @classmethod
    def train_transform(cls, cfg):
        """The training augmentation pipeline, from ``cfg["augment"]``."""
        from ..data.transforms import build_train_transform

        return build_train_transform(cfg.get("augment"))

    @classmethod
    def train_dataset(cls, cfg, data):
        """Images and image labels of ``data.train_split``, augmented, WITHOUT masks (override
        to add ``maps``; keep the :class:`~wsss.data.LabelsOnly` wrapper)."""
        from ..data import LabelsOnly, build_dataset

        base = build_dataset(data["dataset"], data["root"], data.get("train_split", "train"))
        return LabelsOnly(base, cls.train_transform(cfg))


def build_method(name, cfg, num_classes):
    """Instantiate the method registered as ``name``."""
    return METHODS.get(name)(cfg, num_classes)
