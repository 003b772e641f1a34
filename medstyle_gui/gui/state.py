"""AppState: the one object panels talk to. It owns the model, the explorer state, the
render worker and the task runner, and says what changed through signals.

Panels call the setters and never change ``state.explore`` themselves; every setter
emits its signal and asks for a render when the picture depends on it. Slow work (reading
and registering scans, loading a model) runs on ``state.tasks``; rendering runs on the
render worker. Failures arrive as ``errorRaised(one line)``; the app carries on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from medstyle_gui.core import explore
from medstyle_gui.core.explore import ExplorerState
from medstyle_gui.core.model import Model
from medstyle_gui.core.render import RenderResult
from medstyle_gui.gui.worker import RenderWorker, Task, TaskRunner, one_line
from trainer.errors import MedstyleError

_UNSET: Any = object()


def device_label(model: Model | None) -> str:
    """``"CPU"`` or ``"GPU (name)"``: what the status bar shows."""
    if model is None:
        return "no model"
    device = model.device
    if device.type == "cuda":
        import torch

        return f"GPU ({torch.cuda.get_device_name(device)})"
    return device.type.upper()


class AppState(QObject):
    """Model + :class:`ExplorerState` + workers, with Qt signals."""

    modelChanged = Signal()
    scanChanged = Signal()
    sliceChanged = Signal(int)
    latentsChanged = Signal()
    controlsChanged = Signal()  # moves, tau, mix, seed
    windowChanged = Signal()
    rendered = Signal(object)  # RenderResult with an image
    busyChanged = Signal(str)  # what runs, "" when idle
    errorRaised = Signal(str)  # one line for a dialog
    statusMessage = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.model: Model | None = None
        self.explore = ExplorerState()
        self.tasks = TaskRunner(self)
        self.renderer = RenderWorker()
        self.renderer.finished.connect(self._on_rendered)
        self.tasks.busyChanged.connect(self.busyChanged)
        self.last_result: RenderResult | None = None
        self.truth: np.ndarray | None = None  # [R, R] native units, of last_result
        self.truth_label = ""
        self.opened: dict[str, Any] | None = None  # how the scans were opened (sessions)
        self._stamp = 0
        self._shown_stamp = -1
        self._truths: dict[int, tuple[np.ndarray | None, str]] = {}
        self.closed = False
        self._loading: Task | None = None  # the scan load under way (a new one replaces it)

    # -- plumbing -------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop the workers (the window calls this when it closes); results still on their
        way are dropped, and no render is asked for again."""
        if self.closed:
            return
        self.closed = True
        self.tasks.wait_all(5.0)
        self.renderer.stop()

    def report_error(self, message: str) -> None:
        self.errorRaised.emit(message)

    def run_task(
        self,
        name: str,
        fn: Callable[[Callable[[float, str], None], Any], Any],
        on_done: Callable[[Any], None] | None = None,
    ) -> Task:
        """Run ``fn(progress, cancel)`` on a worker; a failure becomes ``errorRaised``."""
        self.statusMessage.emit(f"{name}...")
        return self.tasks.start(
            fn,
            name=name,
            on_done=on_done,
            on_failed=self.report_error,
            on_cancelled=lambda: self.statusMessage.emit(f"{name}: cancelled"),
        )

    @property
    def device(self) -> str:
        return device_label(self.model)

    def snapshot(self) -> ExplorerState:
        """A copy of the explorer state for background work (see ExplorerState.copy)."""
        return self.explore.copy()

    # -- model ----------------------------------------------------------------------------

    def set_model(self, model: Model | None) -> None:
        """Use ``model``; scans already open are put on its matrix again (their latents
        belong to the old model and are dropped)."""
        if self._loading is not None and self._loading.running:
            self.tasks.abandon(self._loading)  # it reads onto the old model's matrix
        self.model = model
        self.renderer.set_model(model)
        state = self.explore
        reopen = self.opened
        state.clear_scans()
        self.last_result, self.truth, self.truth_label = None, None, ""
        if model is not None:
            state.moves = {k: v for k, v in state.moves.items() if k in model.directions}
            state.seed_w = explore.seeded_w(model, state.seed)
        else:
            state.moves, state.seed_w = {}, None
        self.modelChanged.emit()
        self.scanChanged.emit()
        self.latentsChanged.emit()
        self.controlsChanged.emit()
        if model is not None:
            self.statusMessage.emit(f"model {model.name}: {model.resolution} px, {self.device}")
        if reopen is not None and model is not None:
            self.open_described(reopen)
        else:
            self.opened = None
            self.request_render()

    def open_model(self, folder: str | Path, device: str = "cpu") -> Task:
        """Load a model bundle on a worker, then :meth:`set_model`."""
        from medstyle_gui.core.model import load_model

        return self.run_task(
            f"opening model {Path(folder).name}",
            lambda progress, cancel: load_model(folder, device=device),
            self.set_model,
        )

    # -- scans ----------------------------------------------------------------------------

    def _need_model(self) -> Model | None:
        if self.model is None:
            self.report_error("open a model first: scans are shown on the model's matrix")
        return self.model

    def open_scan(
        self, path: str | Path, series_uid: str | None = None, encode: bool = True
    ) -> Task | None:
        """Read a scan on a worker, put it on the model matrix and encode its slices
        (unless ``encode`` is false: a session brings its latents)."""
        model = self._need_model()
        if model is None:
            return None

        def done(result: tuple) -> None:
            slot, latents = result
            # the series as the slot names it: its UID, where series_uid may be a number
            self.opened = {"kind": "scan", "path": str(path), "series_uid": slot.series_uid}
            self._set_scans(slot, None, latents, {})

        return self._load(
            f"opening {Path(path).name}",
            lambda progress, cancel: explore.load_scan(
                model, path, series_uid, progress, cancel, encode
            ),
            done,
        )

    def open_pair(
        self, ct_path: str | Path, mr_path: str | Path | None = None, encode: bool = True
    ) -> Task | None:
        """Open a paired study on a worker: a CT and an MR (registered), or one study
        folder (``mr_path`` None). The MR becomes the source, the CT its pair. Without
        ``encode`` its slices get no encoder latents (a session brings them)."""
        model = self._need_model()
        if model is None:
            return None

        def done(result: tuple) -> None:
            mr, ct, mr_w, ct_w = result
            self.opened = {
                "kind": "pair",
                "ct": str(ct_path),
                "mr": None if mr_path is None else str(mr_path),
                "swapped": False,
            }
            self._set_scans(mr, ct, mr_w, ct_w)

        return self._load(
            f"opening paired study {Path(ct_path).name}",
            lambda progress, cancel: explore.load_pair(
                model, ct_path, mr_path, progress, cancel, encode
            ),
            done,
        )

    def _load(self, name: str, fn, done: Callable[[Any], None]) -> Task:
        """Run a scan load, abandoning one still under way (the newest choice wins)."""
        if self._loading is not None and self._loading.running:
            self.tasks.abandon(self._loading)
        self._loading = self.run_task(name, fn, done)
        return self._loading

    def _set_scans(self, source, paired, source_w: dict, paired_w: dict) -> None:
        state = self.explore
        state.clear_scans()
        state.source, state.paired = source, paired
        state.encoder_latents.update(source_w)
        state.paired_encoder_latents.update(paired_w)
        state.index = source.num_slices // 2
        state.window = None
        self.scanChanged.emit()
        self.sliceChanged.emit(state.index)
        self.latentsChanged.emit()
        self.windowChanged.emit()
        self.statusMessage.emit(
            f"opened {Path(source.path).name}: {source.modality}, {source.num_slices} slices"
            + (f", paired with {paired.modality}" if paired is not None else "")
        )
        self.request_render()

    def swap_pair(self) -> None:
        """Make the paired scan the source (MR -> CT becomes CT -> MR)."""
        state = self.explore
        if state.paired is None:
            self.report_error("no paired study is open")
            return
        state.source, state.paired = state.paired, state.source
        state.latents, state.paired_latents = state.paired_latents, state.latents
        state.encoder_latents, state.paired_encoder_latents = (
            state.paired_encoder_latents,
            state.encoder_latents,
        )
        state.embed_errors.clear()
        state.window = None
        if self.opened is not None:
            self.opened["swapped"] = not self.opened.get("swapped", False)
        self.scanChanged.emit()
        self.latentsChanged.emit()
        self.windowChanged.emit()
        self.request_render()

    def set_slice(self, index: int) -> None:
        state = self.explore
        if state.source is None:
            return
        index = int(min(max(index, 0), state.source.num_slices - 1))
        if index == state.index:
            return
        state.index = index
        self.sliceChanged.emit(index)
        self.request_render()

    # -- latents --------------------------------------------------------------------------

    def set_latents(
        self,
        latents: dict[int, np.ndarray],
        *,
        encoder: dict[int, np.ndarray] | None = None,
        errors: dict[int, dict] | None = None,
        paired: bool = False,
    ) -> None:
        """Store refined latents (and the encoder's guesses, and ``{"encoder", "refined"}``
        errors) of source slices, or of the paired scan's slices with ``paired``."""
        state = self.explore
        if paired:
            state.paired_latents.update(latents)
            state.paired_encoder_latents.update(encoder or {})
        else:
            state.latents.update(latents)
            state.encoder_latents.update(encoder or {})
            state.embed_errors.update(errors or {})
        self.latentsChanged.emit()
        self.request_render()

    def sample_seed(self, seed: int) -> None:
        """Draw the random latent shown when no scan (or no embedded slice) is there."""
        if self.model is None:
            return
        self.explore.seed = int(seed)
        self.explore.seed_w = explore.seeded_w(self.model, int(seed))
        self.latentsChanged.emit()
        self.controlsChanged.emit()
        self.request_render()

    # -- controls -------------------------------------------------------------------------

    def set_move(self, name: str, alpha: float) -> None:
        """Move ``alpha`` normal units along direction ``name`` (0 removes the move)."""
        if self.model is not None and name not in self.model.directions:
            self.report_error(f"this model has no direction {name!r}")
            return
        alpha = float(alpha)
        if self.explore.moves.get(name, 0.0) == alpha:
            return
        if alpha == 0.0:
            self.explore.moves.pop(name, None)
        else:
            self.explore.moves[name] = alpha
        self.controlsChanged.emit()
        self.request_render()

    def reset_moves(self) -> None:
        self.explore.moves.clear()
        self.explore.tau = 1.0
        self.controlsChanged.emit()
        self.request_render()

    def set_tau(self, tau: float) -> None:
        self.explore.tau = float(tau)
        self.controlsChanged.emit()
        self.request_render()

    def set_mix(
        self,
        layers: tuple[str, ...] | list[str] = _UNSET,
        source: str = _UNSET,
        slice: int | None = _UNSET,  # the spec names it so (shadows the builtin here only)
        seed: int = _UNSET,
    ) -> None:
        """Change the style mix: any of its layers, source ("paired" | "slice" | "seed"),
        slice (for "slice") and seed (for "seed")."""
        state = self.explore
        if source is not _UNSET:
            if source not in explore.MIX_SOURCES:
                self.report_error(f"mix source {source!r} is not one of {explore.MIX_SOURCES}")
                return
            state.mix_source = source
        if layers is not _UNSET:
            state.mix_layers = tuple(layers)
        if slice is not _UNSET:
            state.mix_slice = None if slice is None else int(slice)
        if seed is not _UNSET:
            state.mix_seed = int(seed)
        self.controlsChanged.emit()
        self.request_render()

    def set_window(self, level: float, width: float) -> None:
        """Display window in native units (no re-render)."""
        self.explore.window = (float(level), float(max(width, 1e-6)))
        self.windowChanged.emit()

    # -- rendering ------------------------------------------------------------------------

    def request_render(self) -> bool:
        """Build the request from the current state and hand it to the render worker;
        False when there is nothing to render (no model, or no latent)."""
        model = self.model
        if model is None or self.closed:
            return False
        self._stamp += 1
        try:
            plan = explore.plan(self.explore, model)
            request = explore.request_from(self.explore, model, plan, self._stamp)
        except MedstyleError as err:
            self.report_error(str(err))
            return False
        except Exception as err:  # a bug: say it in one line, keep going
            self.report_error(one_line(err))
            return False
        if request is None:
            self.statusMessage.emit("nothing to render: embed this slice or sample a seed")
            return False
        truth = (plan.truth, plan.truth_label)
        self._truths[self._stamp] = truth
        self.renderer.submit(request)
        return True

    def _on_rendered(self, result: RenderResult) -> None:
        if self.closed or result.stamp < self._shown_stamp:
            return  # an older result overtaken by a newer one already shown
        self._shown_stamp = result.stamp
        truth, label = self._truths.get(result.stamp, (None, ""))
        self._truths = {k: v for k, v in self._truths.items() if k > result.stamp}
        if result.error:
            self.report_error(result.error)
        if result.image_native is None:
            return
        self.last_result, self.truth, self.truth_label = result, truth, label
        self.rendered.emit(result)

    @property
    def stamp(self) -> int:
        """The newest request's stamp."""
        return self._stamp

    # -- sessions -------------------------------------------------------------------------

    def save_session(self, path: str | Path, overwrite: bool = False) -> Path | None:
        """Write the session file; errors become ``errorRaised``."""
        from medstyle_gui.core.session import save_session

        extra = {
            "model": None if self.model is None else str(self.model.folder),
            "model_sha256": None if self.model is None else self.model.sha256,
            "opened": self.opened,
        }
        try:
            out = save_session(path, self.explore, extra, overwrite=overwrite)
        except MedstyleError as err:
            self.report_error(str(err))
            return None
        self.statusMessage.emit(f"saved session {Path(out).name}")
        return out

    def open_session(self, path: str | Path, device: str | None = None) -> None:
        """Read a session: open its model (if another, on ``device``; default: the open
        model's device, else the CPU) and scans, then restore the latents, moves, mix and
        window."""
        from medstyle_gui.core.session import load_session

        try:
            saved, scans, extra = load_session(path)
        except MedstyleError as err:
            self.report_error(str(err))
            return
        folder = extra.get("model")

        def restore(_: object = None) -> None:
            self._restore(saved, extra)

        source = scans.get("source")
        opened = extra.get("opened") or (None if not source else {"kind": "scan", **source})

        def after_model(_: object = None) -> None:
            if opened:
                self.opened = None
                # the session's own encoder latents will be restored: encoding is wasted
                brings_latents = (
                    self.model is not None
                    and extra.get("model_sha256") == self.model.sha256
                    and bool(saved.encoder_latents)
                    and (opened.get("kind") != "pair" or bool(saved.paired_encoder_latents))
                )
                task = self.open_described(opened, encode=not brings_latents)
                if task is not None:
                    task.done.connect(restore)
                    return
            restore()

        if folder is None or (
            self.model is not None and Path(folder).resolve() == self.model.folder.resolve()
        ):
            if self.model is None:
                self.report_error(f"{path}: the session names no model; open a model first")
                return
            after_model()
            return
        self.opened = None  # the scans open now are replaced, not re-read for the new model
        if device is None:
            device = "cpu" if self.model is None else str(self.model.device)
        self.open_model(folder, device=device).done.connect(lambda _: after_model())

    def open_described(self, opened: dict[str, Any], encode: bool = True) -> Task | None:
        """Open scans described as :func:`~medstyle_gui.core.session_build.describe_inputs`
        (and ``self.opened``) do: a scan, or a pair (swapped when it says so)."""
        if opened.get("kind") == "pair":
            task = self.open_pair(opened["ct"], opened.get("mr"), encode=encode)
            if task is not None and opened.get("swapped"):
                task.done.connect(lambda _: self.swap_pair())
            return task
        return self.open_scan(opened["path"], opened.get("series_uid"), encode=encode)

    def _restore(self, saved: ExplorerState, extra: dict) -> None:
        from medstyle_gui.core.session import restore_into

        state, model = self.explore, self.model
        if model is None:
            return
        same_model = extra.get("model_sha256") in (None, model.sha256)
        restore_into(state, saved, model.directions, latents=same_model)
        if not same_model:
            self.statusMessage.emit("the session's latents belong to another model: not restored")
        self.sliceChanged.emit(state.index)
        self.latentsChanged.emit()
        self.controlsChanged.emit()
        self.windowChanged.emit()
        self.statusMessage.emit("session restored")
        self.request_render()
