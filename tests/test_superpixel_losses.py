"""Losses of the association network: hand-computed cases, a naive loop, and a short training."""

import math

import numpy as np
import pytest
import torch

from wsss.superpixel.losses import affinity_losses, binary_target, cell_labels, reconstruction_loss
from wsss.superpixel.net import SpixelNet
from wsss.superpixel.ops import OFFSETS25


def centre_assoc(h, w):
    q = torch.zeros(1, 9, h, w, dtype=torch.float64)
    q[:, 4] = 1.0
    return q


def test_reconstruction_loss_known_answer():
    """Two 2x2 cells, hard centre associations: cell 0 all foreground (exact), cell 1 half
    foreground (each pixel reconstructs 0.5: 4 log 2); every pixel is 0.5 px from its cell's
    mean position in x and y (8 sqrt(0.5))."""
    sal = torch.tensor([[[[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]]], dtype=torch.float64)
    target = binary_target(sal, 0.2)
    loss, sem, pos = reconstruction_loss(centre_assoc(2, 4), target, cell=2, pos_weight=0.003, scale=0.005)
    assert sem.item() == pytest.approx(0.005 * 4 * math.log(2), rel=1e-6)
    assert pos.item() == pytest.approx(0.005 * 8 * math.sqrt(0.5) * 0.003 / 2, rel=1e-6)
    assert loss.item() == pytest.approx(sem.item() + pos.item())
    # the batch mean: two identical images give the same loss
    loss2, _, _ = reconstruction_loss(centre_assoc(2, 4).repeat(2, 1, 1, 1), target.repeat(2, 1, 1, 1), cell=2)
    assert loss2.item() == pytest.approx(loss.item())


@pytest.mark.slow
def test_reconstruction_loss_on_a_toy_image_lowers_after_a_few_steps():
    """The association network learns a diagonal saliency boundary that cuts the grid: the loss
    drops below both its start and the regular grid (hard centre associations)."""
    torch.manual_seed(0)
    h = w = 32
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    sal = ((xs + 0.6 * ys) > 22).double()[None, None]
    image = torch.stack([sal[0, 0] * 2 - 1, -(sal[0, 0] * 2 - 1), torch.zeros(h, w, dtype=torch.float64)])[None]
    image = image.float().repeat(2, 1, 1, 1)
    target = binary_target(sal.float(), 0.2).repeat(2, 1, 1, 1)
    grid = reconstruction_loss(centre_assoc(h, w).float().repeat(2, 1, 1, 1), target)[0].item()
    net = SpixelNet()
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
    losses = []
    for _ in range(40):
        loss = reconstruction_loss(net(image), target)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert losses[-1] < grid, (losses[-1], grid)


def test_cell_labels_rules():
    """Background at 0.05; ignored when the label flips with the background at 0.55, or when the
    second class > 0.05 x the first on a foreground cell."""
    cams = torch.tensor([[0.01, 0.8, 0.3, 0.8, 0.8, 0.0],     # class channel 0
                         [0.02, 0.0, 0.0, 0.1, 0.03, 0.0]])   # class channel 1
    labels, ignore = cell_labels(cams[None, :, None, :])
    assert labels[0, 0].tolist() == [0, 1, 1, 1, 1, 0]
    assert ignore[0, 0].tolist() == [False, False, True, True, False, False]
    # one channel: no second class
    labels, ignore = cell_labels(cams[None, :1, None, :])
    assert ignore[0, 0].tolist() == [False, False, True, False, False, False]


def naive_affinity_losses(a, labels, ignore, t=0.75, min_same=15):
    b, _, h, w = a.shape
    press = diff = 0.0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                same, apart = 0, 0.0
                for d, (dy, dx) in enumerate(OFFSETS25):
                    ty, tx = y + dy, x + dx
                    inside = 0 <= ty < h and 0 <= tx < w
                    other = labels[i, ty, tx] if inside else 0
                    if ignore[i, y, x] or (inside and ignore[i, ty, tx]):
                        continue
                    if other == labels[i, y, x]:
                        same += 1
                    else:
                        apart += a[i, d, y, x]
                press += max(0.0, (a[i, 12, y, x] - t) * (same > min_same))
                diff += max(0.0, apart)
    return press / b, diff / b


def test_affinity_losses_against_a_naive_loop_and_by_hand():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 25, 5, 6, generator=g, dtype=torch.float64)
    a[:, 12] += 0.5
    labels = torch.randint(0, 2, (2, 5, 6), generator=g)
    labels[0, :, :3] = 0
    ignore = torch.rand(2, 5, 6, generator=g) < 0.15
    press, diff = affinity_losses(a, labels, ignore)
    ref = naive_affinity_losses(a.numpy(), labels.numpy(), ignore.numpy())
    assert press.item() == pytest.approx(ref[0]) and diff.item() == pytest.approx(ref[1])
    assert press.item() > 0 and diff.item() > 0
    # one background cell: all 25 neighbours (24 outside = background) agree -> press only
    one = torch.full((1, 25, 1, 1), 0.01, dtype=torch.float64)
    one[0, 12] = 0.9
    p, d = affinity_losses(one, torch.zeros(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1, dtype=torch.bool))
    assert (p.item(), d.item()) == (pytest.approx(0.15), 0.0)
    # a foreground cell among (outside) background: no press, diff = sum of the 24 others
    p, d = affinity_losses(one, torch.ones(1, 1, 1, dtype=torch.long), torch.zeros(1, 1, 1, dtype=torch.bool))
    assert (p.item(), d.item()) == (0.0, pytest.approx(0.24))
    # an ignored cell contributes nothing
    p, d = affinity_losses(one, torch.ones(1, 1, 1, dtype=torch.long), torch.ones(1, 1, 1, dtype=torch.bool))
    assert (p.item(), d.item()) == (0.0, 0.0)


def test_association_network_layout():
    net = SpixelNet().eval()
    x = torch.randn(1, 3, 48, 32)
    with torch.no_grad():
        q = net(x)
    assert q.shape == (1, 9, 48, 32)
    torch.testing.assert_close(q.sum(1), torch.ones(1, 48, 32))
    keys = list(net.state_dict())
    assert keys[:6] == ["conv0a.0.weight", "conv0a.1.weight", "conv0a.1.bias", "conv0a.1.running_mean",
                        "conv0a.1.running_var", "conv0a.1.num_batches_tracked"]
    assert {f"pred_mask{i}.weight" for i in range(4)} <= set(keys) and "deconv3.0.bias" in keys
    trainable = {n.split(".")[0] for n, p in net.named_parameters() if p.requires_grad}
    assert "pred_mask0" in trainable and not {"pred_mask1", "pred_mask2", "pred_mask3"} & trainable
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.randn(1, 3, 40, 32))
    assert np.isclose(sum(p.numel() for p in net.parameters()), 2_287_956)
