import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from wsss.cams.inference import image_pyramid, infer_group, multiscale_cams, strided_size

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


class ToyNet(torch.nn.Module):
    """Stride-4 toy CAM network (conv 4x4/4 -> tanh -> 1x1 conv, 4 classes)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.a = torch.nn.Conv2d(3, 6, 4, stride=4)
        self.b = torch.nn.Conv2d(6, 4, 1)

    def forward(self, x):
        return self.b(torch.tanh(self.a(x)))


def per_scale_reference(net, image, keys, scales):
    """docs/methods/cam.md's formula written out plainly: every scale and flip on its own, all classes
    upsampled, summed, then the present classes kept and max-normalised."""
    h, w = image.shape[:2]
    st = (math.ceil(h / 4), math.ceil(w / 4))
    up = (math.ceil(h / 16) * 16, math.ceil(w / 16) * 16)
    cam, hr = 0, 0
    for s in scales:
        im = Image.fromarray(image).resize((round(w * s), round(h * s)), Image.BICUBIC) if s != 1 else image
        x = torch.from_numpy(((np.asarray(im) / 255.0 - MEAN) / STD).astype(np.float32).transpose(2, 0, 1))[None]
        for flipped in (False, True):
            c = F.relu(net(x.flip(-1) if flipped else x))
            c = c.flip(-1) if flipped else c
            cam = cam + F.interpolate(c, st, mode="bilinear", align_corners=False)[0]
            hr = hr + F.interpolate(c, up, mode="bilinear", align_corners=False)[0, :, :h, :w]
    cam, hr = cam[keys], hr[keys]
    return cam / (cam.amax((1, 2), keepdim=True) + 1e-5), hr / (hr.amax((1, 2), keepdim=True) + 1e-5)


def test_multiscale_equals_per_scale_formula():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)
    net, keys, scales = ToyNet().eval(), [3, 1], (0.5, 1.0, 1.5, 2.0)
    with torch.no_grad():
        ref_cam, ref_hr = per_scale_reference(net, image, keys, scales)
    [(cam, hr)] = multiscale_cams(net, image_pyramid(image, scales), image.shape[:2], [keys])
    assert cam.shape == (2, 10, 13) and hr.shape == (2, 37, 50)
    assert torch.allclose(cam, ref_cam, atol=1e-5) and torch.allclose(hr, ref_hr, atol=1e-5)
    assert torch.allclose(cam.amax((1, 2)), torch.ones(2), atol=1e-4)


def test_batched_images_equal_single_images():
    rng = np.random.default_rng(1)
    net = ToyNet().eval()
    items = [{"id": str(i), "size": (32, 48), "keys": k,
              "inputs": image_pyramid(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8))}
             for i, k in enumerate(([0], [1, 2]))]
    together = list(infer_group(net, items))
    for it, cam, hr in together:
        [(c1, h1)] = multiscale_cams(net, it["inputs"], it["size"], [it["keys"]])
        assert torch.allclose(cam, c1, atol=1e-5) and torch.allclose(hr, h1, atol=1e-5)


def test_constant_cams_and_no_classes():
    net = lambda x: torch.full((x.shape[0], 3, x.shape[2] // 4, x.shape[3] // 4), 2.0)  # noqa: E731
    [(cam, hr)] = multiscale_cams(net, [torch.zeros(3, 16, 16), torch.zeros(3, 32, 32)], (16, 16), [[2]])
    # every scale and flip adds 2 everywhere: 8 / (8 + 1e-5)
    assert torch.allclose(cam, torch.full((1, 4, 4), 8 / (8 + 1e-5)))
    [(cam, hr)] = multiscale_cams(net, [torch.zeros(3, 16, 16)], (16, 16), [[]])
    assert cam.shape == (0, 4, 4) and hr.shape == (0, 16, 16)
    assert strided_size((37, 50), 4) == (10, 13)
