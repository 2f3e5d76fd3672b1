"""P-NOC's RandAugmentMC (the ordinary classifier's augmentation): op parameters, the op
probability and level distribution, the Cutout, PIL-exact geometry that moves masks and maps."""

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from wsss.config import load_config
from wsss.data import transforms as T
from wsss.data.transforms import (RANDAUGMENT_MC_OPS, RandAugment, RandAugmentMC, build_train_transform,
                                  cutout_box)
from wsss.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def gray(value, h=8, w=8):
    return {"id": "g", "image": np.full((h, w, 3), value, np.uint8), "label": None, "mask": None, "maps": {}}


@pytest.mark.parametrize("op", ["Brightness", "Color", "Contrast", "Sharpness"])
def test_enhance_levels_1_to_9_give_factors_014_to_086(op):
    # factor = v * 0.9 / 10 + 0.05; on a flat grey image Brightness scales it by the factor and
    # Color, Contrast, Sharpness (blends with a grey, its mean, its blur) leave it unchanged
    factors = [v * 0.09 + 0.05 for v in range(1, 10)]
    assert factors[0] == pytest.approx(0.14) and factors[-1] == pytest.approx(0.86)
    for v, f in zip(range(1, 10), factors):
        out = RANDAUGMENT_MC_OPS[op](gray(200), v)["image"]
        expected = 200 * f if op == "Brightness" else 200
        assert np.abs(out.astype(float) - expected).max() < 1.01, (v, out[0, 0])  # PIL rounds to uint8


def test_contrast_at_level_1_keeps_14_percent_of_the_deviation_from_the_mean():
    img = np.zeros((4, 4, 3), np.uint8)
    img[:2] = 200  # mean grey 100
    out = RANDAUGMENT_MC_OPS["Contrast"]({**gray(0, 4, 4), "image": img}, 1)["image"]
    assert abs(int(out[0, 0, 0]) - 114) <= 1 and abs(int(out[3, 0, 0]) - 86) <= 1


def test_solarize_thresholds_231_down_to_26_and_posterize_4_to_7_bits():
    img = np.array([[[25] * 3, [26] * 3, [230] * 3, [231] * 3, [255] * 3]], np.uint8)
    s = {**gray(0), "image": img}
    # solarize inverts pixels >= threshold = 256 - int(v * 25.6)
    assert RANDAUGMENT_MC_OPS["Solarize"](s, 9)["image"][0, :, 0].tolist() == [25, 229, 25, 24, 0]  # t = 26
    assert RANDAUGMENT_MC_OPS["Solarize"](s, 1)["image"][0, :, 0].tolist() == [25, 26, 230, 24, 0]  # t = 231
    assert min(256 - int(v * 256 / 10) for v in range(1, 10)) == 26
    # posterize keeps int(v * 0.4) + 4 bits: 255 -> 240 (4 bits) at v = 1, 254 (7 bits) at v = 9
    assert RANDAUGMENT_MC_OPS["Posterize"](s, 1)["image"][0, 4, 0] == 240
    assert RANDAUGMENT_MC_OPS["Posterize"](s, 9)["image"][0, 4, 0] == 254


@pytest.mark.parametrize("sign", [1, -1])
@pytest.mark.parametrize("size", [(37, 53), (96, 64)])
def test_geometric_ops_equal_pils_as_the_reference_applies_them(monkeypatch, sign, size):
    h, w = size
    img = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    pil = Image.fromarray(img)
    monkeypatch.setattr(T, "_signed", lambda v: sign * v)
    for v in range(1, 10):
        s = {**gray(0), "image": img}
        expected = {  # P-NOC's randaugment.py: Rotate, ShearX/Y, TranslateX/Y with these parameters
            "Rotate": pil.rotate(sign * int(v * 30 / 10)),
            "ShearX": pil.transform(pil.size, Image.AFFINE, (1, sign * v * 0.3 / 10, 0, 0, 1, 0)),
            "ShearY": pil.transform(pil.size, Image.AFFINE, (1, 0, 0, sign * v * 0.3 / 10, 1, 0)),
            "TranslateX": pil.transform(pil.size, Image.AFFINE, (1, 0, int(sign * v * 0.3 / 10 * w), 0, 1, 0)),
            "TranslateY": pil.transform(pil.size, Image.AFFINE, (1, 0, 0, 0, 1, int(sign * v * 0.3 / 10 * h))),
        }
        for name, ref in expected.items():
            np.testing.assert_array_equal(RANDAUGMENT_MC_OPS[name](s, v)["image"], np.asarray(ref), err_msg=f"{name} {v}")


@pytest.mark.parametrize("name", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"])
def test_geometric_ops_move_mask_and_maps_with_the_image(monkeypatch, name):
    monkeypatch.setattr(T, "_signed", lambda v: v)
    h, w = 40, 48
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (h, w, 3), dtype=np.uint8)  # no black pixel: black = filled
    mask = (img[..., 0] // 32).astype(np.uint8)  # a mask that is a function of the pixel
    ids = img[..., 1].astype(np.int64) + 1000  # an integer index map (nearest, 255 outside)
    soft = img[..., 2].astype(np.float32)  # a float map (bilinear, 0 outside)
    s = {"id": "x", "image": img, "label": None, "mask": mask, "maps": {"ids": ids, "soft": soft}}
    out = RANDAUGMENT_MC_OPS[name](s, 6)
    inside = out["image"].any(-1)
    assert 0.4 < inside.mean() < 1.0  # moved, partly out of the frame
    np.testing.assert_array_equal(out["mask"][inside], out["image"][..., 0][inside] // 32)
    assert (out["mask"][~inside] == 255).all()
    assert out["maps"]["ids"].dtype == np.int64
    np.testing.assert_array_equal(out["maps"]["ids"][inside], out["image"][..., 1][inside].astype(np.int64) + 1000)
    assert (out["maps"]["ids"][~inside] == 255).all()
    if name.startswith("Translate"):  # an integer shift: bilinear is exact too
        np.testing.assert_array_equal(out["maps"]["soft"][inside], out["image"][..., 2][inside])
        assert (out["maps"]["soft"][~inside] == 0).all()
    else:  # bilinear: close to the image's values away from the frame's border
        assert np.corrcoef(out["maps"]["soft"][inside], out["image"][..., 2][inside].astype(float))[0, 1] > 0.5


def test_cutout_is_a_black_17_pixel_square_clipped_at_the_border():
    random.seed(0)
    sizes = set()
    for _ in range(300):
        y0, y1, x0, x1 = cutout_box(64, 48, 16)
        assert 0 <= x0 < x1 and 0 <= y0 < y1 and x1 - x0 <= 17 and y1 - y0 <= 17
        sizes.add((y1 - y0, x1 - x0))
    assert (17, 17) in sizes and any(s != (17, 17) for s in sizes)  # inclusive PIL rectangle; clipped at edges
    random.seed(1)
    out = RandAugmentMC(n=1, m=10, ops=["Identity"])(gray(255, 48, 64))["image"]
    black = (out == 0).all(-1)
    ys, xs = np.nonzero(black)
    assert black.sum() == (np.ptp(ys) + 1) * (np.ptp(xs) + 1) and 1 <= black.sum() <= 289  # one filled rectangle
    assert ((out == 255).all(-1) | black).all()


def test_each_op_applies_with_probability_half_at_a_level_1_to_m_minus_1(monkeypatch):
    calls = []
    monkeypatch.setitem(RANDAUGMENT_MC_OPS, "Identity", lambda s, v: calls.append(v) or s)
    random.seed(0)
    ra = RandAugmentMC(n=2, m=10, cutout=0, ops=["Identity"])
    for _ in range(2000):
        ra(gray(9))
    assert 0.47 < len(calls) / 4000 < 0.53  # 4000 drawn ops, half applied (sd 0.008)
    counts = np.bincount(calls, minlength=11)
    assert counts[0] == 0 and counts[10] == 0 and (counts[1:10] > 0.8 * len(calls) / 9).all()
    calls.clear()
    RandAugmentMC(n=2, m=3, cutout=0, ops=["Identity"])(gray(9))
    assert set(calls) <= {1, 2}
    with pytest.raises(ConfigError):
        RandAugmentMC(m=11)
    with pytest.raises(ConfigError):
        RandAugmentMC(ops=["Invert"])  # not in FixMatch's pool


def test_config_selects_the_variant_and_the_published_ocs_use_pnocs():
    kinds = lambda cfg: [type(t) for t in build_train_transform({"randaugment": cfg}).transforms]  # noqa: E731
    assert RandAugmentMC in kinds({"kind": "mc", "n": 2, "m": 10})
    assert RandAugment in kinds(True) and RandAugment in kinds({"n": 2, "m": 10})
    with pytest.raises(ConfigError, match="randaugment kind"):
        build_train_transform({"randaugment": {"kind": "bogus"}})
    for dataset in ("voc", "coco"):
        ra = load_config(CONFIGS / dataset / "oc.yaml")["augment"]["randaugment"]
        assert ra == {"kind": "mc", "n": 2, "m": 10}  # P-NOC's datasets/__init__.py: RandAugmentMC(n=2, m=10)
