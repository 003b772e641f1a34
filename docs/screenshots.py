"""Make the documentation's screenshots of the explorer, one per panel in use.

    python docs/screenshots.py --model BUNDLE [--scan SCAN_OR_STUDY] --out docs/screenshots

Runs the real window (under Xvfb or a desktop; offscreen also works), opens the model and
the scan (default: the demo study), and for each panel does what a user would (move the
modality slider toward CT, tick the middle layers for a style mix, embed the current
slice, open the model card, the export and training panels), waits until nothing is
loading or rendering, and saves the whole window as a PNG.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def alpha_to_ct(state) -> float:
    """The smallest move along the Latent panel's 'modality' slider after which its
    classifier is sure the current slice's latent is CT, whatever the direction's scale
    in this model's W."""
    import torch

    from medstyle_gui.core.explore import current_w
    from medstyle_gui.core.generate import alpha_to_class

    w = torch.as_tensor(current_w(state.snapshot(), state.model), dtype=torch.float32)
    direction = state.model.directions["modality"]
    return alpha_to_class(direction, w.reshape(1, -1), 1, state.model.w_mean)


def wait_quiet(app, state, timeout_s: float = 300.0, settle_s: float = 0.5) -> None:
    """Process events until no task runs and no render is pending for ``settle_s``."""
    start = quiet_since = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        app.processEvents()
        if state.tasks.busy or state.renderer.busy:
            quiet_since = time.perf_counter()
        elif time.perf_counter() - quiet_since > settle_s:
            return
        time.sleep(0.02)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="model bundle folder")
    parser.add_argument("--scan", type=Path, help="scan or paired study (default: demo study)")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    args = parser.parse_args()

    from medstyle_gui.gui.app import demo_study, make_app
    from medstyle_gui.gui.main_window import MainWindow
    from medstyle_gui.gui.state import AppState

    app = make_app()
    state = AppState()
    window = MainWindow(state)
    window.resize(1600, 1000)
    window.show()
    state.open_model(args.model, device="cpu")
    wait_quiet(app, state)
    scan = args.scan or demo_study()
    if scan is not None and (Path(scan) / "study.json").is_file():
        state.open_pair(scan)
    elif scan is not None:
        state.open_scan(scan)
    wait_quiet(app, state)
    args.out.mkdir(parents=True, exist_ok=True)

    def shot(name: str, dock: str | None = None) -> None:
        if dock is not None and dock in window.docks:
            window.docks[dock].show()
            window.docks[dock].raise_()
        wait_quiet(app, state)
        path = args.out / f"{name}.png"
        window.grab().save(str(path), "PNG")
        print(f"wrote {path}")

    panels = window.panels
    shot("scans", "scans")
    panels["embed"].start()  # embed the current slice: encoder + refinement
    wait_quiet(app, state)
    shot("embed", "embed")
    if "modality" in state.model.directions:
        panels["latent"].set_alpha("modality", alpha_to_ct(state))
    shot("latent", "latent")
    panels["latent"].reset()
    panels["mixing"].apply_preset("middle")
    shot("mixing", "mixing")
    panels["mixing"].set_layers(())
    shot("model", "model")
    shot("export", "export")
    shot("training", "training")
    state.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
