"""Real and generated slices side by side, for the demo model card.

Usage: python scripts/demo/sample_grids.py BUNDLE DATA.h5 OUT.png [--n 6] [--seed 0]

Top half: ``n`` random slices of each modality from DATA.h5 (the training set). Bottom
half: ``n`` generated slices of each modality (truncation 0.7), sorted into CT and MR by
the bundle's "modality" direction (the bundle needs one). CT is shown at a soft-tissue
window (W 400, L 40), MR at the 1st-99th percentile of its slices; on the model matrix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from medstyle_gui.core.model import load_model

CT_WINDOW = (40.0, 400.0)  # level, width in HU


def _window(native: np.ndarray, modality: str) -> np.ndarray:
    if modality == "CT":
        level, width = CT_WINDOW
        lo, hi = level - width / 2, level + width / 2
    else:
        lo, hi = np.percentile(native, [1, 99])
    return np.clip((native - lo) / max(hi - lo, 1e-6), 0, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    model = load_model(args.bundle)
    rng = np.random.default_rng(args.seed)
    rows: list[tuple[str, str, list[np.ndarray]]] = []
    with h5py.File(args.data, "r") as f:
        modality = f["modality"][()]
        for code, name in ((1, "CT"), (0, "MR")):
            pick = np.sort(rng.choice(np.flatnonzero(modality == code), args.n, replace=False))
            unit = f["images"][pick]
            rows.append(
                (f"training {name}", name, [model.normalisation.to_native(u, name) for u in unit])
            )

    torch.manual_seed(args.seed)
    direction = model.directions.get("modality")
    if direction is None:
        raise SystemExit(f"{args.bundle}: no modality direction to sort generated slices by")
    generated: dict[str, list[np.ndarray]] = {"CT": [], "MR": []}
    with torch.no_grad():
        for _ in range(50):  # bounded: a model that makes one modality only must not hang
            if min(len(v) for v in generated.values()) >= args.n:
                break
            w = model.G.map(torch.randn(32, model.config.z_dim), truncation_psi=0.7)
            images = model.G.synthesise(w, noise_mode="const")[:, 0].numpy()
            for image, label in zip(images, direction.predict(w[:, 0]).numpy(), strict=True):
                name = "CT" if label == 1 else "MR"
                if len(generated[name]) < args.n:
                    generated[name].append(model.normalisation.to_native(image, name))
    if min(len(v) for v in generated.values()) < args.n:
        raise SystemExit(f"{args.bundle}: fewer than {args.n} generated slices of a modality")
    rows += [(f"generated {name}", name, generated[name]) for name in ("CT", "MR")]

    fig, axes = plt.subplots(len(rows), args.n, figsize=(1.6 * args.n, 1.75 * len(rows)))
    fig.patch.set_facecolor("black")
    for r, (title, name, images) in enumerate(rows):
        for c, native in enumerate(images):
            ax = axes[r, c]
            ax.imshow(_window(native, name), cmap="gray", vmin=0, vmax=1)
            ax.set_axis_off()
        axes[r, 0].set_title(title, color="white", fontsize=9, loc="left")
    fig.tight_layout(pad=0.3)
    fig.savefig(args.out, dpi=110, facecolor="black")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
