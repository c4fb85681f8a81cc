"""Threads on a busy machine: PyTorch's default (one per core) against ``--threads 1``.

A parallel region of PyTorch waits for its slowest thread. When another process keeps a core
busy, the operating system deschedules one of PyTorch's threads and every operation waits for
it. This script measures plain batched inference of the pretrained EfficientNet-Lite0, four
images a pass as Poly-CAM runs them on a CPU, with 1 thread and with the default, first on an
idle machine, then while a second process spins on one core, then beside another PyTorch job,
and prints the ratios side by side from one run:

    python benchmarks/threads.py
"""

from __future__ import annotations

import multiprocessing
import os
import time

import torch
from _common import load_lite0, photo, plain_inference

IMAGES, BATCH = 32, 4


def _spin(stop: multiprocessing.synchronize.Event) -> None:
    # Pure Python arithmetic: one busy core, as another user's job would keep it.
    value = 0
    while not stop.is_set():
        for _ in range(100_000):
            value += 1


def _torch_job(stop: multiprocessing.synchronize.Event) -> None:
    # Another PyTorch job with its default threads, as a test suite beside a benchmark.
    a = torch.rand(512, 512)
    while not stop.is_set():
        a = (a @ a).clamp_(-1, 1)


def _seconds(model: torch.nn.Module, threads: int) -> float:
    torch.set_num_threads(threads)
    x = photo()
    plain_inference(model, x, BATCH, BATCH)  # warm-up
    return plain_inference(model, x, IMAGES, BATCH)


def main() -> None:
    cores = len(os.sched_getaffinity(0))
    default = torch.get_num_threads()
    model = load_lite0()
    print(
        f"EfficientNet-Lite0, {IMAGES} images in passes of {BATCH}, {cores} cores, torch "
        f"{torch.__version__}; default threads: {default}"
    )
    rows = []
    loads = {"idle": None, "one core busy": _spin, "another PyTorch job": _torch_job}
    for busy, load in loads.items():
        # Spawned, not forked: a fork of a process whose OpenMP threads have started hangs in
        # its first parallel region.
        context = multiprocessing.get_context("spawn")
        stop = context.Event()
        spinner = context.Process(target=load, args=(stop,)) if load else None
        if spinner is not None:
            spinner.start()
            time.sleep(5.0)  # the spawned interpreter imports torch first
        try:
            one = _seconds(model, 1)
            many = _seconds(model, default)
        finally:
            if spinner is not None:
                stop.set()
                spinner.join()
        rows.append((busy, one, many))
    print("| machine | 1 thread (s) | default threads (s) | default / 1 thread |")
    print("|---|---|---|---|")
    for busy, one, many in rows:
        print(f"| {busy} | {one:.2f} | {many:.2f} | {many / one:.2f} |")


if __name__ == "__main__":
    main()
