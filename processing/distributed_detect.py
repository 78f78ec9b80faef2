"""``lavida detect`` over many videos, split across processes launched by ``accelerate launch`` or ``torchrun``.

    lavida detect videos/ --anomalies "fighting" --out results --processes 2
    torchrun --nproc_per_node 2 -m lavida.cli detect @videos.txt --anomalies "fighting" --out results
    accelerate launch --multi_gpu --num_processes 2 -m lavida.cli detect videos/ --anomalies "fighting" --out results

``--processes N`` starts the processes itself (``launch_processes``) and ends as a single process does: one line per
failed video, exit status 2 if any failed. Both launchers take any non-zero exit of a process for a crash and print
their own traceback, so under them only the main process returns the run's status (the others return 0 once the
index is written). ``accelerate launch --num_processes 2`` without ``--multi_gpu`` (or a config) on a machine without
GPUs starts one process only; the command's first line says how many processes it runs in.

The inputs (files, folders of videos, ``@list.txt`` files) are expanded into one ordered list, and the command names
every video's output folder from that full list, so names never depend on how the list is split. Each process scores
its share (balanced by file size) and writes ``OUT/<name>/`` as a single process would; the outcomes are gathered and
the main process writes ``OUT/index.json``. A one-process run writes the same index, so the output folder of a sharded
run is the one a single process would have written.

Coordination uses a ``gloo`` process group (CPU tensors only), set up from the environment variables both launchers
export (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``); the
models themselves never communicate. On a multi-GPU machine process ``i`` uses ``cuda:LOCAL_RANK``; on CPU each process
gets ``cores / processes`` torch threads.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..atomic_files import write_json_atomic
from .errors import UserInputError
from .video_io import VIDEO_SUFFIXES


INDEX_JSON = "index.json"
INDEX_FORMAT_VERSION = 1
# A process waits for the others at the end; the slowest share of videos bounds that wait.
GATHER_TIMEOUT = datetime.timedelta(days=7)


# ---------------------------------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------------------------------


def _videos_in_folder(folder: Path) -> list[str]:
    videos = sorted(str(path) for path in folder.iterdir()
                    if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."))
    if not videos:
        raise UserInputError(f"Folder {folder} holds no video files ({', '.join(sorted(VIDEO_SUFFIXES))}): "
                             "give a folder of videos, video files or an @list.txt.")
    return videos


def _videos_in_list(list_file: Path) -> list[str]:
    if not list_file.is_file():
        raise UserInputError(f"Video list {list_file} does not exist: give @PATH to a text file with one video per "
                             "line.")
    videos = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(entry)
        # relative entries are read from the list's own folder, so a list travels with its videos
        videos.append(str(path if path.is_absolute() else list_file.parent / path))
    if not videos:
        raise UserInputError(f"Video list {list_file} names no videos: write one video path per line.")
    return videos


def expand_video_inputs(inputs: Sequence[str]) -> list[str]:
    """The videos named by ``inputs``, in order.

    Args:
        inputs: video files (kept as given, checked later when read), folders (their video files, sorted by name,
            not recursive, hidden files skipped) and ``@list.txt`` files (one path per line; blank lines and lines
            starting with ``#`` skipped; relative paths are relative to the list file's folder).

    Raises:
        UserInputError: an empty folder or list, or a missing list file.
    """
    videos: list[str] = []
    for item in inputs:
        if item.startswith("@"):
            videos += _videos_in_list(Path(item[1:]))
        elif Path(item).is_dir():
            videos += _videos_in_folder(Path(item))
        else:
            videos.append(item)
    return videos


# Missing videos named in full in the error before the rest are only counted.
_MAX_NAMED_MISSING = 5


def check_video_files(videos: Sequence[str]) -> None:
    """Check that every video of an expanded input list exists, before any work (a stat per video).

    Raises:
        UserInputError: naming the missing videos (the first few, and how many in all).
    """
    missing = [video for video in videos if not Path(video).exists()]
    if not missing:
        return
    if len(missing) == 1:
        raise UserInputError(f"Video {missing[0]} does not exist: check the path.")
    named = ", ".join(missing[:_MAX_NAMED_MISSING])
    more = f" and {len(missing) - _MAX_NAMED_MISSING} more" if len(missing) > _MAX_NAMED_MISSING else ""
    raise UserInputError(f"{len(missing)} videos do not exist: {named}{more}; check the paths.")


# Characters kept in an output folder name; anything else (path separators, control characters, quotes) becomes "_".
_UNSAFE_NAME_CHARACTERS = re.compile(r"[^\w.+=,@ -]")
# Longest folder name, in characters (file systems allow 255 bytes; leave room for the "-N" suffix and UTF-8).
_MAX_NAME_LENGTH = 120


def _safe_folder_name(video: str) -> str:
    """A video's stem as one plain path component: never empty, ``.``/``..``, hidden, or holding a separator."""
    stem = _UNSAFE_NAME_CHARACTERS.sub("_", Path(video).stem)
    # Leading dots would make ".", ".." (the output folder itself or its parent) or a hidden name that clashes with
    # the writers' own ".<name>.partial-*" staging folders; trailing dots and spaces are dropped by some file systems.
    stem = stem.lstrip(". ").rstrip(". ")[:_MAX_NAME_LENGTH].rstrip(". ")
    return stem or "video"


def output_folder_names(videos: Sequence[str]) -> list[str]:
    """One output folder name per video, unique within the run (from the full list of a sharded run, so names never
    depend on the split).

    The name is the video's stem made safe (see ``_safe_folder_name``); a name already taken, compared
    case-insensitively so that case-insensitive file systems cannot merge two, and never ``index.json``, gets the
    first free ``-2``, ``-3``, ... suffix. Every input gets its own folder inside the output folder, always.
    """
    taken = {INDEX_JSON.casefold()}
    names = []
    for video in videos:
        base = _safe_folder_name(video)
        name, count = base, 1
        while name.casefold() in taken:
            count += 1
            name = f"{base}-{count}"
        taken.add(name.casefold())
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessInfo:
    """This process's place among the processes of one launch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> "ProcessInfo":
        """Read the variables ``torchrun`` and ``accelerate launch`` set (defaults: one process)."""
        environ = os.environ if environ is None else environ

        def number(name: str, default: int) -> int:
            value = environ.get(name, "")
            try:
                return int(value) if value.strip() else default
            except ValueError:
                raise UserInputError(f"Environment variable {name}={value!r} is not an integer; it is set by the "
                                     "launcher (accelerate launch / torchrun).") from None

        world = number("WORLD_SIZE", 1)
        info = cls(rank=number("RANK", 0), world_size=world, local_rank=number("LOCAL_RANK", 0),
                   local_world_size=number("LOCAL_WORLD_SIZE", world))
        if not 0 <= info.rank < info.world_size:
            raise UserInputError(f"RANK={info.rank} is outside WORLD_SIZE={info.world_size}: launch with "
                                 "accelerate launch or torchrun.")
        return info


def shard_indices(sizes: Sequence[int], world_size: int) -> list[list[int]]:
    """Split items into ``world_size`` shards of similar total size (largest first onto the least-loaded shard).

    Deterministic: ties go to the earlier item and the lower shard. Each shard lists its items in input order.

    Args:
        sizes: ``[N]`` a cost per item (the file size of a video).

    Returns:
        ``world_size`` lists of item indices.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}.")
    loads = [0] * world_size
    shards: list[list[int]] = [[] for _ in range(world_size)]
    for index in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        target = min(range(world_size), key=lambda shard: (loads[shard], shard))
        shards[target].append(index)
        loads[target] += max(1, int(sizes[index]))
    return [sorted(shard) for shard in shards]


def video_cost(video: str) -> int:
    """A video's share of the work, estimated by its file size (a missing file costs 1: it fails fast)."""
    try:
        return Path(video).stat().st_size
    except OSError:
        return 1


def pick_device(requested: str | None, process: ProcessInfo, cuda_devices: int | None = None) -> str:
    """The torch device of this process.

    ``None`` picks ``cuda:LOCAL_RANK`` (modulo the GPU count) when CUDA is there, else ``cpu``; a bare ``cuda`` under
    several processes also picks by local rank, so processes never pile onto one GPU. Anything else is used as given.
    """
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested is None:
        requested = "cuda" if cuda_devices else "cpu"
    if requested == "cuda" and process.distributed and cuda_devices:
        return f"cuda:{process.local_rank % cuda_devices}"
    return requested


def threads_per_process(process: ProcessInfo, cores: int | None = None) -> int:
    """Torch CPU threads for one of ``local_world_size`` processes sharing ``cores`` (at least 1)."""
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # pragma: no cover - not Linux
            cores = os.cpu_count() or 1
    return max(1, cores // max(1, process.local_world_size))


class ProcessGroup:
    """The launch's processes, for exchanging outcomes (every method is a no-op for one process).

    ``open`` creates a ``gloo`` group when there are several processes and none exists yet; ``close`` waits for all
    processes and destroys the group if ``open`` created it. A process that dies in between makes the launcher stop
    the others.
    """

    def __init__(self, process: ProcessInfo):
        self.process = process
        self._created = False

    def open(self) -> "ProcessGroup":
        if self.process.distributed:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(backend="gloo", rank=self.process.rank, world_size=self.process.world_size,
                                        timeout=GATHER_TIMEOUT)
                self._created = True
        return self

    def close(self) -> None:
        self.barrier()
        if self._created:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._created = False

    def all_gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order."""
        if not self.process.distributed:
            return [value]
        import torch.distributed as dist

        gathered: list[Any] = [None] * self.process.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        if self.process.distributed:
            import torch.distributed as dist

            dist.barrier()


# ---------------------------------------------------------------------------------------------------------------------
# Outcomes and the index
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class VideoOutcome:
    """What happened to one input video (one entry of ``index.json``).

    Attributes:
        position: the video's place in the expanded input list.
        video: the path as given.
        folder: its output folder name under ``--out`` (written only when ``status`` is ``"ok"``).
        status: ``"ok"`` or ``"error"``.
        error: the one-line message of a failed video.
        num_frames, num_events, max_score: a summary of a scored video.
        warnings: what went wrong without failing the video (a damaged stream), each message once.
    """

    position: int
    video: str
    folder: str
    status: str
    error: str | None = None
    num_frames: int | None = None
    num_events: int | None = None
    max_score: float | None = None
    warnings: list[str] | None = None


def merge_outcomes(per_process: Iterable[Iterable[VideoOutcome]]) -> list[VideoOutcome]:
    """All processes' outcomes in input order.

    Raises:
        ValueError: two outcomes for one input position (the shards overlapped).
    """
    merged: dict[int, VideoOutcome] = {}
    for outcomes in per_process:
        for outcome in outcomes:
            if outcome.position in merged:
                raise ValueError(f"Input {outcome.position} ({outcome.video}) was scored by two processes.")
            merged[outcome.position] = outcome
    return [merged[position] for position in sorted(merged)]


def index_dict(outcomes: Sequence[VideoOutcome], anomalies: Sequence[str], model_id: str,
               settings: Mapping[str, Any]) -> dict[str, Any]:
    """The content of ``index.json``: the run's settings and one entry per input video, in input order."""
    return {
        "format_version": INDEX_FORMAT_VERSION,
        "model_id": model_id,
        "anomalies": list(anomalies),
        "settings": dict(settings),
        "num_videos": len(outcomes),
        "num_failed": sum(outcome.status != "ok" for outcome in outcomes),
        "videos": [{key: value for key, value in asdict(outcome).items() if key != "position"}
                   for outcome in outcomes],
    }


def write_index(out_dir: str | os.PathLike, payload: Mapping[str, Any]) -> Path:
    """Write ``OUT/index.json`` atomically."""
    return write_json_atomic(Path(out_dir) / INDEX_JSON, dict(payload))


class _OncePerVideo(logging.Filter):
    """Passes each distinct warning once and keeps its text: the video is decoded more than once (to score, then
    for the overlay) and each pass would repeat it."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        message = record.getMessage()
        if message in self.messages:
            return False
        self.messages.append(message)
        return True


@contextlib.contextmanager
def collect_warnings(logger_name: str = "lavida.processing.video_io") -> Iterator[list[str]]:
    """Within the block, each distinct warning of logger ``logger_name`` (the video reader's: a damaged stream) is
    logged once; yields the list of their messages, filled as they come, for the summary line and ``index.json``."""
    once = _OncePerVideo()
    logger = logging.getLogger(logger_name)
    logger.addFilter(once)
    try:
        yield once.messages
    finally:
        logger.removeFilter(once)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _process_main(target: Callable[[Any], int], argument: Any, environ: dict[str, str]) -> None:
    os.environ.update(environ)
    sys.exit(target(argument))


def launch_processes(target: Callable[[Any], int], argument: Any, num_processes: int) -> int:
    """Run ``target(argument)`` in ``num_processes`` new processes on this machine, as ``torchrun`` would (the same
    environment variables, a free local port), and return the main process's exit status.

    A process that dies (a signal, an exit status other than 0 or 2) stops the others, which would otherwise wait
    for it forever; its status is returned. ``target`` and ``argument`` must be picklable (processes are spawned).
    """
    import multiprocessing
    from multiprocessing.connection import wait

    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads or a CUDA context
    port = str(_free_port())
    workers = []
    for rank in range(num_processes):
        environ = {"RANK": str(rank), "WORLD_SIZE": str(num_processes), "LOCAL_RANK": str(rank),
                   "LOCAL_WORLD_SIZE": str(num_processes), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        workers.append(context.Process(target=_process_main, args=(target, argument, environ),
                                       name=f"lavida-process-{rank}"))
    try:
        for worker in workers:
            worker.start()
        running = list(workers)
        while running:
            for sentinel in wait([worker.sentinel for worker in running]):
                worker = next(worker for worker in running if worker.sentinel == sentinel)
                running.remove(worker)
                worker.join()  # the sentinel fires at exit; join reaps the process and sets its exitcode
                if worker.exitcode not in (0, 2):
                    for other in running:
                        other.terminate()
                    for other in running:
                        other.join()
                    return 1 if worker.exitcode is None or worker.exitcode < 0 else int(worker.exitcode)
        return int(workers[0].exitcode or 0)
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
                worker.join()


__all__ = ["GATHER_TIMEOUT", "INDEX_JSON", "ProcessGroup", "ProcessInfo", "VideoOutcome", "check_video_files",
           "collect_warnings", "expand_video_inputs", "launch_processes", "index_dict", "merge_outcomes", "output_folder_names", "pick_device", "shard_indices",
           "threads_per_process", "video_cost", "write_index"]
