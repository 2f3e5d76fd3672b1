"""Multi-scale + flip inference equals the per-view formula; known answers."""

import torch
import torch.nn as nn
import torch.nn.functional as F

from test_segmentation_deeplab import make_model
from wsss.segmentation import multiscale_logits


class PositionalNet(nn.Module):
    """Neither flip- nor scale-equivariant: a conv plus a ramp over the width."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 3, 5, padding=2)

    def forward(self, x):
        ramp = torch.linspace(-1, 1, x.shape[-1]).expand(x.shape[0], 1, *x.shape[-2:])
        return self.conv(x) + 2.0 * ramp


def per_view_reference(model, image, scales, align_corners):
    """Independent form: every view run on its own, resized back, un-flipped, averaged."""
    h, w = image.shape[-2:]
    outs = []
    for s in scales:
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)
        for flipped in (False, True):
            view = torch.flip(x, dims=[3]) if flipped else x
            y = F.interpolate(model(view), size=(h, w), mode="bilinear", align_corners=align_corners)
            outs.append(torch.flip(y, dims=[3]) if flipped else y)
    return torch.stack(outs).mean(0)[0]


def test_equals_per_scale_formula():
    model = PositionalNet()
    image = torch.randn(3, 37, 50)
    scales = (0.5, 1.0, 1.5, 2.0)
    for align in (False, True):
        got = multiscale_logits(model, image, scales, flip=True, align_corners=align)
        torch.testing.assert_close(got, per_view_reference(model, image, scales, align))


def test_flip_averaging_cancels_an_odd_ramp():
    # The ramp is odd under a horizontal flip, so identity + flipped views cancel it exactly.
    model = PositionalNet()
    image = torch.randn(3, 20, 24)
    got = multiscale_logits(model, image, scales=(1.0,), flip=True)
    conv = model.conv(image[None])[0]
    torch.testing.assert_close(got, (conv + model.conv(image[None].flip(-1))[0].flip(-1)) / 2)
    no_flip = multiscale_logits(model, image, scales=(1.0,), flip=False)
    torch.testing.assert_close(no_flip, model(image[None])[0])


def test_constant_model_output_survives_all_scales():
    class Const(nn.Module):
        def forward(self, x):
            return torch.tensor([1.0, -2.0]).view(1, 2, 1, 1).expand(x.shape[0], 2, *x.shape[-2:])

    got = multiscale_logits(Const(), torch.randn(3, 11, 13), scales=(0.5, 0.75, 1.25, 2.0))
    torch.testing.assert_close(got, torch.tensor([1.0, -2.0]).view(2, 1, 1).expand(2, 11, 13))
    doubled = multiscale_logits(Const(), torch.randn(3, 11, 13), scales=(0.5, 2.0), flip_sum=True)
    torch.testing.assert_close(doubled, 2 * got)  # P-NOC's flip-pair sum


def test_with_deeplab_model_and_odd_size():
    model = make_model("deeplabv3plus", num_outputs=4).eval()
    image = torch.randn(3, 45, 61)
    got = multiscale_logits(model, image, scales=(0.5, 1.0, 1.5))
    assert got.shape == (4, 45, 61)
    torch.testing.assert_close(got, per_view_reference(model, image, (0.5, 1.0, 1.5), False))
