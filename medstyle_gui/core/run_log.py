"""A training run folder, read while the run writes it: ``log.jsonl`` line by line,
the newest sample grid, the bundle it produced and whether it can be resumed.

Both training loops (``trainer/loops/gan.py`` and ``encoder.py``) append one JSON object
per line to ``RUN/log.jsonl``; every line has ``event`` and ``images_seen``:

* ``tick``: running means of the losses since the last tick (GAN: ``loss_D``, ``loss_G``,
  ``gp`` or ``r1``, ``D_real``, ``D_fake``; encoder: ``loss``, ``loss_w``, ``loss_img`` and
  the held-out ``val_*`` losses), ``kimg``, ``images_per_s``, resolution and phase;
* ``snapshot`` (GAN): the metric (``swd`` x 1e3 or ``fid``) and ``best``;
* ``validation``, ``done``, ``stopped`` (encoder).

:class:`RunLog` reads only what was appended since the last :meth:`RunLog.poll`, keeps a
torn last line for later, and starts over when the file was replaced (a resumed run drops
the lines logged after its checkpoint and rewrites the file atomically). No Qt here: the
GUI calls ``poll`` from a file watcher or a timer.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

LOG_FILE = "log.jsonl"
CONFIG_FILE = "config.json"

#: Loss columns worth plotting, in legend order (whichever a run logs).
LOSS_KEYS = ("loss_D", "loss_G", "gp", "r1", "loss", "loss_w", "loss_img")
#: Quality metrics, lower is better: the GAN's SWD or FID at snapshots, the encoder's
#: held-out loss at ticks.
METRIC_KEYS = ("swd", "fid", "val_loss")
#: What each metric is, for axis labels.
METRIC_LABELS = {
    "swd": "SWD x 1e3 (lower is better)",
    "fid": "FID (lower is better)",
    "val_loss": "held-out loss (lower is better)",
}


@dataclass
class RunLog:
    """The records of ``folder/log.jsonl`` read so far.

    Attributes:
        folder: the run folder (``--out`` of ``train gan`` / ``train encoder``).
        ticks: ``event == "tick"`` records, oldest first.
        snapshots: ``event == "snapshot"`` records (GAN).
        events: every other record (validation, done, stopped).
    """

    folder: Path
    ticks: list[dict[str, Any]] = field(default_factory=list)
    snapshots: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    fresh: list[dict[str, Any]] = field(default_factory=list, repr=False)  # the last poll's
    _offset: int = field(default=0, init=False, repr=False)  # bytes consumed (whole lines)
    _inode: int | None = field(default=None, init=False, repr=False)  # notices a replaced file
    _config: dict[str, Any] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.folder = Path(self.folder)

    @property
    def path(self) -> Path:
        return self.folder / LOG_FILE

    def reset(self) -> None:
        """Forget everything read; the next poll reads the file from its start."""
        self.ticks, self.snapshots, self.events = [], [], []
        self._offset, self._inode, self._config = 0, None, None

    def poll(self) -> bool:
        """Read the lines appended since the last call; True when a record was added
        (or the log was replaced and re-read); the records read are in :attr:`fresh`. A
        missing file is no error: the run may not have written it yet."""
        self.fresh = []
        try:
            stat = os.stat(self.path)
        except OSError:
            return False
        replaced = self._inode is not None and stat.st_ino != self._inode
        if replaced or stat.st_size < self._offset:
            self.reset()
            replaced = True
        self._inode = stat.st_ino
        if stat.st_size == self._offset:
            return replaced
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except OSError:
            return replaced
        end = data.rfind(b"\n") + 1  # a torn last line waits for the next poll
        added = False
        for raw in data[:end].splitlines():
            added |= self._add(raw)
        self._offset += end
        return added or replaced

    def _add(self, raw: bytes) -> bool:
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return False  # a damaged line (a crash mid-write) is skipped, not fatal
        if not isinstance(record, dict):
            return False
        event = record.get("event")
        target = {"tick": self.ticks, "snapshot": self.snapshots}.get(event, self.events)
        target.append(record)
        self.fresh.append(record)
        return True

    # -- what the records say -------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """The run's resolved ``config.json`` ({} until the run has written it)."""
        if self._config is None:
            try:
                self._config = json.loads((self.folder / CONFIG_FILE).read_text("utf-8"))
            except (OSError, ValueError):
                return {}
        return self._config

    @property
    def kind(self) -> str | None:
        """``"gan"``, ``"encoder"`` or None (no config yet)."""
        cfg = self.config()
        if not cfg:
            return None
        return "encoder" if "encoder_config" in cfg else "gan"

    @property
    def total_kimg(self) -> float | None:
        """The run's length in thousands of images, from its config."""
        value = self.config().get("kimg")
        return float(value) if isinstance(value, int | float) else None

    @property
    def kimg(self) -> float:
        """Thousands of images seen so far (the newest record's)."""
        newest = (*self.ticks[-1:], *self.snapshots[-1:], *self.events[-1:])
        return max((float(r.get("images_seen", 0)) / 1000 for r in newest), default=0.0)

    def loss_keys(self) -> list[str]:
        """The loss columns present in the ticks, in :data:`LOSS_KEYS` order."""
        present = set().union(*(t.keys() for t in self.ticks)) if self.ticks else set()
        return [k for k in LOSS_KEYS if k in present]

    def metric_key(self) -> str | None:
        """The quality metric this run logs (``swd``, ``fid`` or ``val_loss``), if any yet."""
        for key in METRIC_KEYS:
            if any(key in r for r in (*self.snapshots, *self.ticks)):
                return key
        return None

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """``(kimg [n], value [n])`` of ``key`` over the records holding a finite number
        for it: ticks for losses, snapshots (then ticks) for metrics."""
        records = self.snapshots if key in ("swd", "fid") else self.ticks
        xs, ys = [], []
        for r in records:
            value = r.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                xs.append(float(r.get("images_seen", 0)) / 1000)
                ys.append(float(value))
        return np.asarray(xs, np.float64), np.asarray(ys, np.float64)

    @staticmethod
    def describe(record: dict[str, Any]) -> str:
        """One log line for a record: ``tick  0.016 kimg  32 px  loss_D 7.85 ...``."""
        event = str(record.get("event", "?"))
        parts = [f"{event:<8}", f"{float(record.get('images_seen', 0)) / 1000:.3f} kimg"]
        if "resolution" in record and event == "tick":
            parts.append(f"{record['resolution']} px")
        for key in (*LOSS_KEYS, *METRIC_KEYS):
            value = record.get(key)
            if isinstance(value, int | float):
                parts.append(f"{key} {value:.3g}")
        if record.get("best"):
            parts.append("best so far: bundle/ updated")
        return "  ".join(parts)

    def best_snapshot(self) -> dict[str, Any] | None:
        """The newest snapshot marked ``best`` (the one in ``bundle/``)."""
        return next((s for s in reversed(self.snapshots) if s.get("best")), None)

    def summary(self) -> str:
        """One line for a status bar: kimg done of total, speed, newest losses and metric."""
        total = self.total_kimg
        parts = [f"{self.kimg:.3g} of {total:g} kimg" if total else f"{self.kimg:.3g} kimg"]
        if self.ticks:
            tick = self.ticks[-1]
            if "images_per_s" in tick:
                parts.append(f"{tick['images_per_s']:.1f} img/s")
            if "resolution" in tick:
                parts.append(f"{tick['resolution']} px")
            parts += [f"{k} {tick[k]:.4g}" for k in self.loss_keys()[:2] if k in tick]
        metric = self.metric_key()
        if metric:
            _, values = self.series(metric)
            if values.size:
                parts.append(f"{metric} {values[-1]:.4g} (best {values.min():.4g})")
        return " | ".join(parts)

    # -- files beside the log -------------------------------------------------------------

    def newest_sample(self) -> Path | None:
        """The newest ``samples/*.png`` grid (names carry zero-padded image counts)."""
        # not the ".images-*.tmp*.png" a snapshot is being written to
        samples = sorted(
            p for p in (self.folder / "samples").glob("*.png") if not p.name.startswith(".")
        )
        return samples[-1] if samples else None

    def can_resume(self) -> bool:
        """True when ``checkpoints/latest.pt`` exists, so ``--resume`` has a start."""
        return (self.folder / "checkpoints" / "latest.pt").is_file()

    def bundle(self) -> Path | None:
        """The model bundle this run produced or added to: the GAN's ``bundle/``, or the
        encoder run's ``--model``; None while there is none."""
        if self.kind == "encoder":
            model = self.config().get("model")
            return Path(model) if model and (Path(model) / "bundle.json").is_file() else None
        bundle = self.folder / "bundle"
        return bundle if (bundle / "bundle.json").is_file() else None
