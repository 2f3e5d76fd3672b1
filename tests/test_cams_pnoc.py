import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wsss.cams import build_method
from wsss.cams import pnoc as pnoc_module
from wsss.cams.erasing import class_maps, hard_keep, linear_schedule, remove_class, sample_classes, soft_mask
from wsss.cams.losses import gap2d, mlsm, smooth_labels
from wsss.cams.puzzle import stitch, tile
from wsss.data.synthetic import NUM_CLASSES, render_sample
from wsss.data.transforms import build_train_transform
from wsss.engine import StepContext, Trainer, load_checkpoint, load_weights
from wsss.errors import CheckpointError, ConfigError

LS = 0.1


def tiny_cfg(method="pnoc", width=8, **method_kw):
    return {
        "model": {"backbone": "resnet18", "output_stride": 16, "norm_mode": "train", "weights": None,
                  "backbone_kwargs": {"width": width}},
        "method": {"name": method, "label_smoothing": LS, **method_kw},
        "train": {"epochs": 1, "batch_size": 4, "lr": 0.05, "num_workers": 0, "log_every": 1,
                  "channels_last": False, "device": "cpu", "seed": 0},
    }


def ctx_at(step, max_step=100):
    return StepContext(step=step, max_step=max_step)


# ------------------------------------------------------------------------------ label split
def test_sampled_class_is_a_uniform_positive_and_is_removed_from_the_label():
    labels = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    gen = torch.Generator().manual_seed(0)
    draws = sample_classes(labels.repeat(3000, 1), generator=gen).view(3000, 3)
    counts = torch.bincount(draws[:, 0], minlength=4).float() / 3000
    assert counts[1] == 0 and all(0.30 < counts[c] < 0.37 for c in (0, 2, 3))  # 1/3 each, +-4.5 sd
    assert (draws[:, 1] == 1).all() and (draws[:, 2] == -1).all()

    classes = torch.tensor([2, 1, -1])
    assert torch.equal(remove_class(labels, classes), torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]))
    # only the drawn class goes: a soft (smoothed) label keeps its other entries
    assert torch.equal(remove_class(torch.tensor([[0.9, 0.2]]), torch.tensor([0])), torch.tensor([[0.0, 0.2]]))


# ------------------------------------------------------------------------------------ masks
# Bilinear 2 -> 4 upsampling without aligned corners samples the source at (i + 0.5) / 2 - 0.5,
# clamped to the border: rows/columns of the 4x4 result are these mixes of the two sources.
UP = torch.tensor([[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]])


# Image 0's upsampled map, by hand: rows mix [0, 4] and [8, 0] as UP says, then columns.
EXPECTED_MAP0 = torch.tensor([[0.0, 1.0, 3.0, 4.0], [2.0, 2.25, 2.75, 3.0], [6.0, 4.75, 2.25, 1.0],
                              [8.0, 6.0, 2.0, 0.0]])


def hand_cams():
    cams = torch.zeros(3, 2, 2, 2)
    cams[0, 1] = torch.tensor([[0.0, 4.0], [8.0, -4.0]])  # image 0 erases class 1 (ReLU cuts the -4)
    cams[0, 0] = 100.0  # not the sampled class: must not matter
    cams[1, 0] = 2.0  # image 1 erases class 0: a flat map
    cams[2] = 50.0  # image 2 has no class to erase
    return cams, torch.tensor([1, 0, -1])


def test_class_maps_are_relu_bilinear_upsampling():
    cams, classes = hand_cams()
    maps = class_maps(cams, classes, (4, 4))
    expected0 = EXPECTED_MAP0
    assert torch.allclose(maps[0, 0], expected0)
    assert torch.allclose(maps[0, 0], UP @ F.relu(cams[0, 1]) @ UP.T)
    assert torch.allclose(maps[1, 0], torch.full((4, 4), 2.0)) and not maps[2].any()


def test_soft_mask_divides_by_the_batch_maximum():
    cams, classes = hand_cams()
    soft = soft_mask(cams, classes, (4, 4))
    batch_max = 8.0 + 1e-5  # image 0's peak; image 1's flat 2 is NOT rescaled to 1
    expected0 = EXPECTED_MAP0
    assert torch.allclose(soft[0, 0], expected0 / batch_max)
    assert torch.allclose(soft[1, 0], torch.full((4, 4), 2.0 / batch_max))
    assert not soft[2].any()
    # differentiable w.r.t. the CAMs (the CSE loss trains f through it)
    cams.requires_grad_(True)
    soft_mask(cams, classes, (4, 4)).sum().backward()
    assert cams.grad[0, 1].abs().sum() > 0 and cams.grad[0, 0].abs().sum() == 0


def test_hard_mask_uses_each_images_own_maximum():
    cams, classes = hand_cams()
    keep = hard_keep(cams, classes, (4, 4), delta=0.2)
    # image 0: map / 8 <= 0.2 only at 0, 1/8, 1/8 (values 0, 1, 1 / 8 = 0.125) and the 0 corner
    expected0 = torch.tensor([[1.0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 0, 1]])
    assert torch.equal(keep[0, 0], expected0)
    assert not keep[1].any()  # flat map: 2 / 2 = 1 > 0.2 everywhere (a global norm would give 0.25)
    assert keep[2].all()  # nothing to erase
    assert hard_keep(cams, classes, (4, 4), delta=0.3)[0, 0, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert hard_keep(cams, classes, (4, 4), delta=0.4)[0, 0, 0].tolist() == [1.0, 1.0, 1.0, 0.0]


# ------------------------------------------------------------------------------- schedules
def test_linear_schedules_at_start_middle_end():
    task = build_method("pnoc", tiny_cfg(), 3)
    at = {s: ctx_at(s) for s in (0, 25, 50, 100)}
    assert [task.lambda_cse_at(at[s]) for s in (0, 50, 100)] == pytest.approx([0.3, 0.65, 1.0])
    assert [task.lambda_noc_at(at[s]) for s in (0, 50, 100)] == pytest.approx([0.0, 0.5, 1.0])
    assert [task.alpha_at(at[s]) for s in (0, 25, 50, 100)] == pytest.approx([0.0, 2.0, 4.0, 4.0])
    assert linear_schedule(80, 100, 0.0, 4.0, 0.5) == 4.0 and linear_schedule(0, 100, 0.3, 1.0, 0.0) == 1.0
    assert linear_schedule(50, 100, 1.0, 0.0, 1.0) == pytest.approx(0.5)
    assert linear_schedule(100, 100, 1.0, 0.0, 0.5) == 0.0


# ------------------------------------------------------------------------ one-step semantics
def make_batch(b=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 1]])[:b]
    return {"image": torch.randn(b, 3, size, size, generator=g), "label": labels}


def fixed_classes(monkeypatch, classes):
    monkeypatch.setattr(pnoc_module, "sample_classes", lambda labels: classes.clone())


def reference_two_backwards(task, batch, classes, ctx, leak):
    """The reference's order, written out: backward of L_f (oc called directly, eval mode), step
    boundary (oc's grads zeroed unless ``leak``), then backward of the NOC loss (oc train mode)."""
    net, oc = task.net, task.oc
    x, y = batch["image"], batch["label"]
    ys = smooth_labels(y, LS)
    task.zero_grad(set_to_none=True)
    logits, a = net(x)
    merged = stitch(net(tile(x))[1])
    re = ((a - merged).abs() * y[:, :, None, None]).mean()
    b = torch.arange(len(classes))
    maps = F.interpolate(F.relu(a[b, classes])[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    y_oc = y.clone()
    y_oc[b, classes] = 0
    oc.eval()
    o_loss = mlsm(oc(x * (1 - maps / (maps.max() + 1e-5)))[0], smooth_labels(y_oc, LS))
    loss_f = mlsm(logits, ys) + mlsm(gap2d(merged), ys) + task.alpha_at(ctx) * re + task.lambda_cse_at(ctx) * o_loss
    loss_f.backward()
    g_f = {n: p.grad.clone() for n, p in net.named_parameters()}
    if not leak:
        oc.zero_grad(set_to_none=True)
    m = maps.detach()
    keep = (m / (m.amax(dim=(1, 2, 3), keepdim=True) + 1e-5) <= task.delta_noc).float()
    oc.train()
    (task.lambda_noc_at(ctx) * mlsm(oc(x * keep)[0], ys)).backward()
    g_oc = {n: p.grad.clone() for n, p in oc.named_parameters() if p.requires_grad}  # BN affines frozen
    return g_f, g_oc, loss_f.item()


@pytest.mark.parametrize("leak", [False, True])
def test_one_backward_equals_the_references_two_step_gradients(monkeypatch, leak):
    torch.manual_seed(0)
    task = build_method("pnoc", tiny_cfg(leak_cse_grad_to_oc=leak), 3)
    task.train()
    batch, classes, ctx = make_batch(), torch.tensor([2, 1]), ctx_at(40)
    fixed_classes(monkeypatch, classes)
    out = task.training_step(batch, ctx)
    task.zero_grad(set_to_none=True)
    out["loss"].backward()
    mine_f = {n: p.grad.clone() for n, p in task.net.named_parameters()}
    mine_oc = {n: p.grad.clone() for n, p in task.oc.named_parameters() if p.requires_grad}
    ref_f, ref_oc, ref_loss_f = reference_two_backwards(task, batch, classes, ctx, leak)
    assert out["loss_f"].item() == pytest.approx(ref_loss_f, rel=1e-6)
    for n in ref_f:
        assert torch.allclose(mine_f[n], ref_f[n], rtol=1e-5, atol=1e-8), n
    for n in ref_oc:
        assert torch.allclose(mine_oc[n], ref_oc[n], rtol=1e-5, atol=1e-8), n
    assert any(g.abs().sum() > 0 for g in ref_oc.values())


@pytest.mark.parametrize("leak", [False, True])
def test_generator_loss_leaves_the_ocs_gradients_untouched(monkeypatch, leak):
    # At step 0, lambda_noc = 0: whatever reaches oc's weights comes from f's loss alone.
    torch.manual_seed(0)
    task = build_method("pnoc", tiny_cfg(leak_cse_grad_to_oc=leak), 3)
    task.train()
    fixed_classes(monkeypatch, torch.tensor([0, 2]))
    out = task.training_step(make_batch(), ctx_at(0))
    out["loss"].backward()
    oc_grad = sum(float(p.grad.abs().sum()) for p in task.oc.parameters() if p.grad is not None)
    f_grad = sum(float(p.grad.abs().sum()) for p in task.net.parameters() if p.grad is not None)
    assert f_grad > 0
    assert (oc_grad > 0) == leak  # the reference's quirk is the only way in


def test_noc_loss_uses_the_full_label_and_cse_the_label_without_the_erased_class(monkeypatch):
    torch.manual_seed(0)
    task = build_method("pnoc", tiny_cfg(), 3)
    task.train()
    batch, classes = make_batch(), torch.tensor([2, 1])
    fixed_classes(monkeypatch, classes)
    out = task.training_step(batch, ctx_at(50))
    with torch.no_grad():
        _, a = task.net(batch["image"])
        x, y = batch["image"], batch["label"]
        keep = hard_keep(a, classes, x.shape[-2:], 0.2)
        noc_logits = task.oc(x * keep)[0]
        cse_logits = task.oc(x * (1 - soft_mask(a, classes, x.shape[-2:])))[0]
    y_without = torch.tensor([[1.0, 0, 0], [0, 0, 1]])
    assert out["noc"].item() == pytest.approx(mlsm(noc_logits, smooth_labels(y, LS)).item(), rel=1e-5)
    assert out["noc"].item() != pytest.approx(mlsm(noc_logits, smooth_labels(y_without, LS)).item(), rel=1e-3)
    assert out["cse"].item() == pytest.approx(mlsm(cse_logits, smooth_labels(y_without, LS)).item(), rel=1e-5)
    assert out["loss_noc"].item() == pytest.approx(0.5 * out["noc"].item(), rel=1e-6)


def test_without_puzzle_the_generator_loss_is_oc_cse(monkeypatch):
    torch.manual_seed(0)
    task = build_method("poc", tiny_cfg("poc", puzzle=False), 3)
    task.train()
    batch = make_batch()
    fixed_classes(monkeypatch, torch.tensor([0, 1]))
    out = task.training_step(batch, ctx_at(50))
    with torch.no_grad():
        logits, _ = task.net(batch["image"])
    expected = mlsm(logits, smooth_labels(batch["label"], LS)) + 0.65 * out["cse"]
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert "p_cls" not in out and "re" not in out


def test_poc_keeps_the_oc_frozen_and_has_one_optimizer():
    poc = build_method("poc", tiny_cfg("poc"), 3)
    pnoc = build_method("pnoc", tiny_cfg(), 3)
    assert set(poc.param_groups()) == {"main"} and set(pnoc.param_groups()) == {"main", "noc"}
    assert not any(p.requires_grad for p in poc.oc.parameters())
    noc_ids = {id(p) for g in pnoc.param_groups()["noc"] for p in g["params"]}
    # P-NOC's "fix" mode: the OC's BatchNorm affine parameters are not trained
    bn_ids = {id(p) for m in pnoc.oc.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters()}
    assert bn_ids and not any(p.requires_grad for m in pnoc.oc.modules() if isinstance(m, torch.nn.BatchNorm2d)
                              for p in m.parameters())
    assert noc_ids == {id(p) for p in pnoc.oc.parameters()} - bn_ids
    assert not noc_ids & {id(p) for g in pnoc.param_groups()["main"] for p in g["params"]}
    poc.train()
    pnoc.train()
    assert poc.net.training and not poc.oc.training and not pnoc.oc.training
    assert all(not m.training for m in pnoc.oc.modules() if isinstance(m, torch.nn.BatchNorm2d))


# ------------------------------------------------------------------- the OC experiment folder
class Rendered(torch.utils.data.Dataset):
    """Synthetic-benchmark scenes rendered in memory (no files)."""

    def __init__(self, n, size=64, transform=None):
        self.samples = [render_sample(0, i, size) for i in range(n)]
        self.transform = transform or build_train_transform({"hflip": True})
        self.num_classes = NUM_CLASSES

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        s = self.samples[i]
        label = np.zeros(NUM_CLASSES, np.float32)
        label[s.classes] = 1
        return self.transform({"id": str(i), "image": s.image, "label": label, "mask": s.mask, "maps": {}})


@pytest.fixture(scope="module")
def oc_exp(tmp_path_factory):
    """A finished vanilla-CAM experiment: the ordinary classifier."""
    exp = tmp_path_factory.mktemp("oc")
    cfg = tiny_cfg("cam", width=8)
    cfg["train"].update(epochs=3, batch_size=8, lr=0.1)
    Trainer(cfg, build_method("cam", cfg, NUM_CLASSES), Rendered(24), exp).fit()
    return exp


def test_oc_experiment_errors(tmp_path, oc_exp):
    task = build_method("poc", tiny_cfg("poc", oc_exp=str(tmp_path / "none")), NUM_CLASSES)
    with pytest.raises(CheckpointError, match="not a finished CAM experiment"):
        task.load_oc()
    with pytest.raises(ConfigError, match="oc_exp is not set"):
        build_method("poc", tiny_cfg("poc"), NUM_CLASSES).load_oc()
    wide = build_method("poc", tiny_cfg("poc", width=16, oc_exp=str(oc_exp)), NUM_CLASSES)
    with pytest.raises(CheckpointError, match="backbone_kwargs"):
        wide.load_oc()
    # the OC may differ from f when method.oc_model says so
    ok = build_method("poc", tiny_cfg("poc", width=16, oc_exp=str(oc_exp), oc_model={"backbone_kwargs": {"width": 8}}),
                      NUM_CLASSES)
    ok.load_oc()
    state = {k[4:]: v for k, v in load_checkpoint(oc_exp / "checkpoints" / "last.pth")["state_dict"].items()
             if k.startswith("net.")}
    assert all(torch.equal(ok.oc.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(CheckpointError, match="classes|shape"):
        build_method("poc", tiny_cfg("poc", oc_exp=str(oc_exp)), 3).load_oc()


@pytest.mark.slow
def test_real_steps_lower_both_losses_and_inference_needs_no_oc(tmp_path, oc_exp):
    # constant loss weights (schedules finished at once), so losses are comparable over steps
    cfg = tiny_cfg("pnoc", oc_exp=str(oc_exp), alpha_schedule=0, lambda_cse_schedule=0, lambda_noc_schedule=0)
    cfg["train"].update(epochs=6, batch_size=8, lr=0.05)
    data = Rendered(24)
    trainer = Trainer(cfg, build_method("pnoc", cfg, NUM_CLASSES), data, tmp_path / "pnoc")
    oc_before = copy.deepcopy(trainer.task.oc.state_dict())
    trainer.fit()
    steps = [r for r in trainer.metrics.read() if r["kind"] == "step"]
    assert len(steps) == 18
    first, last = steps[:3], steps[-3:]
    for key in ("loss_f", "noc"):
        before, after = np.mean([r[key] for r in first]), np.mean([r[key] for r in last])
        assert after < 0.9 * before, (key, before, after)
    # the OC was loaded from the OC experiment at the start and then trained adversarially
    ckpt = load_checkpoint(tmp_path / "pnoc" / "checkpoints" / "last.pth")
    oc_state = load_checkpoint(oc_exp / "checkpoints" / "last.pth")["state_dict"]
    assert not torch.equal(oc_before["head.weight"], oc_state["net.head.weight"])  # random init before
    assert not torch.equal(ckpt["state_dict"]["oc.head.weight"], oc_state["net.head.weight"])
    # inference rebuilds the method from the saved config and loads its own checkpoint only
    saved = copy.deepcopy(ckpt["config"])
    saved["method"]["oc_exp"] = str(tmp_path / "moved")
    task = load_weights(build_method("pnoc", saved, NUM_CLASSES), ckpt).eval()
    with torch.inference_mode():
        assert task.cam_forward(torch.randn(1, 3, 64, 64)).shape == (1, NUM_CLASSES, 4, 4)


def test_noc_steps_train_the_oc_but_never_its_batchnorm(tmp_path, oc_exp):
    # P-NOC builds the OC in "fix" mode (networks.py:259-262): BN weight/bias requires_grad=False
    # and running statistics frozen, so the NOC optimizer moves only convolutions and the head.
    cfg = tiny_cfg("pnoc", oc_exp=str(oc_exp), lambda_noc_schedule=0)
    cfg["train"].update(epochs=1, batch_size=8)
    Trainer(cfg, build_method("pnoc", cfg, NUM_CLASSES), Rendered(16), tmp_path / "pnoc").fit()
    trained = load_checkpoint(tmp_path / "pnoc" / "checkpoints" / "last.pth")["state_dict"]
    start = {k[4:]: v for k, v in load_checkpoint(oc_exp / "checkpoints" / "last.pth")["state_dict"].items()
             if k.startswith("net.")}
    oc = build_method("pnoc", cfg, NUM_CLASSES).oc
    bn = {f"{n}.{k}" for n, m in oc.named_modules() if isinstance(m, torch.nn.BatchNorm2d)
          for k in ("weight", "bias", "running_mean", "running_var")}
    assert bn
    for k in bn:
        assert torch.equal(trained["oc." + k], start[k]), k
    moved = [k for k in start if k not in bn and not torch.equal(trained["oc." + k], start[k])]
    assert "head.weight" in moved and any(k.endswith("conv1.weight") for k in moved)


def test_poc_loads_the_oc_at_the_start_of_training_and_keeps_it(tmp_path, oc_exp):
    cfg = tiny_cfg("poc", oc_exp=str(oc_exp))
    cfg["train"].update(epochs=1, batch_size=8)
    Trainer(cfg, build_method("poc", cfg, NUM_CLASSES), Rendered(16), tmp_path / "poc").fit()
    ckpt = load_checkpoint(tmp_path / "poc" / "checkpoints" / "last.pth")["state_dict"]
    oc_state = load_checkpoint(oc_exp / "checkpoints" / "last.pth")["state_dict"]
    for k, v in oc_state.items():
        if k.startswith("net."):
            assert torch.equal(ckpt["oc." + k[4:]], v), k


@pytest.mark.parametrize("dataset", ["synthetic", "voc", "coco"])
def test_configs_state_the_recipe(dataset):
    from wsss.cams import METHODS
    from wsss.config import load_config

    configs = Path(__file__).resolve().parents[1] / "configs" / dataset
    oc = load_config(configs / "oc.yaml")
    assert oc["method"]["name"] == "cam" and oc["method"]["label_smoothing"] == 0.1
    # RandAugment as the reference, except on the synthetic benchmark (see its oc.yaml)
    assert bool(oc["augment"]["randaugment"]) == (dataset != "synthetic")
    for name in ("poc", "pnoc"):
        cfg = load_config(configs / f"{name}.yaml")
        m = cfg["method"]
        assert m["name"] == name and name in METHODS.names() and m["label_smoothing"] == 0.1
        assert m["oc_exp"] == oc["exp"] and not cfg["augment"].get("randaugment")
        assert (m["alpha"], m["alpha_schedule"], m["lambda_cse_init"], m["lambda_cse"]) == (4.0, 0.5, 0.3, 1.0)
        assert cfg["model"]["backbone"] == oc["model"]["backbone"]
        assert m.get("puzzle", True) == (dataset != "synthetic")  # see configs/synthetic/poc.yaml
        if name == "pnoc":
            assert (m["lambda_noc_init"], m["lambda_noc"], m["delta_noc"]) == (0.0, 1.0, 0.2)
            assert m["leak_cse_grad_to_oc"] is False
