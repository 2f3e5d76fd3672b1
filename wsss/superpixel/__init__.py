"""SP-CAM's superpixel stage: the pixel-superpixel association network and its operations.

    ops.py     pooling into / upsampling from 16-px cells through the associations, the 5x5 cell
               affinity matrix (ASAM), the random walk on cells, the DRM's per-cell scatter
    net.py     SpixelFCN's SpixelNet1l_bn (per pixel a softmax over its 9 neighbouring cells)
    losses.py  the reconstruction loss, CAM-derived cell labels, the affinity terms
    data.py    saliency maps and stacked CAMs attached to the training images
    task.py    the training task (``psam``), trained by tools/train_superpixel.py

Trainable tasks register in ``SUPERPIXEL_TASKS``; the package's modules are imported at its
first lookup (see docs/methods/spcam.md).
"""

from ..registry import Registry

SUPERPIXEL_TASKS = Registry("superpixel task", package=__name__)

__all__ = ["SUPERPIXEL_TASKS"]
