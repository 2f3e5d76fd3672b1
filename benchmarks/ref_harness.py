"""Run one script (a wsss tool or a reference implementation's own script) in this process with
timing hooks; the side-by-side benchmarks (train_step.py, vs_reference.py) start it as a child.

    python benchmarks/ref_harness.py --timing OUT.json [--max-steps N] [--fixed-batch]
        [--cpu-cuda] [--path DIR ...] [--cwd DIR] -- SCRIPT [ARGS...]

Both sides run unmodified; the hooks are the same for both:

- every tqdm progress bar records ``time.perf_counter()`` (and this process's CPU time) each
  time it yields an item or is ``update()``d: the loop of a training script or an inference
  script is timed item by item, data loading included, without touching its code. With
  ``--max-steps N`` the process writes the timings and exits at once after the N-th item.
  ``--bar REGEX`` times only the bars whose description matches (wsss's training loop is
  ``epoch i/n``; its data checks have bars of their own before it).
- ``--fixed-batch``: every DataLoader yields its first batch again and again (a copy each
  time; the workers are shut down after the first batch): the pure model step, no data loading.
- ``--time-optimizer``: time the steps of the first optimizer instead (scripts without a
  progress bar, e.g. psa-style training loops); the first step only starts the clock.
- ``--cpu-cuda``: on a machine without CUDA, ``Module.cuda()`` and ``Tensor.cuda()`` return self and
  ``torch.cuda.device(i)`` is a no-op, for reference inference scripts that call them
  unconditionally.

The timing file holds ``{"events": [[bar, seconds, items, cpu_seconds], ...], "maxrss_mib"}``.
"""

import argparse
import contextlib
import json
import os
import re
import resource
import runpy
import sys
import time

STATE = {"events": [], "bars": 0, "max_steps": None, "out": None, "items": 0, "written": False, "bar": None}


def dump():
    if STATE["written"] or not STATE["out"]:
        return
    STATE["written"] = True
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with open(STATE["out"], "w") as f:
        json.dump({"events": STATE["events"], "maxrss_mib": rss}, f)


def record(bar, n):
    STATE["events"].append([bar, time.perf_counter(), n, time.process_time()])
    STATE["items"] += n
    if STATE["max_steps"] is not None and STATE["items"] >= STATE["max_steps"]:
        dump()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # DataLoader workers notice their parent is gone and exit


def install_tqdm_hook():
    import tqdm
    import tqdm.auto
    import tqdm.std

    base = tqdm.std.tqdm

    class TimedTqdm(base):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._bench_iterating = False
            self._bench_id = None  # not timed
            if STATE["bar"] is not None and not STATE["bar"].search(self.desc or ""):
                return
            STATE["bars"] += 1
            self._bench_id = STATE["bars"]
            STATE["events"].append([self._bench_id, time.perf_counter(), 0, time.process_time()])

        def __iter__(self):
            self._bench_iterating = True  # tqdm's __iter__ calls update() itself: count items once
            try:
                for item in super().__iter__():
                    if self._bench_id is not None:
                        record(self._bench_id, 1)
                    yield item
            finally:
                self._bench_iterating = False

        def update(self, n=1):
            out = super().update(n)
            if n and not self._bench_iterating and self._bench_id is not None:
                record(self._bench_id, n)
            return out

    tqdm.tqdm = tqdm.std.tqdm = tqdm.auto.tqdm = TimedTqdm


def install_optimizer_hook():
    """One event per step of the first optimizer that steps (scripts without a progress bar)."""
    import torch

    first = []

    def hook(optimizer, args, kwargs):
        if not first:
            first.append(id(optimizer))
            STATE["events"].append([0, time.perf_counter(), 0, time.process_time()])
        elif id(optimizer) == first[0]:
            record(0, 1)

    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(hook)


def _clone(obj):
    import torch

    if torch.is_tensor(obj):
        return obj.clone()
    if isinstance(obj, dict):
        return {k: _clone(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_clone(v) for v in obj)
    return obj


def install_fixed_batch():
    from torch.utils.data import DataLoader

    real_iter = DataLoader.__iter__

    def fixed_iter(self):
        it = real_iter(self)
        first = next(it)
        del it  # shuts the workers down

        def gen():
            while True:
                yield _clone(first)

        return gen()

    DataLoader.__iter__ = fixed_iter


def install_cpu_cuda():
    import torch

    if torch.cuda.is_available():
        return
    torch.nn.Module.cuda = lambda self, device=None: self
    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.cuda.device = lambda *a, **k: contextlib.nullcontext()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--timing", required=True, help="write the timings (JSON) here")
    ap.add_argument("--max-steps", type=int, default=None, help="exit after this many progress-bar items")
    ap.add_argument("--bar", default=None, help="time only progress bars whose description matches this regex")
    ap.add_argument("--fixed-batch", action="store_true", help="DataLoaders repeat their first batch")
    ap.add_argument("--cpu-cuda", action="store_true", help="no-op .cuda() / torch.cuda.device without CUDA")
    ap.add_argument("--legacy", action="store_true",
                    help="compatibility for older references: np.load(allow_pickle=True) by default (numpy < "
                         "1.16.3), np.int/float/bool (numpy < 1.24) and PIL's removed aliases Image.CUBIC/LINEAR/ANTIALIAS (Pillow < 10)")
    ap.add_argument("--time-optimizer", action="store_true",
                    help="time optimizer steps instead of progress-bar items (scripts without tqdm)")
    ap.add_argument("--path", action="append", default=[], help="prepend to sys.path (repeatable)")
    ap.add_argument("--cwd", default=None, help="working directory of the script")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    STATE["out"] = os.path.abspath(a.timing)
    STATE["max_steps"] = a.max_steps
    STATE["bar"] = re.compile(a.bar) if a.bar else None
    script = os.path.abspath(a.script)
    for p in reversed([os.path.abspath(p) for p in a.path]):
        sys.path.insert(0, p)
    # the script's folder first, as `python SCRIPT` would have it
    sys.path.insert(0, os.path.dirname(script))
    if a.cwd:
        os.makedirs(a.cwd, exist_ok=True)
        os.chdir(a.cwd)
    if a.time_optimizer:
        install_optimizer_hook()
    else:
        install_tqdm_hook()
    if a.fixed_batch:
        install_fixed_batch()
    if a.cpu_cuda:
        install_cpu_cuda()
    if a.legacy:
        import functools

        import numpy as np
        from PIL import Image

        np.load = functools.partial(np.load, allow_pickle=True)
        for name, alias in (("int", int), ("float", float), ("bool", bool), ("object", object)):
            if name not in np.__dict__:
                setattr(np, name, alias)  # removed in numpy 1.24
        for old, new in (("CUBIC", "BICUBIC"), ("LINEAR", "BILINEAR"), ("ANTIALIAS", "LANCZOS")):
            if not hasattr(Image, old):
                setattr(Image, old, getattr(Image, new))
    sys.argv = [script] + (a.args[1:] if a.args[:1] == ["--"] else a.args)
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        if e.code not in (None, 0):
            dump()
            raise
    dump()


if __name__ == "__main__":
    main()
