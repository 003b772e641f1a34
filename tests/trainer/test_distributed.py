"""Distributed helpers: no-ops in one process, correct over a 2-process gloo group, and
a 2-process CPU training run (torchrun) that keeps its ranks identical and matches a
single process with the same global batch."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.trainer.test_gan_loop import read_log, run_cli, write_config
from trainer import distributed


def test_single_process_helpers_are_no_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = distributed.init("cpu")
    assert (info.rank, info.world_size, info.is_main, info.device.type) == (0, 1, True, "cpu")
    assert not distributed.is_distributed() and distributed.is_main()
    assert distributed.average({"loss": torch.tensor(2.5), "gp": 1.0}) == {"loss": 2.5, "gp": 1.0}
    layer = torch.nn.Linear(3, 2)
    layer(torch.ones(1, 3)).sum().backward()
    before = layer.weight.grad.clone()
    distributed.average_gradients(layer.parameters())
    distributed.broadcast_module(layer)
    distributed.barrier()
    assert torch.equal(layer.weight.grad, before) and distributed.all_equal(layer)


def test_batches_are_distributed_samplers_and_resume_mid_epoch() -> None:
    """Rank r's batches hold exactly DistributedSampler's indices for rank r (seed +
    epoch), the ranks together make one process's batches, and a sampler started at a
    saved (epoch, offset) continues the stream, across the epoch boundary too."""
    from itertools import islice

    from torch.utils.data import DistributedSampler

    from trainer.loops.batch_sampler import GlobalBatchSampler

    n, batch = 50, 8  # 6 batches an epoch, 2 indices left over
    for epoch in (0, 1):
        for rank in (0, 1):
            ref = DistributedSampler(range(n), num_replicas=2, rank=rank, seed=3)
            ref.set_epoch(epoch)
            ours = GlobalBatchSampler(n, batch, rank=rank, world_size=2, seed=3, epoch=epoch)
            got = [i for b in islice(iter(ours), 6) for i in b]
            assert got == list(ref)[:24]
    one = list(islice(iter(GlobalBatchSampler(n, batch, rank=0, world_size=1, seed=3)), 9))
    two = [
        list(islice(iter(GlobalBatchSampler(n, batch, rank=r, world_size=2, seed=3)), 9))
        for r in (0, 1)
    ]
    for k in range(9):
        assert sorted(one[k]) == sorted(two[0][k] + two[1][k])
    sampler = GlobalBatchSampler(n, batch, rank=0, world_size=1, seed=3)
    stream = iter(sampler)
    for _ in range(4):
        next(stream)
    epoch, offset = sampler.issued[-1]
    resumed = GlobalBatchSampler(n, batch, rank=0, world_size=1, seed=3, epoch=epoch, offset=offset)
    assert list(islice(iter(resumed), 5)) == one[4:9]  # through the end of epoch 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gloo_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2"
    )
    os.environ["LOCAL_RANK"] = str(rank)
    info = distributed.init("cpu")
    torch.manual_seed(rank)  # different weights on each rank
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    equal_before = distributed.all_equal(net)
    distributed.broadcast_module(net)
    # rank r's gradients are r + 1; the second layer has a gradient on rank 1 only
    for p in net[0].parameters():
        p.grad = torch.full_like(p, rank + 1.0)
    if rank == 1:
        net[1].weight.grad = torch.ones_like(net[1].weight)
    distributed.average_gradients(net.parameters())
    result = {
        "rank": info.rank,
        "world": info.world_size,
        "equal_before": equal_before,
        "equal_after": distributed.all_equal(net),
        "mean": distributed.average({"loss": float(rank), "n": 10.0 * rank}),
        "grad0": net[0].weight.grad.unique().tolist(),
        "grad1": net[1].weight.grad.unique().tolist(),
        "bias1_grad": net[1].bias.grad is None,
    }
    distributed.cleanup()
    Path(out, f"{rank}.json").write_text(json.dumps(result))


def test_two_gloo_processes_average_and_stay_identical(tmp_path: Path) -> None:
    mp.spawn(_gloo_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert (res["rank"], res["world"]) == (r, 2)
        assert res["equal_before"] is False and res["equal_after"] is True
        assert res["mean"] == {"loss": 0.5, "n": 5.0}
        assert res["grad0"] == [1.5]
        assert res["grad1"] == [0.5]  # zeros on rank 0, ones on rank 1
        assert res["bias1_grad"] is True  # no rank had one: left alone


def _one_and_two_processes(data: Path, folder: Path, **changes) -> tuple[Path, Path]:
    """The same run with 1 process (batch 8) and with ``--gpus 2`` (torchrun, gloo, 4 + 4)."""
    config = write_config(folder, style_mixing_prob=0.0, **changes)
    common = ["--data", str(data), "--config", str(config)]
    run_cli(*common, "--out", str(folder / "one"))
    run_cli(*common, "--out", str(folder / "two"), "--gpus", "2")
    return folder / "one", folder / "two"


def _ticks(run: Path) -> list[float]:
    """loss_D, loss_G, loss_D, loss_G, ... of the ticks of a run."""
    return [r[k] for r in read_log(run) if r["event"] == "tick" for k in ("loss_D", "loss_G")]


def test_two_processes_take_the_same_step_as_one_with_the_same_global_batch(
    gan_data: Path,
    tmp_path: Path,
) -> None:
    """One step of batch 8 in one process and as 4 + 4 in two gloo processes.

    Tolerance: the losses agree to 1e-5 (rounding; the same images, latents, penalty
    mixing weights and minibatch-stddev groups). D's weights agree to 1e-5. G's agree
    to 1e-5 except for parameters whose gradient is noise: the per-layer noise strengths
    (each process draws its own noise; they start at 0, so the images do not differ yet)
    and biases that the normalisation after them almost cancels. Adam's first step moves
    every weight by +-lr whatever the size of its gradient, so those differ by up to
    2 lr; they are under 1% of G's weights.
    """
    from trainer.checkpoint import load_checkpoint

    one, two = _one_and_two_processes(gan_data, tmp_path, kimg=0.008, snapshot_kimg=0.008)
    assert _ticks(two) == pytest.approx(_ticks(one), rel=1e-5, abs=1e-6)
    snaps = [r for r in read_log(two) if r["event"] == "snapshot"]
    assert [(s["world_size"], s["ranks_in_sync"]) for s in snaps] == [(2, True)]
    a = load_checkpoint(one / "checkpoints" / "latest.pt")
    b = load_checkpoint(two / "checkpoints" / "latest.pt")
    assert a["progress"]["images_seen"] == b["progress"]["images_seen"] == 8

    def differences(net: str) -> torch.Tensor:
        return torch.cat(
            [(b[net][k] - t).abs().flatten() for k, t in a[net].items() if t.is_floating_point()]
        )

    assert differences("D").max() < 1e-5
    g = differences("G")
    assert (g > 1e-5).float().mean() < 0.01 and g.max() <= 2 * 1e-3 + 1e-6


@pytest.mark.slow
def test_two_processes_follow_one_through_a_fade_in(
    gan_data: Path,
    tmp_path: Path,
) -> None:
    """8 steps into a fade-in: ranks stay bit-identical at every snapshot; the loss curve
    of D follows the single process to within 5% (measured: under 2%). The runs drift
    apart slowly, as two seeds of one run would: the noise each process draws for itself
    is the one thing not shared, so G's small loss (about -1..0) differs by up to 0.3."""
    one, two = _one_and_two_processes(gan_data, tmp_path, kimg=0.064, snapshot_kimg=0.032)
    snaps = [r for r in read_log(two) if r["event"] == "snapshot"]
    assert [(s["world_size"], s["ranks_in_sync"]) for s in snaps] == [(2, True), (2, True)]
    assert [r["images_seen"] for r in read_log(two)] == [r["images_seen"] for r in read_log(one)]
    loss_d = slice(0, None, 2)  # D's loss (~6-8) is well above its step-to-step noise
    assert _ticks(two)[loss_d] == pytest.approx(_ticks(one)[loss_d], rel=0.05)
