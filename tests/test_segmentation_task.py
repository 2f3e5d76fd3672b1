"""SegmentationTask: loss wiring, MSC outputs, parameter groups."""

import torch
import torch.nn.functional as F

from test_segmentation_deeplab import TinyBackbone
from wsss.segmentation.task import SegmentationTask


def make_task(**method):
    cfg = {"model": {"name": "deeplabv2", "output_stride": 8}, "method": method}
    torch.manual_seed(0)
    return SegmentationTask(cfg, num_classes=3, backbone=TinyBackbone(8)).eval()


def test_loss_is_smoothed_ce_with_ignore():
    task = make_task(label_smoothing=0.1)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    y[:, :4] = 255
    out = task.training_step({"image": x, "mask": y}, None)
    want = F.cross_entropy(task.model(x), y, ignore_index=255, label_smoothing=0.1)
    torch.testing.assert_close(out["loss"], want)
    assert task.num_outputs == 4


def test_msc_sums_the_losses_of_every_scale_and_their_max():
    task = make_task(msc_scales=[0.5, 0.75])
    x, y = torch.randn(1, 3, 48, 40), torch.randint(0, 4, (1, 48, 40))
    out = task.training_step({"image": x, "mask": y}, None)
    full = task.model(x)
    scaled = [F.interpolate(task.model(F.interpolate(x, size=(int(48 * s), int(40 * s)), mode="bilinear")),
                            size=(48, 40), mode="bilinear") for s in (0.5, 0.75)]
    outs = [full, *scaled, torch.maximum(torch.maximum(full, scaled[0]), scaled[1])]
    torch.testing.assert_close(out["loss"], sum(F.cross_entropy(o, y) for o in outs))
    torch.testing.assert_close(out["ce"], F.cross_entropy(full, y))


def test_param_groups_and_backbone_lr_mult():
    for mult in (1.0, 10.0):
        groups = {g["name"]: g for g in make_task(backbone_lr_mult=mult).param_groups()["main"]}
        assert groups["backbone.weight"]["lr_mult"] == mult and groups["backbone.bias"]["lr_mult"] == 2 * mult
        assert groups["new.weight"]["lr_mult"] == 10 and groups["new.bias"]["lr_mult"] == 20
    task = make_task()
    head = {id(p) for p in task.model.head.parameters()}
    groups = task.param_groups()["main"]
    assert {id(p) for g in groups if g["name"].startswith("new.") for p in g["params"]} == head
    assert sum(len(g["params"]) for g in groups) == len(list(task.parameters()))
