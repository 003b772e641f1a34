"""What the GUI writes, without Qt: the training command lines of its dialogs, PNGs of
the views, the generated slice as DICOM and a synthetic volume (each with provenance),
and the metrics as CSV.

Every writer refuses an existing target unless ``overwrite`` is true (the GUI asks the
user first) and writes atomically. Synthetic output is always marked as such (DESIGN.md):
DICOM ``ImageType`` DERIVED\\SECONDARY with a SeriesDescription, DerivationDescription and
ImageComments that say synthetic, the model hash and the latent recipe; no identifying
data of a source scan (only its file name) is carried over.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.provenance import Provenance
from trainer.data.volume import Volume
from trainer.errors import ConfigError, MedstyleError
from trainer.files import atomic_file, ensure_can_write

# -- training command lines (the Training menu's dialogs) -------------------------------


def cli_command(args: Sequence[str]) -> list[str]:
    """The ``medstyle`` CLI of this very install, running ``args``.

    From Python: ``[python, -m, medstyle_gui, *args]``. In a frozen (PyInstaller) build
    ``sys.executable`` is the ``medstyle`` program itself and there is no interpreter to
    take ``-m``, so it is ``[medstyle, *args]``. Every subprocess the GUI starts comes
    through here, so this is the one place that knows the difference."""
    if getattr(sys, "frozen", False):
        return [sys.executable, *map(str, args)]
    return [sys.executable, "-m", "medstyle_gui", *map(str, args)]


def _flag(argv: list[str], name: str, value: Any) -> None:
    """Append ``name value`` when ``value`` is set (None and "" mean: the CLI's default)."""
    if value is not None and value != "":
        argv += [name, f"{value:g}" if isinstance(value, float) else str(value)]


def _need_file(path: str, what: str) -> None:
    if not path:
        raise ConfigError(f"choose {what}")
    if not Path(path).exists():
        raise ConfigError(f"does not exist ({what})", path)


def _check_run_folder(out: str, resume: bool) -> None:
    """A new run needs an empty or missing ``out``; a resumed one its ``config.json``."""
    if not out:
        raise ConfigError("choose a run folder")
    folder = Path(out)
    if resume:
        if not (folder / "config.json").is_file():
            raise ConfigError("has no config.json: not a run folder to resume", out)
    elif folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ConfigError("already holds a run (tick Resume to continue it)", out)


@dataclass
class DatasetOptions:
    """``medstyle dataset build``: paired studies -> an HDF5 slice dataset."""

    sources: list[str] = field(default_factory=list)  # study folders or folders of studies
    out: str = ""  # DATA.h5 to write
    size: int = 256  # model matrix N (N x N px)
    register: bool = True  # rigid CT -> MR registration
    n4: bool = True  # N4 bias-field correction of MR
    overwrite: bool = False

    def argv(self) -> list[str]:
        """The CLI words after ``medstyle``; ConfigError names the first bad field."""
        if not self.sources:
            raise ConfigError("add at least one study folder")
        for source in self.sources:
            _need_file(source, "a study folder")
        if not self.out:
            raise ConfigError("choose the dataset file to write (DATA.h5)")
        if Path(self.out).exists() and not self.overwrite:
            raise ConfigError("already exists (tick Overwrite to replace it)", self.out)
        argv = ["dataset", "build", *self.sources, "--out", self.out, "--size", str(self.size)]
        argv += ["--no-register"] * (not self.register) + ["--no-n4"] * (not self.n4)
        return argv + ["--overwrite"] * self.overwrite


@dataclass
class GANOptions:
    """``medstyle train gan`` (``--gpus N``: N processes through torchrun). None fields
    are left to the trainer's defaults (the paper's)."""

    data: str = ""
    out: str = ""
    resolution: int | None = None  # final px; None: the dataset's
    start_resolution: int | None = None
    kimg: float | None = None
    gpus: int = 1
    batch: str | None = None  # "N" or "RES:N,RES:N"
    network: str | None = None  # "paper" | "slim"
    loss: str | None = None  # "wgan-gp" | "r1"
    metric: str | None = None  # "swd" | "fid"
    inception_weights: str | None = None
    metric_images: int | None = None
    tick_kimg: float | None = None
    snapshot_kimg: float | None = None
    checkpoint_kimg: float | None = None
    seed: int | None = None
    workers: int | None = None
    device: str | None = None  # "cpu" | "cuda"; None: CUDA when available
    config: str | None = None  # JSON options file; flags win
    init_from: str | None = None  # a model bundle whose G and D the run starts from
    resume: bool = False

    def argv(self) -> list[str]:
        _check_run_folder(self.out, self.resume)
        if not self.resume:
            _need_file(self.data, "the training data (DATA.h5)")
            if self.init_from:
                _need_file(self.init_from, "the model bundle to start from")
        if self.gpus < 1:
            raise ConfigError(f"GPUs {self.gpus}: need at least 1")
        argv = ["train", "gan"]
        names = (
            "data out resolution start_resolution kimg batch network loss metric "
            "inception_weights metric_images tick_kimg snapshot_kimg checkpoint_kimg seed "
            "workers device config init_from"
        ).split()
        if self.resume:  # the saved run decides the rest (the trainer refuses changes)
            names = "out kimg workers device tick_kimg snapshot_kimg checkpoint_kimg".split()
        for name in names:
            _flag(argv, "--" + name.replace("_", "-"), getattr(self, name))
        if self.gpus > 1:
            argv += ["--gpus", str(self.gpus)]
        return argv + ["--resume"] * self.resume


@dataclass
class SnapshotBundleOptions:
    """``medstyle train bundle``: the model bundle of one snapshot of a GAN run."""

    checkpoint: str = ""  # a run folder (its best snapshot) or a checkpoint file
    out: str = ""  # the bundle folder to write
    overwrite: bool = False

    def argv(self) -> list[str]:
        _need_file(self.checkpoint, "the run's snapshot")
        if not self.out:
            raise ConfigError("choose the bundle folder to write")
        if Path(self.out).exists() and not self.overwrite:
            raise ConfigError("already exists (tick Replace to overwrite it)", self.out)
        return ["train", "bundle", self.checkpoint, "--out", self.out] + (
            ["--overwrite"] * self.overwrite
        )


@dataclass
class EncoderOptions:
    """``medstyle train encoder``: the image -> w encoder of a model bundle."""

    model: str = ""
    out: str = ""
    kimg: float | None = None
    batch: int | None = None
    backbone: str | None = None  # "mirror" | "resnet"
    lr: float | None = None
    truncation: float | None = None
    gpus: int = 1
    device: str | None = None
    replace: bool = False  # replace the bundle's encoder.pt
    resume: bool = False

    def argv(self) -> list[str]:
        _check_run_folder(self.out, self.resume)
        _need_file(self.model, "the model bundle folder")
        if self.gpus < 1:
            raise ConfigError(f"GPUs {self.gpus}: need at least 1")
        argv = ["train", "encoder"]
        names = "model out kimg batch backbone lr truncation device".split()
        if self.resume:
            names = "model out kimg device".split()
        for name in names:
            _flag(argv, "--" + name, getattr(self, name))
        if self.gpus > 1:
            argv += ["--gpus", str(self.gpus)]
        return argv + ["--replace"] * self.replace + ["--resume"] * self.resume


@dataclass
class DirectionsOptions:
    """``medstyle directions fit``, after ``medstyle embed`` when ``embed_from`` is set."""

    model: str = ""
    latents: str = ""  # LATENTS.h5 (read, or written by the embed step)
    embed_from: str | None = None  # DATA.h5 or a scan to embed first
    refine_steps: int | None = None
    refine_lr: float | None = None
    labels: str | None = None  # CSV of extra 0/1 labels
    trials: int | None = None
    seed: int | None = None
    device: str | None = None
    overwrite: bool = False  # replace the bundle's directions (and an existing LATENTS.h5)

    def commands(self) -> list[list[str]]:
        """One or two CLI word lists, run one after the other."""
        _need_file(self.model, "the model bundle folder")
        if not self.latents:
            raise ConfigError("choose the latents file (LATENTS.h5)")
        out: list[list[str]] = []
        if self.embed_from:
            _need_file(self.embed_from, "the dataset or scan to embed")
            if Path(self.latents).exists() and not self.overwrite:
                raise ConfigError("already exists (tick Overwrite to replace it)", self.latents)
            embed = ["embed", self.embed_from, "--model", self.model, "--out", self.latents]
            _flag(embed, "--refine-steps", self.refine_steps)
            _flag(embed, "--refine-lr", self.refine_lr)
            _flag(embed, "--device", self.device)
            out.append(embed + ["--overwrite"] * self.overwrite)
        else:
            _need_file(self.latents, "the latents file (LATENTS.h5)")
        fit = ["directions", "fit", "--model", self.model, "--latents", self.latents]
        for name in ("labels", "trials", "seed", "device"):
            _flag(fit, "--" + name, getattr(self, name))
        out.append(fit + ["--overwrite"] * self.overwrite)
        return out


# -- images of the views ------------------------------------------------------------------


@dataclass
class ViewImage:
    """One displayed image: ``image [H, W]`` in native units and how it is shown."""

    image: np.ndarray
    modality: str | None  # "CT" | "MR" (None: a difference map)
    window: tuple[float, float] | None = None  # (level, width); None: the default window
    diverging: bool = False  # blue - white - red on a symmetric range (difference maps)


def to_rgb(view: ViewImage) -> np.ndarray:
    """``[H, W, 3]`` uint8 as the viewer shows it (grey window, or the diverging map)."""
    from medstyle_gui.core.windowing import default_window, symmetric_range, window_to_range

    image = np.nan_to_num(np.asarray(view.image, np.float64))
    if view.diverging:
        limit = symmetric_range(image)
        t = np.clip(image / limit, -1.0, 1.0)  # -1 blue, 0 white, +1 red
        red = np.where(t < 0, 1.0 + t, 1.0)
        blue = np.where(t > 0, 1.0 - t, 1.0)
        green = 1.0 - np.abs(t)
        rgb = np.stack([red, green, blue], axis=-1)
    else:
        level, width = view.window or default_window(image, view.modality)
        low, high = window_to_range(level, width)
        grey = np.clip((image - low) / (high - low), 0.0, 1.0)
        rgb = np.repeat(grey[..., None], 3, axis=-1)
    return np.round(rgb * 255.0).astype(np.uint8)


def write_png(view: ViewImage, path: str | PathLike[str], overwrite: bool = False) -> Path:
    """One view as a PNG, one image pixel per PNG pixel (values windowed as on screen)."""
    from PIL import Image

    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        Image.fromarray(to_rgb(view), "RGB").save(tmp, format="PNG")
    return path


def write_view_pngs(
    views: Mapping[str, ViewImage], folder: str | PathLike[str], stem: str, overwrite: bool = False
) -> list[Path]:
    """``folder/{stem}_{name}.png`` for every view; all are checked before any is written."""
    targets = {name: Path(folder) / f"{stem}_{name}.png" for name in views}
    for target in targets.values():
        ensure_can_write(target, overwrite)
    return [write_png(views[name], target, overwrite) for name, target in targets.items()]


# -- the generated slice as DICOM -----------------------------------------------------


@dataclass
class SliceRecipe:
    """How the shown slice was made: the render request in plain words for provenance."""

    model_name: str
    model_sha256: str
    source_file: str = ""  # the scan's file or folder name (never a full path)
    slice_index: int | None = None  # source slice whose latent was the start
    seed: int | None = None  # the random latent's seed when no scan was loaded
    moves: tuple[tuple[str, float], ...] = ()  # (direction, alpha in normal units)
    tau: float = 1.0
    mix_layers: tuple[str, ...] = ()
    mix_source: str | None = None  # "paired" | "slice" | "seed"
    modality: str = "MR"  # how the image was decoded

    def as_dict(self) -> dict[str, Any]:
        start = (
            {"scan": self.source_file, "slice": self.slice_index}
            if self.slice_index is not None
            else {"seed": self.seed}
        )
        recipe: dict[str, Any] = {
            "model": self.model_name,
            "start": start,
            "moves": [{"direction": n, "alpha": a} for n, a in self.moves],
            "tau": self.tau,
        }
        if self.mix_layers:
            recipe["mix"] = {"layers": list(self.mix_layers), "source": self.mix_source}
        return recipe

    def provenance(self, what: str = "slice") -> Provenance:
        moved = ", ".join(f"{n} {a:+.3g}" for n, a in self.moves) or "no moves"
        mixed = f", {'/'.join(self.mix_layers)} mixed" if self.mix_layers else ""
        return Provenance(
            synthetic=True,
            description=f"synthetic {self.modality} {what} from the explorer ({moved}{mixed})",
            model_sha256=self.model_sha256,
            recipe=self.as_dict(),
            source_files=[self.source_file] if self.source_file else [],
        )


def write_slice_dicom(
    image_native: np.ndarray,
    recipe: SliceRecipe,
    folder: str | PathLike[str],
    *,
    pixel_mm: tuple[float, float],
    slice_mm: float,
    overwrite: bool = False,
) -> Path:
    """The generated slice ``[R, R]`` (HU / MR units) as a one-file DICOM series folder.

    ``pixel_mm``: (between rows, between columns); ``slice_mm``: slice thickness."""
    from trainer.data.dicom_write import write_dicom_series

    volume = Volume(
        array=np.asarray(image_native, np.float32)[None],
        spacing_mm=(float(slice_mm), float(pixel_mm[0]), float(pixel_mm[1])),
        modality=recipe.modality,
        source=f"synthetic ({recipe.model_name})",
        modality_source="synthetic",
    )
    return write_dicom_series(
        volume, folder, provenance=recipe.provenance("slice"), overwrite=overwrite
    )


# -- a synthetic volume walked from the current state ------------------------------------


class ExportCancelled(MedstyleError):
    """The user stopped an export before it finished (nothing was written)."""


def export_volume(
    model: Any,
    request: Any,
    path: str | PathLike[str],
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    recipe: SliceRecipe | None = None,
    progress: Callable[[float, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> Path:
    """Generate ``request`` (a :class:`~medstyle_gui.core.generate.GenerateRequest`) with
    ``model`` and write it (NIfTI + sidecar, DICOM folder, HDF5: ``fmt`` or the name).

    ``recipe``: how the start latent was made in the explorer (its moves, mix), added to
    the provenance. ``progress(fraction, text)`` after each batch of slices; ``cancel``
    stops between batches with :class:`ExportCancelled`. Checks the target first."""
    from medstyle_gui.core.generate import generate_volume
    from trainer.data.write import output_format, write_volume

    path = Path(path)
    fmt = output_format(path, fmt)
    ensure_can_write(path, overwrite)
    say = progress or (lambda fraction, text: None)

    def step(done: int, total: int) -> None:
        if cancel is not None and cancel.is_set():
            raise ExportCancelled("export cancelled; nothing was written", path)
        say(0.9 * done / total, f"generated {done} of {total} slices")

    made = generate_volume(model, request, progress=step)
    provenance = made.provenance
    if recipe is not None:
        provenance = dataclasses.replace(
            provenance, recipe={**provenance.recipe, "explorer": recipe.as_dict()}
        )
    if cancel is not None and cancel.is_set():
        raise ExportCancelled("export cancelled; nothing was written", path)
    say(0.9, f"writing {path.name}")
    out = write_volume(made.volume, path, fmt=fmt, overwrite=overwrite, provenance=provenance)
    say(1.0, f"wrote {path.name}")
    return out


# -- metrics as CSV -------------------------------------------------------------------

#: Leading CSV columns; ``alpha_<direction>`` columns follow, then anything else.
METRIC_COLUMNS = (
    "time", "slice", "modality", "truth", "mae_hu", "mae_hu_body", "rmse", "rmse_body",
    "tau", "mix_layers", "render_ms",
)  # fmt: skip


def metrics_row(
    recipe: SliceRecipe, metrics: Mapping[str, float], truth: str, render_ms: float, time: str
) -> dict[str, Any]:
    """One CSV row: when, which slice, the moves, and the error against ``truth``."""
    row: dict[str, Any] = {
        "time": time,
        "slice": "" if recipe.slice_index is None else recipe.slice_index,
        "modality": recipe.modality,
        "truth": truth,
        "tau": recipe.tau,
        "mix_layers": " ".join(recipe.mix_layers),
        "render_ms": round(float(render_ms), 2),
        **{k: float(v) for k, v in metrics.items()},
    }
    row.update({f"alpha_{name}": alpha for name, alpha in recipe.moves})
    return row


def metrics_csv_text(rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV text: a header of :data:`METRIC_COLUMNS`, the ``alpha_*`` columns, the rest."""
    keys = {k for row in rows for k in row}
    alphas = sorted(k for k in keys if k.startswith("alpha_"))
    rest = sorted(keys - set(METRIC_COLUMNS) - set(alphas))
    columns = [*METRIC_COLUMNS, *alphas, *rest]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def write_metrics_csv(
    rows: Sequence[Mapping[str, Any]], path: str | PathLike[str], overwrite: bool = False
) -> Path:
    """Write the metrics rows (see :func:`metrics_row`) as CSV; at least one row."""
    if not rows:
        raise ConfigError("no metrics recorded yet (render against a ground truth first)")
    path = Path(path)
    with atomic_file(path, overwrite) as tmp:
        tmp.write_text(metrics_csv_text(rows), encoding="utf-8")
    return path
