"""Put images into the model's latent space W: encoder start, then refinement.

Fetty et al. 2020, eqs. 1-2: start at the encoder's guess ``E(x)`` and minimise

    L(w) = sum_r ||D_r(G(w)) - D_r(x)||_2 + ||G(w) - x||_2

where ``D_r`` is the output of the discriminator's first convolution at each
resolution r >= 64 the model has (a 32 px model has none, so only the pixel term
remains), with RAdam (0.9, 0.999), lr 1e-3, for 350 steps: few enough that the latent
stays near the encoder's guess, where the directions were learnt.

Those settings stop well short of the loss's minimum in W: on the demo model the
reconstruction error keeps falling until about 500 steps at lr 0.03 (:data:`CONVERGED_STEPS`,
:data:`CONVERGED_LR`), where more steps or a larger rate no longer change it. Both are
offered; the paper's are the default so its experiments stay as published.

Slices are refined as one batch of independent problems: the loss is a sum of
per-slice terms, so each slice's gradient (and with Adam's per-parameter scaling each
slice's path) is the same whatever else is in the batch. Batches of ``batch`` slices
keep memory bounded for whole volumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from medstyle_gui.core.model import Model
from trainer.errors import ConfigError, MedstyleError
from trainer.metrics import slice_errors

#: The paper's refinement settings.
REFINE_STEPS = 350
REFINE_LR = 1e-3
REFINE_BETAS = (0.9, 0.999)
#: Refinement run to convergence in W (measured on the demo model; see the module notes).
CONVERGED_STEPS = 500
CONVERGED_LR = 3e-2
#: More refinement steps than anyone needs (500 converge): refused, since the loss
#: curve's memory grows with them.
MAX_REFINE_STEPS = 100_000
#: The discriminator's first-conv features are compared from this resolution up.
FEATURE_MIN_RESOLUTION = 64


def refinement_settings(model: Model) -> tuple[int, float]:
    """``(steps, lr)`` to embed with by default: those the model's directions were fitted
    with (their latents' settings, recorded by ``medstyle directions fit``), so a new
    latent lands where the classifiers learnt; the paper's without such a record."""
    record = model.embedding or {}
    steps = record.get("refine_steps", REFINE_STEPS)
    lr = record.get("refine_lr", REFINE_LR)
    return int(steps), float(lr)


class EmbedCancelled(MedstyleError):
    """The user stopped an embedding before it finished."""


@dataclass(frozen=True)
class EmbedProgress:
    """Where an embedding is: sent to the progress callback after every step."""

    slices_done: int  # slices finished before the current batch
    slices_total: int
    batch_slices: int  # slices in the current batch
    step: int  # refinement steps done in the current batch (0: the encoder's start)
    steps: int
    loss: float  # mean per-slice refinement loss of the current batch at this step


@dataclass
class EmbedResult:
    """Latents and errors of N embedded slices.

    Errors are the paper's: MAE in HU for a CT slice, RMSE on [-1, 1] for an MR slice,
    over the whole image and (``*_body``) inside the body mask of the input slice.
    """

    w: np.ndarray  # [N, w_dim] refined latents
    w_encoder: np.ndarray  # [N, w_dim] the encoder's guesses (refinement's start)
    error_encoder: np.ndarray  # [N]
    error_refined: np.ndarray  # [N]
    error_encoder_body: np.ndarray  # [N]
    error_refined_body: np.ndarray  # [N]
    loss_curve: np.ndarray  # [steps + 1, N] refinement loss per slice, step 0 = start
    images: np.ndarray  # [N, R, R] refined reconstructions on [-1, 1]
    steps: int
    lr: float  # refinement learning rate

    def latents_by_slice(
        self, rows: Sequence[int]
    ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """``({slice number: refined w}, {slice number: encoder's w})``, each ``[w_dim]``,
        where ``rows[k]`` is the slice number of result row k (the explorer's tables)."""
        refined = {int(i): self.w[k] for k, i in enumerate(rows)}
        encoder = {int(i): self.w_encoder[k] for k, i in enumerate(rows)}
        return refined, encoder

    def errors_by_slice(self, rows: Sequence[int]) -> dict[int, dict[str, float]]:
        """``{slice number: {"encoder", "refined", "encoder_body", "refined_body"}}`` where
        ``rows[k]`` is the slice number of result row k (the explorer's table)."""
        return {
            int(i): {
                "encoder": float(self.error_encoder[k]),
                "refined": float(self.error_refined[k]),
                "encoder_body": float(self.error_encoder_body[k]),
                "refined_body": float(self.error_refined_body[k]),
            }
            for k, i in enumerate(rows)
        }


def refinement_loss(model: Model, w: torch.Tensor, target: torch.Tensor, target_features):
    """Per-slice loss ``[N]`` of eq. 1 for ``w [N, w_dim]`` against ``target [N, 1, R, R]``.

    ``target_features``: ``{r: [N, C_r, r, r]}`` from :func:`target_features` (computed
    once per batch, since x does not change).
    """
    image = model.G.synthesise(model.broadcast(w), noise_mode="const")
    loss = (image - target).flatten(1).norm(dim=1)
    if target_features:
        for r, feat in model.D.first_conv_features(image).items():
            loss = loss + (feat - target_features[r]).flatten(1).norm(dim=1)
    return loss, image


@torch.no_grad()
def target_features(model: Model, target: torch.Tensor) -> dict[int, torch.Tensor]:
    """The discriminator's first-conv features of the targets at r >= 64 ({} if none)."""
    if model.D is None or model.resolution < FEATURE_MIN_RESOLUTION:
        return {}
    return model.D.first_conv_features(target)


@torch.no_grad()
def encode(model: Model, images: torch.Tensor) -> torch.Tensor:
    """The encoder's guess ``[N, w_dim]`` for ``images [N, 1, R, R]``; the mean latent
    when the bundle has no encoder (refinement then starts from the average image)."""
    if model.encoder is None:
        return model.w_mean.expand(images.shape[0], -1).clone()
    return model.encoder(images)


def _synthesise(model: Model, w: torch.Tensor) -> torch.Tensor:
    """``w [N, w_dim]`` -> images ``[N, R, R]`` on the CPU, float32, const noise."""
    return model.G.synthesise(model.broadcast(w), noise_mode="const")[:, 0].float().cpu()


def _check_images(model: Model, images: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, dtype=np.float32))
    if x.ndim == 2:
        x = x[None]
    r = model.resolution
    if x.ndim != 3 or tuple(x.shape[1:]) != (r, r):
        raise ConfigError(
            f"images of shape {list(x.shape)} do not fit the model's {r} x {r} matrix "
            "(resample the scan to the model matrix first)"
        )
    if not torch.isfinite(x).all():
        raise ConfigError("the images contain NaN or infinite values")
    return x[:, None]


def embed_images(
    model: Model,
    images: np.ndarray | torch.Tensor,
    modalities: Sequence[str],
    *,
    steps: int = REFINE_STEPS,
    batch: int = 16,
    lr: float = REFINE_LR,
    progress: Callable[[EmbedProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    bf16: bool = False,
) -> EmbedResult:
    """Embed slices into W: encoder, then ``steps`` refinement steps.

    Args:
        model: the loaded bundle (needs G; D for the feature term; encoder or not).
        images: ``[N, R, R]`` (or one ``[R, R]``) on [-1, 1], R the model's resolution.
        modalities: ``"CT"`` or ``"MR"`` per slice (chooses the error measure).
        steps: refinement steps (0: encoder only).
        batch: slices refined together (memory grows linearly with it).
        lr: RAdam's learning rate (the paper's 1e-3; :data:`CONVERGED_LR` with
            :data:`CONVERGED_STEPS` steps reaches the minimum in W).
        progress: called after the encoder and after every step.
        cancel: polled every step; when it returns True, :class:`EmbedCancelled` is raised.
        bf16: run the networks' arithmetic in bfloat16 (autocast) during refinement; w,
            the optimiser and the reported images and errors stay float32. On a CPU with
            bf16 units (AVX512-BF16, AMX) about 1.7x faster at the same error; on one
            without them, slower.
    """
    x_all = _check_images(model, images)
    n = x_all.shape[0]
    if len(modalities) != n:
        raise ConfigError(f"{len(modalities)} modalities given for {n} slices")
    if not 0 <= steps <= MAX_REFINE_STEPS or batch < 1 or not lr > 0:
        raise ConfigError(
            f"steps must be >= 0, batch >= 1 and lr > 0 (got {steps}, {batch}, {lr:g})"
        )
    w_enc, w_out, images_out, images_start = [], [], [], []
    curve = np.zeros((steps + 1, n), np.float32)
    autocast = torch.autocast(model.device.type, dtype=torch.bfloat16, enabled=bf16)
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        x = x_all[start:stop].to(model.device)
        with autocast:
            feats = target_features(model, x)
        w0 = encode(model, x)
        w = w0.clone().requires_grad_(True)
        optimiser = torch.optim.RAdam([w], lr=lr, betas=REFINE_BETAS)
        for step in range(steps + 1):
            if cancel is not None and cancel():
                raise EmbedCancelled("embedding cancelled")
            with autocast:
                loss, image = refinement_loss(model, w, x, feats)
            loss = loss.float()
            curve[step, start:stop] = loss.detach().cpu().numpy()
            if step == 0:  # G(E(x)): the encoder-only error needs no second pass
                images_start.append(image.detach().float().cpu()[:, 0])
            if progress is not None:
                mean = float(loss.detach().mean())
                progress(EmbedProgress(start, n, stop - start, step, steps, mean))
            if step == steps:
                break
            optimiser.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimiser.step()
        if bf16:  # the images and errors reported are the float32 ones the explorer shows
            with torch.no_grad():
                images_start[-1] = _synthesise(model, w0)
                image = _synthesise(model, w.detach())[:, None]
        w_enc.append(w0.cpu())
        w_out.append(w.detach().cpu())
        images_out.append(image.detach().float().cpu()[:, 0])
    w_encoder = torch.cat(w_enc).numpy()
    w_refined = torch.cat(w_out).numpy()
    reconstructed = torch.cat(images_out).numpy()
    encoder_images = torch.cat(images_start).numpy()
    truth = x_all[:, 0].numpy()
    err_enc, err_enc_body = slice_errors(encoder_images, truth, modalities, model.normalisation)
    err_ref, err_ref_body = slice_errors(reconstructed, truth, modalities, model.normalisation)
    return EmbedResult(
        w=w_refined,
        w_encoder=w_encoder,
        error_encoder=err_enc,
        error_refined=err_ref,
        error_encoder_body=err_enc_body,
        error_refined_body=err_ref_body,
        loss_curve=curve,
        images=reconstructed,
        steps=steps,
        lr=lr,
    )
