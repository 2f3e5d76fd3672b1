"""metrics.jsonl: one JSON object per logged step or epoch, appended by rank 0."""

import json
from pathlib import Path

from ..data.io import write_text


class MetricsLog:
    """Append-only JSON-lines log; :meth:`truncate` drops entries past a resumed step."""

    def __init__(self, path, enabled=True):
        self.path = Path(path)
        self.enabled = enabled

    def write(self, record):
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self):
        if not self.path.is_file():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a kill
                continue
        return out

    def truncate(self, step):
        """Keep only records with ``step <= step`` (those before the checkpoint we resume from)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def reset(self):
        if self.enabled and self.path.is_file():
            self.path.unlink()
