"""Shared pieces of the side-by-side benchmarks against the reference implementations
(train_step.py, vs_reference.py): where the references live, how a child run is started and
timed, and how its timings are summarised.

The references run from copies OUTSIDE this repository (never committed), with their own
Python environment, both made by ``python benchmarks/ref_setup.py`` (see benchmarks/README.md,
"Against the reference implementations"). Defaults: ``--refs /tmp/ref`` holding ``PNOC/``
(lucasdavid/PNOC @ 6c8950a), ``icam/``, ``CPN/``, ``AEFT/`` and ``shims/`` (a link to
benchmarks/ref_shims: stand-ins for torchvision, wandb and mxnet, which cannot be installed for
this CPU torch) and ``--ref-python /tmp/refvenv/bin/python`` (same torch as wsss, plus the
references' extra packages: scikit-learn, matplotlib, pandas, tensorboardX).
"""

import json
import os
import platform
import shlex
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(__file__).resolve().parent / "ref_harness.py"
#: name (folder under --refs) -> (GitHub repository, commit the benchmarks were recorded at, a file they run)
REFERENCES = {
    "PNOC": ("lucasdavid/PNOC", "6c8950a18e9289a3498a17cd2e321a8b3a54423c", "scripts/cam/train_pnoc.py"),
    "icam": ("arvijj/icam", "5f04fdc97433abccbdb90533fd6a2719240a826c", "train_cam.py"),
    "CPN": ("Ferenas/CPN", "aca29f3ac3e23345125c4fd52c83441e5185c1b2", "train_cpn.py"),
    "AEFT": ("KAIST-vilab/AEFT", "dc81899b30cff6ba5e84c9354abf803209f0ba45", "train.py"),
}
PNOC_COMMIT = REFERENCES["PNOC"][1]


def add_reference_args(ap):
    ap.add_argument("--refs", default="/tmp/ref", help="folder with the reference copies (PNOC/, shims/)")
    ap.add_argument("--ref-python", default="/tmp/refvenv/bin/python", help="Python that runs the references")
    ap.add_argument("--work", default="/tmp/wsss-vs-ref", help="scratch folder (data set, runs)")


def check_references(args):
    """Fail with a clear message when the reference copies or their Python are missing."""
    pnoc = Path(args.refs) / "PNOC"
    missing = [p for p in (pnoc / "scripts" / "cam" / "train_pnoc.py", Path(args.refs) / "shims" / "torchvision",
                           Path(args.ref_python)) if not p.exists()]
    if missing:
        raise SystemExit(f"reference setup missing: {', '.join(map(str, missing))}\n"
                         "make it with: python benchmarks/ref_setup.py "
                         f"--refs {args.refs} --ref-python {args.ref_python}\n"
                         "(see benchmarks/README.md, section 'Against the reference implementations')")
    return pnoc


def reference_commit(repo):
    """The commit of a reference copy (recorded in ``REF_COMMIT`` next to it, or git)."""
    stamp = Path(repo) / "REF_COMMIT"
    if stamp.is_file():
        return stamp.read_text().strip()
    try:
        return subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def reference_env(args, pnoc):
    """Environment of a reference run. ``TORCH_HOME`` points to ``<refs>/torch_home``, where a
    random-init ResNet-50 stands in for the ImageNet file that P-NOC's inference script downloads
    before loading the trained weights over it (no download here; same file size and load time)."""
    home = Path(args.refs) / "torch_home"
    ckpt = home / "hub" / "checkpoints" / "resnet50-19c8e357.pth"
    env = dict(os.environ, TORCH_HOME=str(home))
    env.pop("PYTHONPATH", None)
    if not ckpt.is_file():
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        code = ("import sys, torch; sys.path[:0] = sys.argv[1:3]; from core.backbones.arch_resnet import resnet; "
                "torch.manual_seed(0); m = resnet.ResNet(resnet.Bottleneck, resnet.layers_dic['resnet50']); "
                "sd = m.state_dict(); sd['fc.weight'] = torch.randn(1000, 2048) * 0.01; sd['fc.bias'] = torch.zeros(1000); "
                "torch.save(sd, sys.argv[3])")
        subprocess.run([str(args.ref_python), "-c", code, str(pnoc), str(Path(args.refs) / "shims"), str(ckpt)],
                       check=True, env=env)
    return env


def install_split_lists(pnoc, data_root, splits=("train", "train8", "val")):
    """P-NOC reads a split's ids from ``<PNOC>/data/voc12/<domain>.txt``: copy ours as ``bench_<split>``."""
    for split in splits:
        src = Path(data_root) / "ImageSets" / "Segmentation" / f"{split}.txt"
        (Path(pnoc) / "data" / "voc12" / f"bench_{split}.txt").write_text(src.read_text())


def write_result(result, script, argv, out, merge):
    """Finish a results dict: end load, the command (also on every row), the rows of an earlier
    ``out`` kept when ``merge`` (rows this run redid replace theirs); written atomically."""
    import sys

    sys.path.insert(0, str(ROOT))
    from wsss.data.io import write_json

    result["load_average_end"] = load_average()
    result["command"] = f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)
    for r in result["rows"].values():
        r["command"] = result["command"]
    out = Path(out)
    if merge and out.is_file():
        result["rows"] = {**json.loads(out.read_text()).get("rows", {}), **result["rows"]}
    write_json(out, result)


def load_average():
    return round(os.getloadavg()[0], 2)


def machine():
    import torch

    return {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(), "torch_threads": torch.get_num_threads()}


def harness_cmd(python, script, args, timing, *, paths=(), cwd=None, max_steps=None, fixed_batch=False,
                cpu_cuda=False, bar=None, options=()):
    """Command line that runs ``script args`` under ref_harness.py's timing hooks (``bar``: time
    only the progress bars whose description matches this regex; ``options``: more ref_harness.py flags)."""
    cmd = [str(python), str(HARNESS), "--timing", str(timing), *options]
    if bar:
        cmd += ["--bar", bar]
    for p in paths:
        cmd += ["--path", str(p)]
    if cwd:
        cmd += ["--cwd", str(cwd)]
    if max_steps:
        cmd += ["--max-steps", str(max_steps)]
    if fixed_batch:
        cmd.append("--fixed-batch")
    if cpu_cuda:
        cmd.append("--cpu-cuda")
    return cmd + ["--", str(script)] + [str(a) for a in args]


def run(cmd, log, env=None, timeout=3600):
    """Run ``cmd`` (output to ``log``) under ``/usr/bin/time -v`` when available; returns
    ``{"wall_s", "max_rss_mib", "load_before", "load_after"}``; raises with the log's tail on failure."""
    timev = Path("/usr/bin/time")
    full = ([str(timev), "-v"] if timev.exists() else []) + [str(c) for c in cmd]
    load_before = load_average()
    t0 = time.perf_counter()
    with open(log, "w") as f:
        f.write("+ " + " ".join(shlex.quote(c) for c in full) + "\n")
        f.flush()
        proc = subprocess.run(full, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout)
    wall = time.perf_counter() - t0
    text = Path(log).read_text(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"command failed ({proc.returncode}): {' '.join(full)}\n{text[-3000:]}")
    rss = None
    for line in text.splitlines():
        if "Maximum resident set size" in line:
            rss = int(line.split(":")[-1]) / 1024
    return {"wall_s": round(wall, 3), "max_rss_mib": rss and round(rss, 1), "load_before": load_before,
            "load_after": load_average()}


def wsss_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def item_seconds(timing_file, skip):
    """Seconds per progress-bar item after the first ``skip`` items, from a ref_harness timing file:
    ``(list of per-item seconds, list of per-item main-process CPU seconds, maxrss MiB)``."""
    data = json.loads(Path(timing_file).read_text())
    last, walls, cpus, seen = {}, [], [], 0
    for bar, t, n, cpu in data["events"]:
        if n and bar in last:
            seen += n
            if seen > skip:
                walls += [(t - last[bar][0]) / n] * n
                cpus += [(cpu - last[bar][1]) / n] * n
        last[bar] = (t, cpu)
    return walls, cpus, data.get("maxrss_mib")


def median(xs):
    return statistics.median(xs) if xs else float("nan")

