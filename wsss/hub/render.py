"""A reproduced table as text, markdown and a PNG picture (next to the published numbers)."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..data.io import atomic_path

COLUMNS = ("row", "split", "published", "measured", "diff", "status")


def _num(v, signed=False):
    if v is None:
        return "-"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def cells(results):
    """One list of strings per result (the :data:`COLUMNS`)."""
    out = []
    for r in results:
        diff = None if r.get("measured") is None or r.get("published") is None else r["measured"] - r["published"]
        out.append([r["label"], r["split"], _num(r.get("published")), _num(r.get("measured")), _num(diff, True),
                    r["status"]])
    return out


def markdown(title, results, notes=()):
    """The table as markdown, with its notes below."""
    lines = [f"# {title}", "", "| " + " | ".join(COLUMNS) + " |", "| --- | --- | ---: | ---: | ---: | --- |"]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in cells(results)]
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def text(results):
    """The table as aligned plain text (for the terminal)."""
    rows = [list(COLUMNS)] + cells(results)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    fmt = [f"{{:<{w}}}" if i in (0, 1, 5) else f"{{:>{w}}}" for i, w in enumerate(widths)]
    lines = ["  ".join(f.format(c) for f, c in zip(fmt, r)).rstrip() for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def png(path, title, results, max_status=100):
    """Write the table as a PNG (white background, one line per row; differences coloured)."""
    font = ImageFont.load_default()
    rows = [list(COLUMNS)] + [c[:5] + [c[5][:max_status] + ("..." if len(c[5]) > max_status else "")]
                              for c in cells(results)]
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(s):
        return int(probe.textlength(s, font=font))

    widths = [max(width(r[i]) for r in rows) + 16 for i in range(len(COLUMNS))]
    line_h, pad = 18, 10
    w = max(sum(widths), width(title) + 16) + 2 * pad
    h = (len(rows) + 2) * line_h + 2 * pad
    img = Image.new("RGB", (w, h), "white")
    draw = ImageDraw.Draw(img)
    draw.text((pad, pad), title, fill="black", font=font)
    y = pad + int(1.5 * line_h)
    for i, row in enumerate(rows):
        if i == 0:
            draw.rectangle([pad, y - 2, w - pad, y + line_h - 4], fill=(230, 230, 230))
        x = pad
        for j, c in enumerate(row):
            colour = "black"
            if i and j == 4 and c not in ("-", ""):
                colour = (0, 120, 0) if float(c) >= -0.5 else (180, 0, 0)
            draw.text((x + 4, y), c, fill=colour, font=font)
            x += widths[j]
        y += line_h
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
    return np.asarray(img).shape
