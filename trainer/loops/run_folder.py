"""What both training loops keep in a run folder: ``config.json``, ``log.jsonl`` (one JSON
line per event, each with ``images_seen``) mirrored to TensorBoard when the package is
installed, and ``checkpoints/``. Rank 0 alone uses this."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainer.files import atomic_file


class RunFolder:
    """Prepare a run folder (new or resumed) and append to its log.

    On resume, log lines past ``images_seen`` (written after the checkpoint, before a
    crash) are dropped since the loop is about to redo them, and leftovers of a save cut
    short are removed from ``checkpoints/``.
    """

    def __init__(
        self,
        out: Path,
        resolved_config: dict[str, Any],
        *,
        resume: bool,
        images_seen: int,
        subfolders: tuple[str, ...] = ("checkpoints",),
    ) -> None:
        self.out = out
        for sub in subfolders:
            (out / sub).mkdir(parents=True, exist_ok=True)
        with atomic_file(out / "config.json", overwrite=True) as tmp:
            tmp.write_text(json.dumps(resolved_config, indent=2) + "\n")
        for debris in (out / "checkpoints").glob(".*.tmp*"):
            debris.unlink(missing_ok=True)
        log = out / "log.jsonl"
        if resume and log.exists():
            kept = [ln for ln in log.read_text().splitlines() if _line_images(ln) <= images_seen]
            with atomic_file(log, overwrite=True) as tmp:
                tmp.write_text("".join(ln + "\n" for ln in kept))
        self.tb: Any = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional
            pass

    def log(self, record: dict[str, Any]) -> None:
        """Append ``record`` (JSON-ready, with ``images_seen``) to log.jsonl; its numbers
        to TensorBoard against images seen."""
        with open(self.out / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, int | float) and key not in ("images_seen", "step"):
                    self.tb.add_scalar(key, value, record["images_seen"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _line_images(line: str) -> int:
    try:
        return int(json.loads(line).get("images_seen", 0))
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
        return 1 << 62  # a torn last line: dropped
