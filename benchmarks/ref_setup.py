"""Build the reference setup of the side-by-side benchmarks (train_step.py, vs_reference.py,
ref_pipeline.py, ref_walk.py) in one command; run it with the wsss venv's Python:

    python benchmarks/ref_setup.py                       # clones from GitHub
    python benchmarks/ref_setup.py --source PNOC=/path/to/PNOC.git --source icam=... \\
        --refs /tmp/ref --ref-python /tmp/refvenv/bin/python

It makes, skipping whatever is already there and right:

- ``<refs>/{PNOC,icam,CPN,AEFT}``: clones of the four references at the commits the benchmarks
  name, each with a ``REF_COMMIT`` file holding the full hash. A source is a git directory (a
  bare mirror too) or a URL. Files whose contents the source lacks (a partial mirror: large
  files) are left out of the checkout and listed in ``REF_MISSING``; they are none of the files
  the benchmarks run.
- ``<refs>/shims``: a link to this repository's ``benchmarks/ref_shims`` (our stand-ins for
  torchvision, wandb and mxnet; ``--copy-shims`` copies instead).
- the venv of ``--ref-python`` (default ``/tmp/refvenv``): created with this Python, a ``.pth``
  file adding this venv's site-packages (the same torch, numpy, OpenCV, Pillow, SciPy...), and
  ``pip install`` of what the references import and wsss does not (``PIP_*`` variables reach pip,
  e.g. ``PIP_FIND_LINKS``).

The reference code stays outside this repository: nothing here is committed.
"""

import argparse
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ref_common import REFERENCES

SHIMS = Path(__file__).resolve().parent / "ref_shims"
#: imported by the references, not installed with wsss (pip names; import names for the check)
EXTRA_PACKAGES = {"scikit-learn": "sklearn", "matplotlib": "matplotlib", "pandas": "pandas",
                  "tensorboardX": "tensorboardX"}
#: what the reference scripts import that wsss's venv provides
FROM_WSSS_VENV = ("torch", "numpy", "cv2", "PIL", "scipy", "skimage", "tqdm", "pydensecrf.densecrf")


class SetupError(SystemExit):
    """A step that cannot go on; the message names what is missing."""


def git(*args, cwd=None, check=True, input=None):
    """Run git; its stdout (stripped)."""
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, input=input, check=False)
    if check and proc.returncode != 0:
        raise SetupError(f"git {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.strip()}")
    return proc.stdout.strip()


def missing_blobs(repo, commit):
    """Paths at ``commit`` whose blobs the clone does not have (a partial mirror)."""
    entries = [rec.split("\t", 1) for rec in git("ls-tree", "-r", "-z", commit, cwd=repo).split("\0") if rec]
    blobs = [(meta.split()[2], path) for meta, path in entries if meta.split()[1] == "blob"]
    report = git("cat-file", "--batch-check", cwd=repo, input="".join(f"{sha}\n" for sha, _ in blobs))
    absent = {line.split()[0] for line in report.splitlines() if line.endswith(" missing")}
    return [path for sha, path in blobs if sha in absent]


def clone_reference(name, source, refs):
    """``<refs>/<name>`` at its commit with ``REF_COMMIT``; kept as is when already there."""
    repo_name, commit, needed = REFERENCES[name]
    dest = Path(refs) / name
    stamp = dest / "REF_COMMIT"
    if stamp.is_file() and stamp.read_text().strip() == commit and (dest / needed).is_file():
        return f"{name}: present at {commit[:7]}"
    if dest.exists():
        head = git("rev-parse", "HEAD", cwd=dest, check=False) if (dest / ".git").exists() else ""
        if head != commit or not (dest / needed).is_file():
            raise SetupError(f"{dest} exists but is not {repo_name} at {commit} (HEAD: {head or 'not a git clone'}); "
                             "remove it and run again")
        stamp.write_text(commit + "\n")
        return f"{name}: present at {commit[:7]}, REF_COMMIT written"
    proc = subprocess.run(["git", "clone", "--quiet", "--no-checkout", str(source), str(dest)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SetupError(f"cannot clone {name} ({repo_name}) from {source}:\n{proc.stderr.strip()}\n"
                         f"pass a reachable copy: --source {name}=<git dir or URL>")
    if not git("cat-file", "-t", f"{commit}^{{commit}}", cwd=dest, check=False):
        shutil.rmtree(dest)
        raise SetupError(f"{source} has no commit {commit} of {repo_name}: pass a source that has it "
                         f"(--source {name}=...)")
    absent = missing_blobs(dest, commit)
    if absent:  # check out everything else
        patterns = ["!/" + re.sub(r"([*?\[\\!#])", r"\\\1", p) for p in absent]
        git("sparse-checkout", "set", "--no-cone", "/*", *patterns, cwd=dest)
        (dest / "REF_MISSING").write_text("".join(p + "\n" for p in absent))
    git("-c", "advice.detachedHead=false", "checkout", "--quiet", "--detach", commit, cwd=dest)
    if not (dest / needed).is_file():
        raise SetupError(f"{dest / needed} is missing after the checkout (its contents are not in {source})")
    stamp.write_text(commit + "\n")
    note = f" ({len(absent)} file(s) whose contents the source lacks left out: see REF_MISSING)" if absent else ""
    return f"{name}: cloned at {commit[:7]} from {source}{note}"


def install_shims(refs, copy):
    """``<refs>/shims`` -> benchmarks/ref_shims (a link, or a refreshed copy with ``copy``)."""
    dest = Path(refs) / "shims"
    if dest.is_symlink():
        if not copy and dest.resolve() == SHIMS:
            return f"shims: {dest} -> {SHIMS}"
        dest.unlink()
    elif dest.exists() and not copy:
        raise SetupError(f"{dest} exists and is not a link to {SHIMS}: remove it, or pass --copy-shims to refresh it")
    if copy:
        shutil.copytree(SHIMS, dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        return f"shims: copied to {dest}"
    dest.symlink_to(SHIMS, target_is_directory=True)
    return f"shims: {dest} -> {SHIMS}"


def ref_venv(ref_python, site_packages):
    """The venv of ``ref_python`` with a ``.pth`` adding ``site_packages`` and the extra packages."""
    ref_python = Path(ref_python)
    venv = ref_python.parent.parent
    notes = []
    if not ref_python.exists():
        if venv.exists() and any(venv.iterdir()):
            raise SetupError(f"{venv} exists but has no {ref_python.name}: remove it or pick another --ref-python")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        if not ref_python.exists():
            raise SetupError(f"the venv at {venv} has no {ref_python}: is --ref-python <venv>/bin/python?")
        notes.append(f"venv: created {venv}")
    purelib = subprocess.run([str(ref_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    pth = Path(purelib) / "wsss_venv.pth"
    if not pth.is_file() or pth.read_text().strip() != str(site_packages):
        pth.write_text(f"{site_packages}\n")
        notes.append(f"venv: {pth} adds {site_packages}")
    absent = unimportable(ref_python, EXTRA_PACKAGES.values())
    missing = [pip for pip, module in EXTRA_PACKAGES.items() if module in absent]
    if missing:
        proc = subprocess.run([str(ref_python), "-m", "pip", "install", "--disable-pip-version-check", *missing],
                              check=False)
        if proc.returncode != 0:
            raise SetupError(f"pip could not install {' '.join(missing)} into {venv}; install them there by hand "
                             f"({ref_python} -m pip install ...) and run again")
        notes.append(f"venv: installed {' '.join(missing)}")
    return "\n".join(notes) or f"venv: {venv} ready"


def unimportable(python, modules, paths=()):
    """Those of ``modules`` that ``python`` cannot import (with ``paths`` first on sys.path), in one process."""
    code = ("import importlib, sys\n"
            f"sys.path[:0] = {[str(p) for p in paths]!r}\n"
            f"for m in {list(modules)!r}:\n"
            "    try:\n        importlib.import_module(m)\n"
            "    except Exception:\n        print(m)\n")
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return proc.stdout.split() if proc.returncode == 0 else list(modules)


def check(refs, ref_python):
    """Names of what the reference Python cannot import (the shims from ``<refs>/shims``)."""
    missing = unimportable(ref_python, [*FROM_WSSS_VENV, *EXTRA_PACKAGES.values()])
    shims = unimportable(ref_python, ["torchvision.transforms.functional", "wandb", "mxnet"], [Path(refs) / "shims"])
    return missing + [f"{m} (shim)" for m in shims]


def parse_sources(pairs):
    sources = {name: f"https://github.com/{repo}.git" for name, (repo, _, _) in REFERENCES.items()}
    for pair in pairs:
        name, sep, source = pair.partition("=")
        if not sep or name not in REFERENCES:
            raise SetupError(f"--source takes NAME=PATH_OR_URL with NAME one of {', '.join(REFERENCES)}, got {pair!r}")
        sources[name] = source
    return sources


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--refs", default="/tmp/ref", help="folder of the reference copies and shims/")
    ap.add_argument("--ref-python", default="/tmp/refvenv/bin/python", help="Python of the venv to make")
    ap.add_argument("--source", action="append", default=[], metavar="NAME=PATH_OR_URL",
                    help=f"where to clone a reference from (NAME: {', '.join(REFERENCES)}; default: its GitHub URL)")
    ap.add_argument("--only", default=",".join(REFERENCES), help="comma-separated references to clone")
    ap.add_argument("--site-packages", default=sysconfig.get_paths()["purelib"],
                    help="the wsss venv's site-packages, added to the reference venv (default: this Python's)")
    ap.add_argument("--copy-shims", action="store_true", help="copy benchmarks/ref_shims instead of linking it")
    args = ap.parse_args(argv)
    sources = parse_sources(args.source)
    only = [n for n in args.only.split(",") if n]
    unknown = sorted(set(only) - set(REFERENCES))
    if unknown:
        raise SetupError(f"unknown reference(s) {', '.join(unknown)}; known: {', '.join(REFERENCES)}")
    if shutil.which("git") is None:
        raise SetupError("git is needed to clone the references")
    Path(args.refs).mkdir(parents=True, exist_ok=True)
    for name in only:
        print(clone_reference(name, sources[name], args.refs), flush=True)
    print(install_shims(args.refs, args.copy_shims), flush=True)
    print(ref_venv(args.ref_python, args.site_packages), flush=True)
    missing = check(args.refs, args.ref_python)
    if missing:
        raise SetupError(f"{args.ref_python} cannot import: {', '.join(missing)}")
    print(f"reference setup ready: --refs {args.refs} --ref-python {args.ref_python}")


if __name__ == "__main__":
    main()
