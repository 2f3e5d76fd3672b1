"""Download released checkpoints and predictions into the cache, check them, and convert
checkpoints into wsss experiment folders (the registry: wsss/hub/registry.yaml, docs/hub.md).

    python tools/download.py --list                       # every artefact, its status and number
    python tools/download.py pnoc/voc/pnoc-ls             # -> $WSSS_CACHE/..., experiments/hub/pnoc/voc/pnoc-ls
    python tools/download.py pnoc/voc/pnoc-ls --from ~/Downloads/voc12-rs269-pnoc-ls.pth   # offline
    python tools/download.py imagenet/resnest269          # ImageNet weights: pass the path as model.weights
    python tools/download.py --list-folder 19RB0_3YBk63f4bUKcJrAleN-_ftqBpEk   # a Drive folder's file ids
    python tools/download.py --all --no-convert

Files go to ``$WSSS_CACHE`` (default ``~/.cache/wsss``): resumable (rerun after a cut), SHA-256
computed while streaming and checked against the registry's pins and the hashes in torchvision /
ResNeSt file names, written under a ``.part`` name and renamed when complete; an HTML page, the
Drive quota page, a truncated or mismatching file is an error (exit 2) and the bad file is
removed. Archives are unpacked safely. A checkpoint with a converter becomes an experiment
folder (``config.yaml`` + ``checkpoints/last.pth``) that tools/infer_*.py load as they are.
``--drive-url`` / ``$WSSS_DRIVE_URL`` and ``--mirror`` / ``$WSSS_HUB_MIRROR`` redirect the
downloads; ``gdown`` is used for Drive files when installed (``pip install wsss[hub]``).
"""

import argparse
from pathlib import Path

from wsss import hub
from wsss.cli import Timer, run_main
from wsss.data.io import remove_stale_temporaries
from wsss.errors import ConfigError, WSSSError
from wsss.hub.convert import CONVERTERS, companion_artefacts, convert
from wsss.hub.download import Fetcher
from wsss.hub.drive import drive_id


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help="artefact names (see --list)")
    p.add_argument("--list", action="store_true", help="list the registry and exit")
    p.add_argument("--all", action="store_true", help="download every artefact")
    p.add_argument("--from", dest="local", default=None, help="use this local file (or folder) instead of downloading")
    p.add_argument("--cache", default=None, help="cache folder (default: $WSSS_CACHE or ~/.cache/wsss)")
    p.add_argument("--exp", default=None, help="experiment folder of the conversion (default: experiments/hub/<name>)")
    p.add_argument("--no-convert", action="store_true", help="only download, do not convert checkpoints")
    p.add_argument("--force", action="store_true", help="download again even if cached; convert again")
    p.add_argument("--drive-url", default=None, help="Google Drive base URL (default: $WSSS_DRIVE_URL or "
                                                     "https://drive.google.com)")
    p.add_argument("--mirror", default=None, help="fetch direct URLs as <mirror>/<file name> ($WSSS_HUB_MIRROR)")
    p.add_argument("--no-gdown", action="store_true", help="use the built-in downloader even if gdown is installed")
    p.add_argument("--list-folder", default=None, metavar="ID_OR_URL",
                   help="print the files of a Drive folder (id and path), to pin them in the registry")
    p.add_argument("--registry", default=None, help=argparse.SUPPRESS)  # tests: another registry file
    return p.parse_args(argv)


def list_registry(fetcher, path=None):
    entries = hub.registry(path)
    width = max(len(n) for n in entries)
    print(f"{'name':<{width}}  {'kind':<16} {'status':<18} {'cached':<6} published")
    for name, art in entries.items():
        print(f"{name:<{width}}  {art.kind:<16} {art.status:<18} {'yes' if fetcher.is_cached(art) else 'no':<6} "
              f"{art.published_text()}")
    print(f"{len(entries)} artefacts; cache {fetcher.cache}")


def get_one(fetcher, art, args):
    """Download (and convert) one artefact; returns a one-line summary."""
    path = fetcher.fetch(art, local=args.local, force=args.force)
    line = f"{art.name}: {path}"
    if art.convertible and not args.no_convert:
        exp = Path(args.exp) if args.exp else Path("experiments") / "hub" / art.name
        remove_stale_temporaries(exp)  # what a killed conversion left
        needs = companion_artefacts(CONVERTERS.get(art.converter))  # e.g. SP-CAM's Q model
        report = convert(art, path, exp, overwrite=args.force,
                         companions={c.name: c.cache_path(fetcher.cache) for c in needs})
        fetcher.pin(art.name, verified=True)
        line += f" -> experiment {exp} (P-NOC layout {report.get('layout')})" if art.seed == "pnoc" else \
            f" -> experiment {exp}"
        if art.status == "does not reproduce":
            line += f"\n  note: {art.note.strip()}"
    elif art.kind == "imagenet":
        line += f"  (pass model.weights={path})"
    elif art.status == "module pending":
        line += "  (no wsss module for it yet: not converted)"
    return line


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    fetcher = Fetcher(cache=args.cache, drive_url=args.drive_url, mirror=args.mirror,
                      use_gdown=False if args.no_gdown else None)
    remove_stale_temporaries(fetcher.cache)  # e.g. pins.json of a killed run (a .part is resumed instead)
    if args.list:
        list_registry(fetcher, args.registry)
        return 0
    if args.list_folder:
        folder = drive_id(args.list_folder)
        if not folder:
            raise ConfigError(f"{args.list_folder!r} is not a Drive folder id or URL")
        for rel, fid in fetcher.list_folder(folder):
            print(f"- {{drive: {fid}, path: {rel!r}}}")
        return 0
    names = list(hub.registry(args.registry)) if args.all else args.names
    if not names:
        raise ConfigError("name an artefact, or pass --list / --all", fix="python tools/download.py --list")
    if args.local and len(names) != 1:
        raise ConfigError("--from takes one artefact name")
    if args.exp and len(names) != 1:
        raise ConfigError("--exp takes one artefact name")
    arts = [hub.get(n, args.registry) for n in names]  # unknown names fail before any download
    failed = []
    for art in arts:
        try:
            print(get_one(fetcher, art, args))
        except WSSSError as e:
            if not args.all:
                raise
            failed.append(art.name)
            print(f"error: {e}")
    print(f"download: {len(arts) - len(failed)} of {len(arts)} artefact(s) ready in {timer.seconds:.1f} s"
          + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
