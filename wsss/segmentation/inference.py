"""Multi-scale + flip inference: the mean of the logits over every view, at image size.

For scales s and flips f, view (s, f) is the image resized to round(s*H) x round(s*W)
(bilinear) and optionally flipped; the model's logits for it are resized back to H x W
(bilinear) and un-flipped. The prediction is the mean over all views, then softmax (+ dCRF),
then argmax (as ICAM/SEAM's codebase computes it). P-NOC's script sums each flip pair and
averages over scales, i.e. twice these logits: same argmax, sharper softmax before the CRF;
``flip_sum=True`` reproduces that.
"""

import torch
import torch.nn.functional as F


def scaled_size(size, scale):
    """(round(s*H), round(s*W)), at least 1 pixel."""
    return tuple(max(1, int(round(s * scale))) for s in size)


@torch.no_grad()
def multiscale_logits(model, image, scales=(0.5, 1.0, 1.5, 2.0), flip=True, align_corners=False,
                      flip_sum=False):
    """Mean logits (K, H, W) of ``model`` over ``scales`` x {identity, h-flip} for a (3, H, W) image.

    ``model(x)`` must return logits at ``x``'s resolution (see ``SegmentationModel.forward``).
    """
    if image.dim() != 3:
        raise ValueError(f"expected a (3, H, W) image tensor, got shape {tuple(image.shape)}")
    size = tuple(image.shape[-2:])
    total, views = None, 0
    for s in scales:
        x = image[None]
        if scaled_size(size, s) != size:
            x = F.interpolate(x, size=scaled_size(size, s), mode="bilinear", align_corners=False)
        if flip:
            x = torch.cat([x, x.flip(-1)], dim=0)
        out = model(x).float()
        out = F.interpolate(out, size=size, mode="bilinear", align_corners=align_corners)
        if flip:
            out = out[:1] + out[1:].flip(-1)
        total = out[0] if total is None else total + out[0]
        views += 2 if flip else 1
    if flip and flip_sum:
        views //= 2
    return total / views
