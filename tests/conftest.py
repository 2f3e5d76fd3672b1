import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def load_script(path, name=None):
    """The module of a script that is not in a package (``tools/*.py``, ``benchmarks/*.py``)."""
    import importlib.util

    path = Path(path)
    spec = importlib.util.spec_from_file_location(name or path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def load_tool(name):
    """The ``main`` of ``tools/<name>.py`` (tools are scripts, not a package)."""
    return load_script(ROOT / "tools" / f"{name}.py").main


@pytest.fixture
def tool():
    """``tool("train_cam")(argv)`` runs a tool's ``main`` in-process."""
    return load_tool


@pytest.fixture(scope="module")
def fg_maps_split(tmp_path_factory):
    """A 4-image synthetic split (48 px) whose 'CAMs' (``cams/``) and saliency maps (``sal/``)
    equal each image's foreground mask: ``(root, dataset)``."""
    import numpy as np

    from wsss.data import build_dataset
    from wsss.data.io import save_cam, save_gray_png
    from wsss.data.synthetic import generate

    root = tmp_path_factory.mktemp("syn")
    generate(root / "data", seed=1, n_train=4, n_val=1, size=48, progress=False)
    ds = build_dataset("synthetic", root / "data", "train")
    for i in ds.ids:
        fg = ds.load_gt_mask(i)
        fg = ((fg > 0) & (fg < 255)).astype(np.float32)
        save_cam(root / "cams" / f"{i}.npz", [0], fg[None, ::4, ::4], fg[None])
        save_gray_png(root / "sal" / f"{i}.png", (fg * 255).astype(np.uint8))
    return root, ds


def torchrun(script, out_dir, world=2, timeout=300):
    """Run ``script`` under torchrun with ``world`` CPU processes (gloo), passing ``out_dir`` as its
    argument; fails the test with the processes' stderr when they fail."""
    import os
    import subprocess

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           str(script), str(out_dir)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
