"""AffinityNet: IRN's boundary head on a frozen backbone, its loss, flip-averaged inference."""

import math

import pytest
import torch

from wsss.affinity.net import AffinityNet, AffinityTask, affinity_loss, build_affinity_net, labels_at_stride4
from wsss.backbones import build_backbone
from wsss.engine import StepContext

TINY = {"model": {"backbone": "resnet18", "backbone_kwargs": {"width": 8}, "norm_mode": "frozen",
                  "output_stride": 16, "edge_width": 8},
        "method": {"radius": 4}}


def tiny_net():
    torch.manual_seed(0)
    return build_affinity_net(TINY)


def test_loss_matches_the_formula():
    aff = torch.tensor([[[0.9, 0.2, 0.5, 0.7]]])
    bg = torch.tensor([[[1.0, 0, 0, 1]]])
    fg = torch.tensor([[[0, 0, 1.0, 0]]])
    neg = torch.tensor([[[0, 1.0, 0, 0]]])
    out = affinity_loss(aff, bg, fg, neg)
    e = 1e-5
    bg_term = (-math.log(0.9 + e) - math.log(0.7 + e)) / (2 + e)
    fg_term = -math.log(0.5 + e) / (1 + e)
    neg_term = -math.log(1 + e - 0.2) / (1 + e)
    assert out["loss"].item() == pytest.approx((bg_term / 2 + fg_term / 2 + neg_term) / 2, rel=1e-6)
    assert out["neg"].item() == pytest.approx(neg_term, rel=1e-6)
    empty = affinity_loss(aff, bg, fg * 0, neg)  # a missing pair type contributes 0
    assert empty["fg_pos"].item() == 0


def test_head_is_at_stride_4_and_backbone_gets_no_gradient():
    net = tiny_net()
    assert all(not p.requires_grad for p in net.backbone.parameters())
    assert net.edge.fc_edge6.in_channels == 5 * 8
    for size, grid in ((64, 16), (70, 18)):
        out = net(torch.randn(2, 3, size, size))
        assert out.shape == (2, 1, grid, grid)
    net.train()
    assert not any(m.training for m in net.backbone.modules())  # IRN: the backbone stays in eval mode
    out = net(torch.randn(2, 3, 64, 64))
    out.mean().backward()
    assert all(p.grad is None for p in net.backbone.parameters())
    assert all(p.grad is not None for p in net.edge.parameters())


def test_edge_map_pads_flips_and_crops_like_irn():
    net = tiny_net().eval()
    torch.manual_seed(1)
    img = torch.randn(3, 50, 38)
    edges = net.edge_map(img[None], [(50, 38)], pad_size=64)
    assert len(edges) == 1 and edges[0].shape == (13, 10)
    pad = torch.zeros(2, 3, 64, 64)
    pad[0, :, :50, :38] = img
    pad[1, :, :50, :38] = img.flip(-1)
    with torch.no_grad():
        logits = net(pad)[:, 0]
    want = torch.sigmoid(logits[0, :13, :10] / 2 + logits[1, :13, :10].flip(-1) / 2)
    assert torch.allclose(edges[0], want, atol=1e-6)
    # a batch with a smaller image gives the same map for each image as alone
    other = torch.randn(3, 40, 44)
    batch = torch.zeros(2, 3, 50, 44)
    batch[0, :, :50, :38] = img
    batch[1, :, :40, :44] = other
    both = net.edge_map(batch, [(50, 38), (40, 44)], pad_size=64)
    assert torch.allclose(both[0], edges[0], atol=1e-6)
    assert torch.allclose(both[1], net.edge_map(other[None], [(40, 44)], pad_size=64)[0], atol=1e-6)


def test_labels_at_stride4_sample_pil_nearest_pixels():
    mask = torch.arange(16 * 16).view(1, 16, 16)
    assert labels_at_stride4(mask)[0, 0].tolist() == [2 * 16 + 2, 2 * 16 + 6, 2 * 16 + 10, 2 * 16 + 14]


def test_training_steps_lower_the_loss_on_a_toy_scene():
    torch.manual_seed(0)
    task = AffinityTask(TINY)
    img = torch.zeros(4, 3, 64, 64)
    mask = torch.zeros(4, 64, 64, dtype=torch.long)
    for i in range(4):
        y0 = 8 + 4 * i
        img[i, :, y0:y0 + 28, 12:44] = torch.tensor([1.5, -1.0, 0.5]).view(3, 1, 1)
        mask[i, y0:y0 + 28, 12:44] = 1 + i % 2
        mask[i, y0 - 2:y0 + 2] = 255
    batch = {"image": img, "mask": mask}
    groups = task.param_groups()["main"]
    assert sum(p.numel() for g in groups for p in g["params"]) == sum(p.numel() for p in task.net.edge.parameters())
    opt = torch.optim.SGD(groups[0]["params"], lr=0.1, momentum=0.9)
    ctx = StepContext()
    losses = []
    for _ in range(20):
        out = task.training_step(batch, ctx)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.75 * losses[0]
    assert out["neg"] > 0 and out["bg_pos"] > 0 and out["fg_pos"] > 0


def test_non_frozen_backbones_are_frozen_anyway():
    bb = build_backbone("resnet18", width=8, norm_mode="train")
    net = AffinityNet(bb, width=8)
    assert all(not p.requires_grad for p in net.backbone.parameters())
