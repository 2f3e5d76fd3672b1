"""The contract of every registered trainable task (CONTRIBUTING.md, "Adding a method or a stage").

Parametrised over the names of every stage's registry, each with its tiny config in
``tests/configs/<stage>/<name>.yaml``: the training set it builds (CAM methods: no ground-truth
mask), one training step (finite loss, a gradient for every trainable parameter, parameter
groups covering each trainable parameter once), a strict state-dict round trip through
``from_checkpoint``, and for CAM methods the inference hook's shapes and the CAM file round trip.
"""

import numpy as np
import pytest
import torch
from tiny_configs import tiny

from wsss.affinity import AFFINITY_TASKS
from wsss.cams import METHODS
from wsss.cams.inference import image_pyramid
from wsss.config import save_config
from wsss.data import build_dataset, collate
from wsss.data.io import load_cam, save_cam, save_gray_png, save_index_png
from wsss.data.synthetic import generate
from wsss.engine import StepContext, save_checkpoint
from wsss.saliency import SALIENCY_TASKS
from wsss.segmentation import SEG_TASKS
from wsss.superpixel import SUPERPIXEL_TASKS

REGISTRIES = {"methods": METHODS, "saliency": SALIENCY_TASKS, "affinity": AFFINITY_TASKS, "segmentation": SEG_TASKS,
              "superpixel": SUPERPIXEL_TASKS}
CASES = [(stage, name) for stage, reg in REGISTRIES.items() for name in reg.names()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A tiny synthetic set and the inputs tasks read from other stages."""
    tmp = tmp_path_factory.mktemp("contract")
    root = tmp / "data"
    generate(root, seed=2, n_train=4, n_val=1, size=64, workers=1, progress=False)
    ds = build_dataset("synthetic", root, "train")
    for i in ds.ids:
        gt = ds.load_gt_mask(i)
        keys = sorted({int(v) - 1 for v in np.unique(gt) if 0 < v < 255})
        hr = np.stack([(gt == k + 1).astype(np.float32) for k in keys]) if keys else np.zeros((0, 64, 64))
        save_cam(tmp / "cams" / f"{i}.npz", keys, hr[:, ::4, ::4], hr)
        save_gray_png(tmp / "saliency" / f"{i}.png", (((gt > 0) & (gt < 255)) * 255).astype(np.uint8))
        save_index_png(tmp / "labels" / f"{i}.png", gt)
    values = {"root": root, "cams": tmp / "cams", "saliency": tmp / "saliency", "labels": tmp / "labels",
              "oc_exp": tmp / "oc", "superpixel_exp": tmp / "superpixel"}
    # finished experiments: a vanilla CAM (the ordinary classifier of P-OC / P-NOC) and the
    # association network of SP-CAM
    for stage, name, exp in (("methods", "cam", "oc"), ("superpixel", "psam", "superpixel")):
        cfg = tiny(stage, name, values)
        task = REGISTRIES[stage].get(name)(cfg, ds.num_classes)
        save_config(cfg, tmp / exp / "config.yaml")
        save_checkpoint(tmp / exp / "checkpoints" / "last.pth", {"state_dict": task.state_dict(), "config": cfg, "epoch": 1})
    return values, ds.num_classes


@pytest.mark.parametrize("stage,name", CASES, ids=[f"{s}-{n}" for s, n in CASES])
def test_task_contract(stage, name, inputs, tmp_path):
    values, num_classes = inputs
    torch.manual_seed(0)
    cfg = tiny(stage, name, values)
    task_cls = REGISTRIES[stage].get(name)
    assert task_cls.name == name and task_cls.exports
    cfg["method"] = task_cls.effective_options(cfg)
    dataset = task_cls.train_dataset(cfg, cfg["data"])
    assert dataset.num_classes == num_classes
    batch = collate([dataset[i] for i in range(2)])

    task = task_cls(cfg, num_classes)
    ctx = StepContext(step=1, max_step=10, cfg=cfg, exp_dir=tmp_path, log=lambda record: None)
    task.on_train_start(ctx, resumed=False)
    task.train()
    out = task.training_step(batch, ctx)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0

    trainable = {id(p): n for n, p in task.named_parameters() if p.requires_grad}
    grouped = [id(p) for groups in task.param_groups().values() for g in groups for p in g["params"]]
    assert len(grouped) == len(set(grouped)), "a parameter is in two groups"
    assert set(grouped) == set(trainable), "the groups miss or add parameters"
    out["loss"].backward()
    no_grad = [n for n, p in task.named_parameters() if p.requires_grad and p.grad is None
               and not n.startswith(tuple(task.unused_parameters))]
    assert not no_grad, f"trainable parameters without a gradient: {no_grad[:5]}"

    clone = task_cls.from_checkpoint(cfg, num_classes, {"state_dict": task.state_dict()})
    mine, theirs = task.state_dict(), clone.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert set(clone.exported()) == set(task_cls.exports)

    if stage == "methods":
        check_cam_inference(clone.eval(), dataset, tmp_path)


@pytest.mark.parametrize("name", METHODS.names())
def test_cam_training_batches_hold_no_ground_truth_mask(name, inputs):
    """Weak supervision stays weak: a CAM method's training set yields labels, never masks."""
    values, _ = inputs
    cfg = tiny("methods", name, values)
    dataset = METHODS.get(name).train_dataset(cfg, cfg["data"])
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, collate_fn=collate)
    for batch in loader:
        assert batch["label"].shape == (2, dataset.num_classes)
        assert all(m is None for m in batch["mask"]), f"{name}'s training batch holds a mask"


def check_cam_inference(task, dataset, tmp_path):
    sample = dataset.dataset[0]
    image, keys = sample["image"], np.flatnonzero(sample["label"] > 0.5)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        channels = task.num_classes + int(task.background)
        assert task.cam_forward(x).shape[:2] == (2, channels)
        [maps] = task.infer_cams(image_pyramid(image, (1.0, 0.5)), image.shape[:2], [keys])
    assert maps["cam"].shape == (len(keys), 16, 16) and maps["hr_cam"].shape == (len(keys), 64, 64)
    assert ("hr_cam_bg" in maps) == task.background
    save_cam(tmp_path / "x.npz", keys, **maps)
    back = load_cam(tmp_path / "x.npz")
    assert back["keys"].tolist() == list(keys)
    for k, v in maps.items():
        np.testing.assert_allclose(back[k], v.numpy(), atol=1e-3)
