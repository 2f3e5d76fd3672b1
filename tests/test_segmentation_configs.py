"""The shipped segmentation configs build the published architectures on the real backbones."""

import glob

import pytest
import torch
import torch.nn as nn

from wsss.config import load_config
from wsss.data.transforms import build_eval_transform, build_train_transform
from wsss.postprocess import crf_params
from wsss.segmentation import build_segmentation_model
from wsss.segmentation.heads import ASPPv2Head, DeepLabV1Head, DeepLabV3PlusHead

CONFIGS = sorted(glob.glob("configs/*/deeplab*.yaml"))
HEADS = {"deeplabv1": DeepLabV1Head, "deeplabv2": ASPPv2Head, "deeplabv3plus": DeepLabV3PlusHead}


def test_every_dataset_has_the_configs():
    names = {c.split("configs/")[1] for c in CONFIGS}
    assert {f"{d}/deeplab{m}.yaml" for d in ("voc", "coco", "synthetic") for m in ("v1", "v2", "v3plus")} <= names


@pytest.mark.parametrize("path", [c for c in CONFIGS if "/coco/" not in c])  # coco = voc's models
def test_config_builds_and_runs(path):
    cfg = load_config(path)
    build_train_transform(cfg["augment"])
    build_eval_transform(cfg["augment"])
    crf = cfg["infer"]["crf"]
    crf_params(**({"preset": crf} if isinstance(crf, str) else crf))
    m = cfg["model"]
    model = build_segmentation_model({**m, "weights": None}, 21).eval()
    assert isinstance(model.head, HEADS[m["name"]])
    with torch.no_grad():
        raw = model.forward_logits(torch.randn(1, 3, 64, 64))
    stride = 4 if m["name"] == "deeplabv3plus" else m["output_stride"]
    assert raw.shape == (1, 21, 64 // stride, 64 // stride)
    if m["name"] == "deeplabv3plus":
        assert [b[0].dilation[0] for b in model.head.aspp.branches] == [1, 6, 12, 18]
    if m["name"] == "deeplabv2":
        assert [c.dilation[0] for c in model.head.branches] == [6, 12, 18, 24]


def test_published_recipes():
    v3 = load_config("configs/voc/deeplabv3plus.yaml")
    assert (v3["train"]["lr"], v3["train"]["weight_decay"], v3["train"]["epochs"], v3["train"]["batch_size"],
            v3["train"]["nesterov"], v3["method"]["label_smoothing"], v3["augment"]["crop"]) == \
        (0.007, 4e-5, 15, 32, True, 0.1, 512)
    model = build_segmentation_model({**v3["model"], "weights": None}, 21)
    norms = [mod for mod in model.head.modules() if isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm))]
    assert all(isinstance(n, nn.GroupNorm) and n.num_groups == 4 for n in norms)
    # the stem trains, as P-NOC's segmentation/train.py ran (it never passes trainable_stem)
    assert all(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert all(m.training for m in model.backbone.modules())
    # the runner's intent (TRAIN_STEM=false) stays available as an option
    frozen = build_segmentation_model({**v3["model"], "weights": None, "frozen_prefixes": ["conv1.", "bn1."]}, 21)
    stem = [n for n, p in frozen.backbone.named_parameters() if not p.requires_grad]
    assert stem and all(n.startswith(("conv1.", "bn1.")) for n in stem)
    v2 = load_config("configs/voc/deeplabv2.yaml")
    assert (v2["train"]["lr"], v2["train"]["batch_size"], v2["augment"]["crop"], v2["method"]["msc_scales"]) == \
        (2.5e-4, 10, 321, [0.5, 0.75])
    assert load_config("configs/coco/deeplabv3plus.yaml")["train"]["lr"] == 0.004


def test_deeplabv1_recipe_of_seam_icam_cpn():
    """icam.md (d) / YudeWang's seamv1-pseudovoc: trainable BN, SGD 0.9, lr 1e-3, wd 5e-4, 20k
    iterations at batch 10, crop 448, scale 0.5-1.5, test 0.5-1.75 + flip, 1-iteration CRF 3/3, 32/13/10."""
    v1 = load_config("configs/voc/deeplabv1.yaml")
    t = v1["train"]
    assert (t["lr"], t["momentum"], t["weight_decay"], t["batch_size"], v1["augment"]["crop"]) == \
        (1e-3, 0.9, 5e-4, 10, 448)
    assert t["epochs"] == round(20000 * 10 / 10582)  # 20k iterations on train_aug
    assert v1["model"]["norm_mode"] == "train" and v1["augment"]["resize_long"] == [250, 750]
    assert v1["infer"]["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and v1["infer"]["flip"]
    crf = crf_params(**v1["infer"]["crf"])
    assert (crf.t, crf.gauss_sxy, crf.gauss_compat, crf.bi_sxy, crf.bi_srgb, crf.bi_compat) == (1, 3, 3, 32, 13, 10)
    coco = load_config("configs/coco/deeplabv1.yaml")
    assert coco["train"]["epochs"] == round(200000 * 10 / 82783) and coco["data"]["dataset"] == "coco"
    assert load_config("configs/synthetic/deeplabv1.yaml")["infer"]["crf"] == v1["infer"]["crf"]
