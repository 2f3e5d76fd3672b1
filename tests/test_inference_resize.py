"""Inference inputs at every scale are the image resized with PIL's bicubic filter (antialiased
when it shrinks), as P-NOC's CAM, C2AM-H and DeepLab inference scripts resize them:
``image.resize((round(W * s), round(H * s)), PIL.Image.BICUBIC)``, then normalised."""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from wsss.cams.inference import normalize
from wsss.errors import ConfigError
from wsss.saliency.infer import ccam_activations
from wsss.segmentation import image_logits
from wsss.segmentation.inference import INPUT_RESIZES

SCALES = (0.5, 1.0, 1.5, 2.0)


def stripes(h=37, w=50, seed=0):
    """Noise plus 1-pixel stripes: bilinear shrinking aliases them, an antialiased filter does not."""
    img = np.random.default_rng(seed).integers(0, 80, (h, w, 3)).astype(np.uint8)
    img[:, ::2] += 170
    return img


def pil_input(image, s):
    h, w = image.shape[:2]
    return normalize(np.asarray(Image.fromarray(image).resize((round(w * s), round(h * s)), Image.BICUBIC)))


class Recorder(nn.Module):
    """Records its inputs; returns ``channels`` zero maps at the input's resolution."""

    def __init__(self, channels=2):
        super().__init__()
        self.channels, self.seen = channels, []

    def forward(self, x):
        self.seen.append(x.clone())
        return x.new_zeros(x.shape[0], self.channels, *x.shape[-2:])

    def foreground_logits(self, x):  # the C2AM interface
        return self(x)[:, :1]


def test_segmentation_inputs_are_pils_bicubic_resizes():
    image = stripes()
    model = Recorder()
    logits = image_logits(model, image, SCALES, flip=True)
    assert logits.shape == (2, 37, 50)
    for x, s in zip(model.seen, SCALES):
        torch.testing.assert_close(x[0], pil_input(image, s), rtol=0, atol=0)
        torch.testing.assert_close(x[1], pil_input(image, s).flip(-1), rtol=0, atol=0)
    # the bilinear option (no antialiasing) keeps the stripes when it shrinks by 0.4: they alias
    bil = INPUT_RESIZES["bilinear"](image, (0.4,), (0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255))[0]
    ref = torch.from_numpy(np.array(Image.fromarray(image).resize((20, 15), Image.BICUBIC))).permute(2, 0, 1)
    assert ref.float().std() < 10 < 40 < bil.std()
    with pytest.raises(ConfigError, match="infer.resize"):
        image_logits(model, image, SCALES, resize="nearest")


def test_segmentation_logits_of_an_input_echo_match_the_pil_views():
    class Echo(nn.Module):
        def forward(self, x):
            return x

    image = stripes(20, 24, seed=1)
    got = image_logits(Echo(), image, (0.5, 2.0), flip=False)
    expected = sum(F.interpolate(pil_input(image, s)[None], size=(20, 24), mode="bilinear", align_corners=False)[0]
                   for s in (0.5, 2.0)) / 2
    torch.testing.assert_close(got, expected)


def test_ccam_inputs_are_pils_bicubic_resizes():
    images = [stripes(40, 56, seed=2), stripes(40, 56, seed=3)]
    model = Recorder(channels=1)
    ccam_activations(model, images, scales=SCALES, flip=True)
    for x, s in zip(model.seen, SCALES):
        for i, im in enumerate(images):
            torch.testing.assert_close(x[i], pil_input(im, s), rtol=0, atol=1e-6)
            torch.testing.assert_close(x[2 + i], pil_input(im, s).flip(-1), rtol=0, atol=1e-6)
