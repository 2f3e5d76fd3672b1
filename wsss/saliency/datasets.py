"""Training sets of the saliency stage: a dataset plus per-pixel ``maps`` read from another stage.

- :class:`CamHintDataset` (C2AM-H): ``maps["hint"]`` = max over the present classes of the
  image-size CAMs (``hr_cam``) of ``<cam_dir>/<id>.npz`` (or P-NOC ``.npy``).
- :class:`SaliencyTargetDataset` (PoolNet): ``maps["saliency"]`` = ``<sal_dir>/<id>.png`` / 255
  (any folder of 0..255 gray PNGs: C2AM-H masks or saliency made elsewhere) and
  ``maps["valid"]`` = 1, which crop padding turns into 0 so padded pixels carry no loss.

Both are :class:`wsss.data.maps.MapDataset`: the maps are attached before the transform, so
crops, flips and resizes move them with the image.
"""

from ..data.maps import CamHintMap, MapDataset, PngMap, ValidMap, hint_from_cam, load_gray_map
from ..data.transforms import Compose, build_train_transform, resize_sample

__all__ = ["CamHintDataset", "SaliencyTargetDataset", "SquareResize", "build_saliency_transform",
           "hint_from_cam", "load_saliency"]

SALIENCY_FIX = "run tools/infer_saliency.py for this split, or point to a folder of <id>.png maps"


def load_saliency(path, shape=None, of="its image"):
    """Read a 0..255 gray saliency PNG as uint8 (H, W); RGB(A) PNGs use their first channel.

    With ``shape`` (H, W), a map of another size is a DataError naming ``of`` (what it must match)."""
    return load_gray_map(path, shape, of, what="saliency map", fix=SALIENCY_FIX)


class CamHintDataset(MapDataset):
    """Samples with ``maps["hint"]``: the max foreground CAM of the image (C2AM-H)."""

    def __init__(self, base, cam_dir, transform=None):
        source = CamHintMap(cam_dir, "hint", fix="run tools/infer_cam.py on the training split (it resumes), "
                                                 "or fix method.cam_dir")
        super().__init__(base, [source], transform)
        self.cam_dir = source.folder


class SaliencyTargetDataset(MapDataset):
    """Samples with ``maps["saliency"]`` in [0, 1] and ``maps["valid"]`` (PoolNet)."""

    def __init__(self, base, sal_dir, transform=None):
        source = PngMap(sal_dir, "saliency", what="saliency map",
                        fix="run tools/infer_saliency.py --method ccam on the same split (it resumes), "
                            "or fix method.sal_dir")
        super().__init__(base, [source, ValidMap("valid")], transform)
        self.sal_dir = source.folder


class SquareResize:
    """Resize image, mask and maps to ``size`` x ``size`` (C2AM's training resize)."""

    takes_pil = True

    def __init__(self, size):
        self.size = int(size)

    def __call__(self, sample):
        return resize_sample(sample, self.size, self.size)


def build_saliency_transform(aug_cfg=None, steps=None):
    """The data layer's training pipeline (``steps`` as there), optionally preceded by a square
    resize (``resize_square: 515`` then ``crop: 448`` is P-NOC's C2AM recipe)."""
    cfg = dict(aug_cfg or {})
    square = cfg.pop("resize_square", None)
    base = build_train_transform(cfg, steps)
    return Compose(([SquareResize(square)] if square else []) + base.transforms)
