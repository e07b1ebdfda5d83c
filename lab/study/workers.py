"""Running a study's steps in parallel on a Ray cluster.

    python -m lab study --scale S --workers 8             # a local Ray cluster of 8 workers
    python -m lab study --scale S --address auto          # the cluster `ray start` runs on this machine
    python -m lab study --scale S --address HOST:6379     # or one elsewhere

A step goes to a worker once the steps it builds on are finished (`dependencies`),
asking for the resources it needs (`resources`): one CPU, and on a machine with
GPUs a share of one, so that several small runs share a GPU. Workers run the
step exactly as the sequential study does (`lab.study.run.attempt`) and send back
its outcome; the study's process alone writes the manifest and the log.

Consistency. Every step's result is a cached row of the results store (sqlite,
one transaction per row, a unique cache key), so workers finishing at once add
one row each and a row is never written twice. Every node reads and writes the
same data folder (`LAB_DATA`, on a shared filesystem beyond one machine). A
pretraining run holds a lock on its checkpoint folder while it trains, so two
steps that reach the same run train it once. A worker killed mid-step loses
that step only: it is reported as failed, and the next run of the study, which
skips every cached step, completes it.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import checks
from ..errors import LabError
from ..methods import METHODS
from ..methods.base import Step
from .plan import Plan
from .run import Ledger, attempt, launched

GPU_SHARE = 0.25
"""Of one GPU, for a step under `WHOLE_GPU_FLOPS`: the lab's small models are launch-bound on a GPU,
so four run side by side about as fast as one alone."""
WHOLE_GPU_FLOPS = 1e17
"""Planned FLOPs from which a step gets a whole GPU: minutes of an H100 at the paper SLM's speed."""
ENV_PREFIXES = ("LAB_", "HF_", "TRANSFORMERS_", "TQDM_")
"""The environment the workers take from the study's process: where the data is, offline switches."""


def dependencies(plan: Plan) -> dict[str, set[str]]:
    """Step id -> the ids of the steps it runs after.

    A specialization runs after the pretraining of every method its method needs, and after
    the earlier steps, on the same domain and set, whose work it would otherwise repeat:
    those of its own method when it trains from scratch (SLM-is trains one run per domain and
    set, with a checkpoint for every budget), and, at the same budget, those of the methods
    that build on its method's pretraining (SLM-d fine-tunes its LLM teacher with the LLM's
    own recipe and keeps the row, which the LLM's step then reads back)."""
    pretraining = {s.method: s.id for s in plan.steps if s.phase == "pretrain"}
    deps: dict[str, set[str]] = {}
    for i, step in enumerate(plan.steps):
        deps[step.id] = set()
        if step.phase == "pretrain":
            continue
        method = METHODS[step.method]
        deps[step.id] |= {pretraining[m] for m in method.needs if m in pretraining}
        for before in plan.steps[:i]:
            if before.phase != "specialize" or (before.domain, before.set_tokens) != (step.domain, step.set_tokens):
                continue
            if before.method == step.method:
                shares = method.from_scratch
            else:
                shares = before.fraction == step.fraction and step.method in METHODS[before.method].needs
            if shares:
                deps[step.id].add(before.id)
    return deps


def resources(step: Step, gpus: bool, launcher: list[str] | None = None) -> dict:
    """What one step asks of the cluster: a CPU, and where there are GPUs a share of one (none for
    a step the pretraining launcher runs: it places its own processes)."""
    if not gpus or launched(step, launcher):
        return {"num_cpus": 1}
    return {"num_cpus": 1, "num_gpus": 1.0 if step.flops >= WHOLE_GPU_FLOPS else GPU_SHARE}


def run_on_worker(step: Step, plan: Plan, launcher: list[str] | None, threads: int) -> dict:
    """A step on a Ray worker: torch on the worker's CPUs, then the study's own `attempt`."""
    import torch

    torch.set_num_threads(threads)
    return attempt(step, plan, launcher)


def connect(workers: int | None, address: str | None) -> "Cluster":
    """Start a local Ray cluster of `workers` CPUs, or join the one at `address` (at most `workers`
    steps at a time there, when given)."""
    if workers is not None:
        checks.integer(workers, "--workers", minimum=1)
    if address is not None:
        _check_reachable(address)
    import ray

    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIXES)}
    runtime_env = {"env_vars": env}
    try:
        if address is None:
            ray.init(address="local", num_cpus=workers, include_dashboard=False, logging_level="WARNING",
                     runtime_env=runtime_env)
        else:
            ray.init(address=address, logging_level="WARNING", runtime_env=runtime_env)
    except ConnectionError as e:
        raise LabError(f"--address {address}: no Ray cluster found there ({e}); start one with `ray start "
                       "--head` on this machine, or give the address of the head node (HOST:6379)") from None
    except ValueError as e:  # what ray:// says without the client package
        raise LabError(f"--address {address}: {e}") from None
    total = ray.cluster_resources()
    gpus = total.get("GPU", 0) > 0
    slots = int(total.get("CPU", 1))
    if gpus:
        slots = min(slots, int(total["GPU"] / GPU_SHARE))
    if workers is not None:
        slots = min(slots, workers)
    return Cluster(ray, max(slots, 1), gpus)


def _check_reachable(address: str) -> None:
    """A HOST:PORT or ray://HOST:PORT that answers (Ray itself waits minutes on one that does not)."""
    if address == "auto":
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not host or not port:
        raise LabError(f"--address {address!r}: give auto (the cluster started on this machine), HOST:PORT "
                       "or ray://HOST:PORT")
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as e:
        raise LabError(f"--address {address}: nothing answers at {host}:{port} ({e}); start the cluster with "
                       "`ray start --head` there, or check the address and the firewall") from None


@dataclass
class Cluster:
    ray: object
    slots: int
    """Steps that run at once."""
    gpus: bool

    def run(self, plan: Plan, ledger: Ledger, launcher: list[str] | None) -> None:
        """Every step of `plan`, each once the steps it depends on are finished, booked in `ledger`
        as they come back. At most `slots` are handed out at a time, so a step that a failure
        makes pointless is skipped rather than queued."""
        ray = self.ray
        remote = ray.remote(run_on_worker)
        deps = dependencies(plan)
        waiting = list(plan.steps)
        running: dict = {}
        try:
            while waiting or running:
                for step in [s for s in waiting if deps[s.id] <= ledger.finished]:
                    if len(running) >= self.slots:
                        break
                    waiting.remove(step)
                    if ledger.blocked(step):
                        ledger.skip(step)
                        continue
                    res = resources(step, self.gpus, launcher)
                    # A step is retried by running the study again, not by Ray: a killed worker loses that step.
                    ref = remote.options(**res, max_retries=0).remote(step, plan, launcher, res["num_cpus"])
                    running[ref] = step
                if not running:
                    continue
                ready, _ = ray.wait(list(running), num_returns=1)
                for ref in ready:
                    step = running.pop(ref)
                    try:
                        outcome = ray.get(ref)
                    except ray.exceptions.RayError as e:  # the worker died: the step is lost, the study goes on
                        outcome = {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}", "bug": False}
                    ledger.record(step, outcome)
        finally:
            for ref in running:  # interrupted: what was running is lost, what finished is kept
                ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()
