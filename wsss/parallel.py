"""A process pool for per-image work: :func:`parallel_map`.

Used by every stage that maps a function over a dataset on the CPU (dense CRFs, affinity labels,
pseudo masks, saliency masks, the synthetic generator). Workers are spawned by default, so they
are safe whatever the parent imported: a forked child inherits OpenCV's thread pool from a
parent that has used it, and ``cv2.setNumThreads`` in the child then deadlocks.
"""

import collections
import multiprocessing

_WORKER = {}


def _init_worker(fn, state):
    try:  # one OpenCV thread per worker: the workers already use every core
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    _WORKER["fn"], _WORKER["state"] = fn, state


def _call(item):
    return _WORKER["fn"](_WORKER["state"], item)


def parallel_map(fn, items, workers=1, state=None, start_method="spawn", max_pending=None):
    """Yield ``fn(state, item)`` for every item, in order, using ``workers`` processes.

    ``fn`` must be a module-level function and ``state`` picklable; ``state`` (e.g. the dataset
    and the settings) is sent once per worker. ``items`` is consumed lazily in the calling
    process, with at most ``max_pending`` (default ``4 * workers``) items in flight, so it may
    be a generator doing torch work. ``workers <= 1`` runs inline with identical results.
    """
    if workers <= 1:
        for item in items:
            yield fn(state, item)
        return
    ctx = multiprocessing.get_context(start_method)
    limit = max_pending or 4 * workers
    with ctx.Pool(workers, initializer=_init_worker, initargs=(fn, state)) as pool:
        pending = collections.deque()
        for item in items:
            pending.append(pool.apply_async(_call, (item,)))
            while len(pending) >= limit:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
