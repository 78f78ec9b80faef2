"""Space concurrency benchmark: N visitors submit the same video to the Gradio app at once.

Usage (from the repository root):
    python -m benchmarks.space_concurrency                          # 8 clients, the app's own settings
    python -m benchmarks.space_concurrency --concurrency 1 2 --threads 1 2 --clients 8 --video clip.mp4

For every (concurrency, threads) setup the script starts ``lavida demo`` on 127.0.0.1 in a fresh process (torch's
thread count is per process), with ``LAVIDA_SPACE_CONCURRENCY_LIMIT`` and ``LAVIDA_SPACE_TORCH_THREADS`` set when
given (unset: the app's defaults), sends one request to warm up (the first model call, matplotlib's first plot), then
one request alone (the latency of a lone visitor), then ``--clients`` requests at the same moment through
``gradio_client``, one client per thread, each the way ``space/README.md`` documents the ``/detect`` endpoint. A
request's latency runs from its call to its answer (upload, queue wait, detection, download). Every answer's
``result.json`` scores must equal the lone request's, else the request counts as not served. Figures are reported as
measured; nothing is asserted on timings.

It also reports the CPU time the app's process (with its children) spent on the lone request and on the burst (Linux:
``/proc``; elsewhere none): the burst's CPU time divided by the cores is the least time the burst can take, whatever
the scheduling, unless requests share work.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lavida.atomic_files import write_json_atomic

from .common import REPO_ROOT, SAMPLE_VIDEO, Column, environment, format_table

START_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 900.0


@dataclass
class ConcurrencyConfig:
    video: Path = SAMPLE_VIDEO
    anomalies: str | None = None  # None: the synthetic world's held-out names (the sample is from that world)
    stride: int = 1
    threshold: float = 0.5
    clients: int = 8
    concurrency: tuple[int | None, ...] = (None,)  # None: the app's default
    threads: tuple[int | None, ...] = (None,)  # None: the app's default


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_until_serving(url: str, server: subprocess.Popen, log: Path) -> float:
    """Seconds until the app answers its page (the model loaded, the examples rendered)."""
    start = time.perf_counter()
    while time.perf_counter() - start < START_TIMEOUT_S:
        if server.poll() is not None:
            raise RuntimeError(f"lavida demo exited with {server.returncode}: "
                               f"{log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.perf_counter() - start
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"lavida demo did not answer within {START_TIMEOUT_S:.0f} s: {log.read_text()[-2000:]}")


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process ``pid`` and of its waited-for children, or None where ``/proc`` is
    missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # after the command name: state is field 3, utime/stime/cutime/cstime are fields 14-17 (man 5 proc)
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


def _request(url: str, config: ConcurrencyConfig, anomalies: str, downloads: Path) -> tuple[float, list[float]]:
    """One visitor's request: (seconds from call to answer, the scores of its result.json)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=str(downloads))
    start = time.perf_counter()
    _, _, _, files, _ = client.predict(handle_file(str(config.video)), anomalies, config.stride, config.threshold,
                                       None, api_name="/detect")
    seconds = time.perf_counter() - start
    result = next(Path(f) for f in files if str(f).endswith("result.json"))
    return seconds, json.loads(result.read_text())["scores"]


def measure_setup(config: ConcurrencyConfig, concurrency: int | None, threads: int | None, anomalies: str,
                  workdir: Path) -> dict[str, Any]:
    """Start the app with one setup, send the lone request, then ``config.clients`` at once; stop the app."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    for key, value in (("LAVIDA_SPACE_CONCURRENCY_LIMIT", concurrency), ("LAVIDA_SPACE_TORCH_THREADS", threads)):
        env.pop(key, None)
        if value is not None:
            env[key] = str(value)
    name = f"c{concurrency or 'default'}-t{threads or 'default'}"
    log = workdir / f"{name}.log"
    command = [sys.executable, "-m", "lavida.cli", "demo", "--port", str(port), "--work-dir",
               str(workdir / f"{name}-work")]
    with open(log, "wb") as stream:
        server = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT)
    try:
        start_s = _wait_until_serving(url, server, log)
        _request(url, config, anomalies, workdir / f"{name}-warm-up")  # one-time costs stay out of the figures
        cpu_start = _cpu_seconds(server.pid)
        alone_s, reference = _request(url, config, anomalies, workdir / f"{name}-alone")
        cpu_alone = _cpu_seconds(server.pid)
        barrier = threading.Barrier(config.clients)
        outcomes: list[tuple[float, bool, str]] = [(0.0, False, "not run")] * config.clients

        def visitor(index: int) -> None:
            barrier.wait()
            start = time.perf_counter()
            try:
                seconds, scores = _request(url, config, anomalies, workdir / f"{name}-client{index}")
                same = scores == reference
                outcomes[index] = (seconds, same, "" if same else "scores differ from the lone request's")
            except Exception as error:  # a refused or failed request is a figure too
                outcomes[index] = (time.perf_counter() - start, False, f"{type(error).__name__}: {error}")

        workers = [threading.Thread(target=visitor, args=(index,)) for index in range(config.clients)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(REQUEST_TIMEOUT_S)
        cpu_burst = _cpu_seconds(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    served = [seconds for seconds, ok, _ in outcomes if ok]
    latencies = sorted(seconds for seconds, _, _ in outcomes)
    return {"concurrency": concurrency or "default", "threads": threads or "default", "start_s": start_s,
            "alone_s": alone_s, "clients": config.clients, "served": len(served),
            "median_s": statistics.median(latencies), "max_s": latencies[-1], "min_s": latencies[0],
            "latencies_s": latencies, "alone_cpu_s": _spent(cpu_start, cpu_alone),
            "burst_cpu_s": _spent(cpu_alone, cpu_burst),
            "errors": sorted({error for _, ok, error in outcomes if not ok})}


def run_benchmark(config: ConcurrencyConfig) -> dict[str, Any]:
    from lavida.processing.video_io import probe_video
    from lavida.space.presets import SYNTHETIC_PRESET, preset_text

    anomalies = config.anomalies or preset_text(SYNTHETIC_PRESET)
    info = probe_video(config.video)
    workdir = Path(tempfile.mkdtemp(prefix="lavida-space-concurrency-"))
    try:
        rows = [measure_setup(config, concurrency, threads, anomalies, workdir)
                for concurrency, threads in itertools.product(config.concurrency, config.threads)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"benchmark": "space_concurrency",
            "video": {"name": config.video.name, "frames": info.num_frames, "width": info.width,
                      "height": info.height, "duration_s": info.duration_s},
            "anomalies": anomalies, "stride": config.stride, "environment": environment("cpu"), "rows": rows}


COLUMNS = [Column("concurrency", "concurrency"), Column("threads", "torch threads"),
           Column("alone_s", "alone s", "{:.1f}"), Column("clients", "clients"), Column("served", "served"),
           Column("min_s", "first s", "{:.1f}"), Column("median_s", "median s", "{:.1f}"),
           Column("max_s", "last s", "{:.1f}"), Column("alone_cpu_s", "alone cpu s", "{:.1f}"),
           Column("burst_cpu_s", "burst cpu s", "{:.1f}")]


def _setting(text: str) -> int | None:
    return None if text == "default" else int(text)


def parse_args(argv: list[str] | None) -> tuple[ConcurrencyConfig, str]:
    defaults = ConcurrencyConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=defaults.video, help="video every client sends "
                        "(default: the bundled sample, 96 frames of 256x256)")
    parser.add_argument("--anomalies", default=None, help="names (default: the synthetic world's held-out shapes)")
    parser.add_argument("--stride", type=int, default=defaults.stride)
    parser.add_argument("--clients", type=int, default=defaults.clients, help="visitors sending at the same moment")
    parser.add_argument("--concurrency", type=_setting, nargs="+", default=list(defaults.concurrency),
                        help="LAVIDA_SPACE_CONCURRENCY_LIMIT values to compare ('default': the app's)")
    parser.add_argument("--threads", type=_setting, nargs="+", default=list(defaults.threads),
                        help="LAVIDA_SPACE_TORCH_THREADS values to compare ('default': the app's)")
    parser.add_argument("--json", default="outputs/benchmarks/space_concurrency.json", help="report file")
    args = parser.parse_args(argv)
    if args.clients < 1:
        parser.error("--clients must be at least 1.")
    config = ConcurrencyConfig(video=args.video, anomalies=args.anomalies, stride=args.stride, clients=args.clients,
                               concurrency=tuple(args.concurrency), threads=tuple(args.threads))
    return config, args.json


def main(argv: list[str] | None = None) -> int:
    config, json_path = parse_args(argv)
    if not config.video.is_file():
        print(f"space_concurrency: error: no video at {config.video}: pass --video.", file=sys.stderr)
        return 2
    report = run_benchmark(config)
    video = report["video"]
    print(f"{config.clients} visitors at once, each sending {video['name']} ({video['frames']} frames, "
          f"{video['width']}x{video['height']}), {report['environment']['cpu_cores']} cores, load "
          f"{report['environment']['load_average_1min']:.2f}")
    print(format_table(report["rows"], COLUMNS))
    for row in report["rows"]:
        for error in row["errors"]:
            print(f"concurrency {row['concurrency']}, threads {row['threads']}: {error}")
    print(f"wrote {write_json_atomic(json_path, report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
