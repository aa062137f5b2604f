"""Sweeps across many GPUs and machines on Ray (optional extra: ``pip install "aaas-profile[ray]"``).

The sweep is cut into shards (``sweep.Shard``: every n-th cell, a cell being image × mask × seed × sampler, so
each shard gets its share of every sampler's cells); each shard runs as one Ray task with one GPU when the cluster
has GPUs (one CPU share otherwise) and writes its own part files into the run folder, exactly as a shard
started by hand, torchrun or a SLURM array would. The run folder must therefore be on a filesystem every
node sees (NFS, Lustre, a mounted bucket), and every node needs the package, the model weights and the
images at the same paths. A task that dies is simply run again by starting the sweep again: shards resume.

Multi-node recipe::

    # on the head node
    ray start --head --port=6379
    # on every other node (same Python environment, same shared paths)
    ray start --address=HEAD_IP:6379
    # anywhere in the cluster
    aaas-profile sweep --model celeba --data /shared/faces --out /shared/results/celeba --ray auto
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from time import monotonic, sleep

from aaas_profile import runs, sweep


def _import_ray():
    try:
        import ray
    except ImportError:
        raise sweep.SweepError('--ray needs Ray: pip install "aaas-profile[ray]"') from None
    return ray


def unreachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why nothing answers a TCP connection at a cluster address HOST:PORT or ray://HOST:PORT (the OS's reason),
    or None when something does or the address has another form ("local", "auto": Ray's own to resolve).

    Asked before ``ray.init``, which retries a silent address for minutes before it gives up."""
    host, colon, port = address.split("://", 1)[-1].rpartition(":")
    if address in ("local", "auto") or not colon or not port.isdigit():
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            return None
    except OSError as err:
        return err.strerror or type(err).__name__


def check_address(address: str) -> None:
    """Raise SweepError (one line) when nothing answers at a HOST:PORT cluster address (``unreachable``)."""
    why = unreachable(address)
    if why is not None:
        raise sweep.SweepError(f"cannot reach a Ray cluster at '{address}' ({why}): start one there "
                               "(`ray start --head`) or check the address")


def connect(address: str, num_cpus: int | None = None):
    """Join a Ray cluster: "local" starts one on this machine, "auto" finds a running one, or ray://HOST:PORT."""
    ray = _import_ray()
    if not ray.is_initialized():
        if address == "local":
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
        else:
            check_address(address)
            try:
                ray.init(address=address, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise sweep.SweepError(f"cannot reach a Ray cluster at '{address}' ({err})") from None
    return ray


def _run_shard(config: sweep.SweepConfig, index: int, count: int, threads: int) -> dict:
    """One shard inside a Ray worker: a normal sweep restricted to its cells."""
    import torch

    torch.set_num_threads(threads)
    result = sweep.run(config, shard=sweep.Shard(index, count))
    return {"shard": f"{index}/{count}", "cells_run": result.cells_run, "wall_s": result.wall_s,
            "unet_calls": result.unet_calls}


def run_on_ray(config: sweep.SweepConfig, address: str, shards: int | None = None,
               on_progress: Callable[[int, int], None] | None = None,
               prepared: sweep.Prepared | None = None) -> tuple[sweep.SweepResult, list[dict]]:
    """Run a whole sweep as Ray tasks and return the run folder's summary and each shard's report.

    The sweep is validated and its run folder fixed here, on the driver, before any task starts, so every
    shard writes to the same folder. ``shards`` defaults to the cluster's GPUs, or one shard per two CPUs.
    ``on_progress(cells_done, cells_total)`` is called while the tasks run. ``prepared``: ``sweep.prepare(config)``
    when the caller has already made it (to show its warnings first).
    """
    prepared = prepared or sweep.prepare(config)
    # The driver's resolved configuration (dtype "auto" already decided, the run folder fixed, the samplers
    # checked): every shard runs what the driver checked, whatever hardware its node has.
    config = replace(prepared.config, out=str(prepared.run_dir.resolve()))
    ray = connect(address, num_cpus=os.cpu_count() if address == "local" else None)
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    count = shards or max(1, gpus or cpus // 2)
    threads = 1 if gpus else max(1, cpus // count)
    task = ray.remote(num_gpus=1 if gpus else 0, num_cpus=1 if gpus else threads, max_retries=0)(_run_shard)
    pending = [task.remote(config, index, count, threads) for index in range(count)]
    total = len(sweep.all_cells(prepared)) * len(config.steps)  # every sampler's cells at every step count
    reports, last = [], 0.0
    done = prepared.done  # the bar reads each new part once, not every part
    while pending:
        finished, pending = ray.wait(pending, num_returns=1, timeout=2.0)
        for ref in finished:
            try:
                reports.append(ray.get(ref))
            except ray.exceptions.RayTaskError as err:
                cause = err.cause if getattr(err, "cause", None) else err
                raise sweep.SweepError(f"a shard failed: {str(cause).strip().splitlines()[-1]}") from None
        if on_progress is not None and (monotonic() - last > 2.0 or not pending):
            on_progress(len(done.refresh()), total)
            last = monotonic()
        if not finished:
            sleep(0.1)
    table = runs.read_scores(prepared.run_dir)
    result = sweep.SweepResult(
        prepared.run_dir, config, sum(r["cells_run"] for r in reports),
        total - sum(r["cells_run"] for r in reports), max((r["wall_s"] for r in reports), default=0.0),
        sum(r["unet_calls"] for r in reports), sweep.summarise(table),
    )
    return result, sorted(reports, key=lambda r: int(r["shard"].split("/")[0]))
