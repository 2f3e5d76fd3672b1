"""benchmarks/train_step.py: each row's wsss command trains the same method and network as its reference."""

from pathlib import Path

import pytest

from tests.conftest import load_script
from wsss.config import get_dotted, load_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_step():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    return load_script(ROOT / "benchmarks/train_step.py", "bench_train_step")


def config_of(args):
    """The effective config a wsss training command would run with."""
    cfg_path = Path(args[args.index("--config") + 1])
    overrides = [str(a) for a in args if "=" in str(a) and not str(a).startswith("-")]
    return load_config(cfg_path, overrides)


@pytest.mark.parametrize("row,method,backbone", [("cam", "cam", "resnet50"), ("pnoc", "pnoc", "resnet50"),
                                                 ("icam", "icam", "resnet38d"), ("cpn", "cpn", "resnet38d"),
                                                 ("aeft", "aeft", "resnet38d")])
def test_rows_train_their_method_on_the_reference_network(train_step, row, method, backbone):
    s = {"backbone": "resnet50", "batch": 4, "crop": 224, "resize_long": [140, 280], "resize_square": 257,
         "workers": 1, "epochs": 2}
    script, args = train_step.wsss_args(row, s, "/data/bench", "/work/bench", "cpu")
    assert script == "tools/train_cam.py"
    cfg = config_of(args)
    assert get_dotted(cfg, "method.name") == method
    assert get_dotted(cfg, "model.backbone") == backbone
    assert get_dotted(cfg, "model.weights") is None
    assert (get_dotted(cfg, "train.batch_size"), get_dotted(cfg, "augment.crop")) == (4, 224)
    assert args[args.index("--exp") + 1] == f"/work/bench/wsss_{row}"
