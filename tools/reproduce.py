"""Reproduce a published table from the released checkpoints and predictions (wsss/hub/tables.yaml).

    python tools/reproduce.py --list
    python tools/reproduce.py pnoc-voc --dry-run                # what it would download and run
    python tools/reproduce.py pnoc-voc --data data/VOCdevkit/VOC2012
    python tools/reproduce.py pnoc-voc --rows cam-pnoc-ls,rw --data ...

Per row: download what it needs (tools/download.py's cache), convert checkpoints into
experiment folders (``--exp-root``, default experiments/hub), run the toolkit's own tools with
the published protocol (infer_cam / infer_saliency / infer_rw / infer_seg, then evaluate), and
print the table next to the published numbers and the difference. Writes
``<out>/table.md``, ``<out>/table.png`` and ``<out>/results.json`` (default out:
experiments/reproduce/<table>); every tool resumes, so a rerun continues. Rows whose network has
no wsss module yet, or whose computation differs (P-NOC's PoolNet), say so and are not run.
VOC test rows write the PNGs for the evaluation server. Exit code 1 when a row failed.
"""

import argparse
import json
from pathlib import Path

from wsss import hub
from wsss.cli import Timer, run_main
from wsss.data.io import write_json, write_text
from wsss.errors import ConfigError, WSSSError
from wsss.hub import render
from wsss.hub.convert import convert
from wsss.hub.download import Fetcher
from wsss.hub.reproduce import Context, default_data_root, describe, plan_row, run_command


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("table", nargs="?", help="table name (see --list)")
    p.add_argument("--list", action="store_true", help="list the tables and exit")
    p.add_argument("--dry-run", action="store_true", help="print what would be downloaded and run, do nothing")
    p.add_argument("--data", default=None, help="dataset root (default: data.root of the dataset's configs)")
    p.add_argument("--rows", default=None, help="comma-separated row ids to run (default: all)")
    p.add_argument("--out", default=None, help="output folder (default: experiments/reproduce/<table>)")
    p.add_argument("--exp-root", default="experiments/hub", help="where converted experiments go")
    p.add_argument("--cache", default=None, help="download cache (default: $WSSS_CACHE or ~/.cache/wsss)")
    p.add_argument("--workers", type=int, default=4, help="processes / threads for CRF and evaluation")
    p.add_argument("--drive-url", default=None, help="Google Drive base URL ($WSSS_DRIVE_URL)")
    p.add_argument("--mirror", default=None, help="fetch direct URLs as <mirror>/<file name> ($WSSS_HUB_MIRROR)")
    p.add_argument("--registry", default=None, help=argparse.SUPPRESS)  # tests: another registry file
    p.add_argument("--tables", default=None, help=argparse.SUPPRESS)    # tests: another tables file
    p.add_argument("overrides", nargs="*", help="config overrides passed to the inference tools (key=value)")
    return p.parse_args(argv)


def measured(plan):
    """The evaluation JSON of a plan (empty when there is none)."""
    if plan.result is None or not Path(plan.result).is_file():
        return {}
    return json.loads(Path(plan.result).read_text())


def status_of(result):
    """``ok`` and how it was scored: the sweep's threshold or the stored background, contour F."""
    parts = [f"threshold {result['threshold']:.2f}"] if result.get("threshold") is not None else []
    if result.get("protocol") == "stored-background":
        parts.append("against the stored background")
    if (result.get("contour_f") or {}).get("mean_f") is not None:
        parts.append(f"contour F {result['contour_f']['mean_f']:.2f}")
    return "ok" + (f" ({', '.join(parts)})" if parts else "")


def run_row(row, art, plan, ctx, fetcher):
    """Execute one planned row; returns its result dict."""
    result = {"id": row["id"], "label": row["label"], "split": row["split"], "artefact": art.name,
              "published": row.get("published"), "measured": None}
    if plan.skip:
        return {**result, "status": plan.skip}
    try:
        paths = {a.name: fetcher.fetch(a) for a in plan.downloads}
        if plan.convert:
            conv_art, exp = plan.convert
            convert(conv_art, paths[conv_art.name], exp)
            fetcher.pin(conv_art.name, verified=True)
        for cmd in plan.commands:
            run_command(cmd() if callable(cmd) else cmd, log=lambda c: print(f"[reproduce] {row['id']}: {c}"))
    except (WSSSError, RuntimeError) as e:
        return {**result, "status": "failed: " + str(e).splitlines()[0][:200]}
    scored = measured(plan)
    contour = (scored.get("contour_f") or {}).get("mean_f")
    return {**result, "measured": scored.get("miou"), "threshold": scored.get("threshold"),
            "protocol": scored.get("protocol"), "contour_f": contour, "status": plan.note or status_of(scored)}


def main(argv=None):
    args = parse_args(argv)
    timer = Timer()
    tables = hub.tables(args.tables, args.registry)
    if args.list or not args.table:
        for name, t in tables.items():
            print(f"{name:<12} {len(t['rows']):>2} rows  {t['title']}")
        if not args.list:
            raise ConfigError("name a table", fix="python tools/reproduce.py --list")
        return 0
    if args.table not in tables:
        raise ConfigError(f"unknown table {args.table!r}", fix=f"one of: {', '.join(tables)}")
    table = tables[args.table]
    registry = hub.registry(args.registry)
    wanted = set(args.rows.split(",")) if args.rows else None
    unknown = sorted((wanted or set()) - {r["id"] for r in table["rows"]})
    if unknown:
        raise ConfigError(f"table {args.table} has no row(s) {', '.join(unknown)}",
                          fix=f"rows: {', '.join(r['id'] for r in table['rows'])}")
    out = Path(args.out or Path("experiments") / "reproduce" / args.table)
    fetcher = Fetcher(cache=args.cache, drive_url=args.drive_url, mirror=args.mirror)
    ctx = Context(data=Path(args.data) if args.data else default_data_root(table), out=out,
                  exp_root=Path(args.exp_root), cache=fetcher.cache, workers=args.workers,
                  overrides=tuple(args.overrides), contour=bool(table.get("contour")))
    plans = [(row, registry[row["artefact"]], plan_row(ctx, row, registry[row["artefact"]])) for row in table["rows"]]
    plans = [p for p in plans if wanted is None or p[0]["id"] in wanted]

    if args.dry_run:
        print(f"{table['title']}: {len(plans)} row(s); data {ctx.data}; cache {ctx.cache}; output {out}")
        for row, art, plan in plans:
            print(f"- {row['id']}: {row['label']} ({row['split']}; published {row.get('published')})")
            print("\n".join(describe(plan, ctx)))
        return 0

    results = [run_row(row, art, plan, ctx, fetcher) for row, art, plan in plans]
    notes = [f"published numbers: {table['title']}; CAM rows take the best background threshold of the "
             f"sweep on the split's ground truth (the published protocol), or the background their "
             f"method stores (ICAM's protocol)" + ("; contour F-score in the status" if ctx.contour else ""),
             f"data: {ctx.data}; converted experiments: {ctx.exp_root}; cache: {ctx.cache}"]
    write_text(out / "table.md", render.markdown(table["title"], results, notes) + "\n![table](table.png)\n")
    render.png(out / "table.png", table["title"], results)
    write_json(out / "results.json", {"table": args.table, "title": table["title"], "rows": results})
    print(render.text(results))
    failed = [r["id"] for r in results if r["status"].startswith("failed")]
    ran = [r for r in results if r["measured"] is not None]
    print(f"reproduce {args.table}: {len(ran)} row(s) measured, {len(failed)} failed, "
          f"{len(results) - len(ran) - len(failed)} not run, in {timer.seconds:.1f} s -> {out / 'table.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_main(main)
