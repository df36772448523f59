"""Multi-process runs on torch's own launcher: ``ftx run R --nproc-per-node N`` re-runs itself
under ``torch.distributed.run``; transformers' Trainer then trains with DDP (or FSDP/DeepSpeed
from ``[distributed]``, see :mod:`ftx.sharded`), and only rank 0 writes the run folder."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence

CHILD_FLAG = "FTX_DISTRIBUTED_CHILD"


def rank() -> int:
    """This process's global rank (0 when not distributed)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Number of processes in the run (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched() -> bool:
    """Whether this process was started by torch's launcher (``ftx run --nproc-per-node N``, or torchrun)."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def needs_launcher(nproc_per_node: int, nnodes: int, strategy: str) -> bool:
    """Whether ``ftx run`` re-runs itself under torch's launcher: several processes, or a sharded strategy
    (FSDP and DeepSpeed need torch.distributed even in one process: ZeRO-3 with offload on one GPU is a real use)."""
    return nproc_per_node > 1 or nnodes > 1 or strategy in ("fsdp", "deepspeed")


def is_main() -> bool:
    """Rank 0 evaluates, saves and writes the run folder."""
    return rank() == 0


def launch(
    ftx_args: Sequence[str], *, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
    master_addr: str = "127.0.0.1", master_port: int = 29511,
) -> int:
    """Run ``ftx <ftx_args>`` in ``nproc_per_node`` processes through ``torch.distributed.run``; return its exit code."""
    command = [
        sys.executable, "-m", "torch.distributed.run",
        f"--nproc-per-node={nproc_per_node}", f"--nnodes={nnodes}", f"--node-rank={node_rank}",
        f"--master-addr={master_addr}", f"--master-port={master_port}",
        "-m", "ftx.cli", *ftx_args,
    ]
    env = {**os.environ, CHILD_FLAG: "1"}
    if "OMP_NUM_THREADS" not in env:
        cores = os.cpu_count() or 1
        env["OMP_NUM_THREADS"] = str(max(1, cores // max(1, nproc_per_node)))
    return subprocess.call(command, env=env)
