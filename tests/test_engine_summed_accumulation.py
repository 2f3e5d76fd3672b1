"""The engine averages accumulated micro-batch gradients; P-NOC's scripts SUM them
(``loss.backward()`` per micro-batch without dividing by ``accumulate_steps``: train_pnoc.py,
train_poc.py, ccam/train_hints.py). With SGD (momentum or not, Nesterov or not) and coupled
weight decay, the sum of k micro-batch gradients at (lr, wd) is exactly the engine's mean at
(k * lr, wd / k): the momentum buffer is the reference's divided by k, the step the same.
The published configs use those values (docs/methods/pnoc.md, "Optimizer step")."""

from pathlib import Path

import pytest
import torch
from torch import nn

from wsss.config import load_config
from wsss.engine import TaskModule, Trainer, param_groups_4, poly_factor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


class Data(torch.utils.data.Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(7)
        self.x = torch.randn(n, 5, generator=g)
        self.y = (self.x[:, :3] > 0).float()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"id": str(i), "image": self.x[i], "label": self.y[i]}


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(5, 6)  # "backbone": weight (lr x1, wd) and bias (lr x2, no wd)
        self.head = nn.Linear(6, 3)  # "new": weight (lr x10, wd) and bias (lr x20, no wd)

    def forward(self, x):
        return self.head(torch.tanh(self.body(x)))


def loss_fn(net, batch):
    return nn.functional.multilabel_soft_margin_loss(net(batch["image"]), batch["label"])


class Task(TaskModule):
    """Records the micro-batches it sees, so the reference can replay them."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.seen = []

    def param_groups(self):
        return {"main": param_groups_4(self.net.body, self.net.head)}

    def training_step(self, batch, ctx):
        self.seen.append({k: v.clone() for k, v in batch.items() if torch.is_tensor(v)})
        return {"loss": loss_fn(self.net, batch)}


def reference_run(net, micro_batches, k, lr, wd, momentum, nesterov, max_step):
    """P-NOC's loop: backward per micro-batch (gradients summed), step every k micro-batches
    with its PolyOptimizer groups (lr, 2 lr, 10 lr, 20 lr; wd, 0, wd, 0), poly 0.9."""
    groups = [{"params": [net.body.weight], "lr": lr, "weight_decay": wd},
              {"params": [net.body.bias], "lr": 2 * lr, "weight_decay": 0},
              {"params": [net.head.weight], "lr": 10 * lr, "weight_decay": wd},
              {"params": [net.head.bias], "lr": 20 * lr, "weight_decay": 0}]
    opt = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    initial = [g["lr"] for g in opt.param_groups]
    step = 0
    for i, batch in enumerate(micro_batches):
        loss_fn(net, batch).backward()
        if (i + 1) % k == 0:
            for g, lr0 in zip(opt.param_groups, initial):
                g["lr"] = lr0 * (1 - step / max_step) ** 0.9
            opt.step()
            opt.zero_grad()
            step += 1
    return net


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
@pytest.mark.parametrize("k", [2, 4])
def test_engine_mean_at_k_lr_and_wd_over_k_equals_the_references_summed_step(tmp_path, momentum, nesterov, k):
    lr, wd, micro = 0.05, 1e-2, 2  # a large wd so that a wrong decay would show
    torch.manual_seed(0)
    net = Net()
    start = {n: p.detach().clone() for n, p in net.state_dict().items()}
    cfg = {"train": {"epochs": 2, "batch_size": micro * k, "accumulate": k, "lr": k * lr, "weight_decay": wd / k,
                     "momentum": momentum, "nesterov": nesterov, "num_workers": 0, "device": "cpu",
                     "channels_last": False, "log_every": 1, "seed": 1}}
    task = Task(net)
    trainer = Trainer(cfg, task, Data(), tmp_path / "exp")
    trainer.fit(resume=False)
    assert trainer.step == trainer.max_step == 2 * 16 // (micro * k)  # several steps: momentum is exercised

    ref = Net()
    ref.load_state_dict(start)
    reference_run(ref, task.seen, k, lr, wd, momentum, nesterov, trainer.max_step)
    for name, p in ref.state_dict().items():
        assert not torch.equal(p, start[name]), name
        assert torch.allclose(net.state_dict()[name], p, rtol=1e-5, atol=1e-7), name


def test_poly_factor_matches_the_references_poly_optimizer():
    assert poly_factor(0, 10) == 1.0 and poly_factor(10, 10) == 0.0
    assert poly_factor(3, 10, 0.9) == pytest.approx((1 - 3 / 10) ** 0.9)


# (config, the reference's lr, wd, micro-batch and number of summed micro-batches) from P-NOC's
# runners: runners/config/dataset.sh (LR 0.1 VOC / 0.05 COCO, WD 1e-4), runners/1-priors.sh
# (P-OC / P-NOC: BATCH=16, ACCUMULATE_STEPS=2), runners/2-saliency.sh (C2AM-H: BATCH_SIZE=64,
# ACCUMULATE_STEPS=2, LR=0.001, COCO 0.0005; train_hints.py --wd default 1e-4).
SUMMED = [
    ("voc/poc.yaml", 0.1, 1e-4, 16, 2),
    ("voc/pnoc.yaml", 0.1, 1e-4, 16, 2),
    ("coco/poc.yaml", 0.05, 1e-4, 16, 2),
    ("coco/pnoc.yaml", 0.05, 1e-4, 16, 2),
    ("voc/ccam.yaml", 1e-3, 1e-4, 64, 2),
    ("coco/ccam.yaml", 5e-4, 1e-4, 64, 2),
]


@pytest.mark.parametrize("config,lr,wd,micro,k", SUMMED)
def test_published_configs_take_the_references_summed_step(config, lr, wd, micro, k):
    t = load_config(CONFIGS / config)["train"]
    assert t["batch_size"] == micro * k
    assert t["lr"] == pytest.approx(k * lr) and t["weight_decay"] == pytest.approx(wd / k)
    # the OC of P-NOC (optimizer "noc") shares lr and wd: the reference's ocopt sums its
    # micro-batch gradients the same way (train_pnoc.py:249-258) with lr_alpha_oc = 1
    for over in (t.get("optimizers") or {}).values():
        assert not {"lr", "weight_decay"} & set(over)


@pytest.mark.parametrize("config", ["voc/cam.yaml", "voc/oc.yaml", "coco/cam.yaml", "coco/oc.yaml"])
def test_configs_without_accumulation_keep_the_references_values(config):
    # the vanilla classifier / OC: BATCH=32, ACCUMULATE_STEPS=1 (runners/1-priors.sh)
    ref_lr = 0.05 if config.startswith("coco") else 0.1
    t = load_config(CONFIGS / config)["train"]
    assert t.get("accumulate", 1) == 1 and t["lr"] == pytest.approx(ref_lr)
    assert t["weight_decay"] == pytest.approx(1e-4)
