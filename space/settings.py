"""Settings of the Space: the model, the limits a visitor meets, the queue and where files go.

Every field can be set from the environment (the way a Hugging Face Space is configured), for example
``LAVIDA_MODEL=path/or/hub-id LAVIDA_SPACE_MAX_DURATION_S=30 python app.py``; ``lavida demo`` flags override them.

The limits bound the work one request can cause: bytes, seconds, frames and pixels per frame are all checked from the
container's header before a frame is decoded (and the frame count again while decoding, for containers that declare
none).
"""

from __future__ import annotations

import math
import os
import stat
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path

from lavida.errors import UserInputError
from lavida.processing.options import DEFAULT_BATCH_SIZE, DetectionOptions

MODEL_ENV = "LAVIDA_MODEL"
ENV_PREFIX = "LAVIDA_SPACE_"
# x264's speed/size trade-offs, fastest first
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")


@dataclass(frozen=True)
class SpaceSettings:
    """Knobs of the demo app.

    Attributes:
        model: checkpoint folder or Hub id; None = the embedded lavida-tiny (env ``LAVIDA_MODEL``).
        device: torch device; None = cuda if available, else cpu (as ``lavida detect``).
        max_upload_mb: largest accepted upload, in megabytes (enforced by the server and checked again per request).
        max_duration_s: longest accepted video, in seconds.
        max_frames: most frames an accepted video may have (a short video at a huge frame rate costs as much work
            as a long one).
        max_pixels: largest accepted frame area, width x height (1920 x 1080 by default; either orientation).
        concurrency_limit: detections run at the same time; further requests wait in the queue. Each running
            detection has a detection pipeline of its own; all share the model's weights.
        torch_threads: torch CPU threads of the app's process, shared by all running detections (torch's setting is
            per process); None: the cores divided among ``concurrency_limit`` detections (at least 1 each), so
            detections running together do not fight over the same cores.
        max_queue_size: requests allowed to wait; more are refused with a "queue full" message.
        default_stride, default_threshold: initial values of the controls (``lavida detect``'s defaults).
        max_stride: upper end of the stride slider (and of what the API accepts).
        clip_batch_size: clips per model call (``lavida detect --clip-batch-size``).
        overlay_preset: x264 preset of the overlay video shown in the page (one of ``X264_PRESETS``); by default
            ``lavida detect``'s (``OutputOptions.overlay_preset``), so the page shows the command's overlay. A
            faster one (``veryfast``) makes the overlay step about 40% cheaper in CPU time on the bundled sample, for
            a slightly larger file whose pixels differ a little from the command's; scores and result files do not
            depend on it.
        work_dir: where examples and results are written (default: ``<system temp>/lavida-space-<user id>``, created
            private to the user running the Space; see ``prepare_root``).
        keep_results: result folders kept on disk; older ones are deleted as new requests arrive.
    """

    model: str | None = None
    device: str | None = None
    max_upload_mb: float = 100.0
    max_duration_s: float = 60.0
    max_frames: int = 3600  # 60 s at 60 fps
    max_pixels: int = 1920 * 1080
    concurrency_limit: int = 2
    torch_threads: int | None = None
    max_queue_size: int = 20
    default_stride: int = DetectionOptions.stride
    default_threshold: float = DetectionOptions.threshold
    max_stride: int = 32
    clip_batch_size: int = DEFAULT_BATCH_SIZE
    overlay_preset: str = "veryfast"  # lavida detect's (OutputOptions.overlay_preset)
    work_dir: str | None = None
    keep_results: int = 64

    def __post_init__(self) -> None:
        for name in ("max_upload_mb", "max_duration_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise UserInputError(f"Space setting {name} must be a positive number, got {value!r}.")
        for name in ("max_frames", "max_pixels", "concurrency_limit", "max_queue_size", "default_stride",
                     "max_stride", "clip_batch_size", "keep_results"):
            if getattr(self, name) < 1:
                raise UserInputError(f"Space setting {name} must be at least 1, got {getattr(self, name)!r}.")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise UserInputError(f"Space setting torch_threads must be at least 1, got {self.torch_threads!r}.")
        if self.overlay_preset not in X264_PRESETS:
            raise UserInputError(f"Space setting overlay_preset must be one of {', '.join(X264_PRESETS)}, got "
                                 f"{self.overlay_preset!r}.")
        if self.default_stride > self.max_stride:
            raise UserInputError(f"Space setting default_stride ({self.default_stride}) exceeds max_stride "
                                 f"({self.max_stride}).")
        if not 0.0 <= self.default_threshold <= 1.0:
            raise UserInputError(f"Space setting default_threshold must be between 0 and 1, got "
                                 f"{self.default_threshold!r}.")
        if self.keep_results < self.concurrency_limit:
            # a folder still being served must never be pruned by a newer request
            raise UserInputError(f"Space setting keep_results ({self.keep_results}) must be at least "
                                 f"concurrency_limit ({self.concurrency_limit}).")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_megapixels(self) -> float:
        return self.max_pixels / 1e6

    def threads_to_use(self, cores: int | None = None) -> int:
        """Torch CPU threads for the app's process: ``torch_threads``, else ``cores`` (default: those this process
        may run on) divided among ``concurrency_limit`` detections, at least 1."""
        if self.torch_threads is not None:
            return self.torch_threads
        from lavida.processing.distributed_detect import ProcessInfo, threads_per_process

        # the same split as processes of one launch sharing a machine's cores
        return threads_per_process(ProcessInfo(local_world_size=self.concurrency_limit), cores)

    @property
    def root(self) -> Path:
        """The working folder (examples and results live below it): ``work_dir``, else a folder of this user's own
        in the system temp folder (``lavida-space-<user id>``)."""
        if self.work_dir:
            return Path(self.work_dir)
        return Path(tempfile.gettempdir()) / f"lavida-space-{_user_id()}"

    def prepare_root(self) -> Path:
        """Create ``root`` (mode 0700) unless it exists, and check it is safe to write uploads and results into.

        The folder must be a real folder (not a link) owned by the user running the Space; the default one, in the
        shared temp folder, must also be closed to other users (mode 0700), and a chosen ``work_dir`` must not be
        writable by them (another user could swap the files the Space serves).

        Raises:
            UserInputError: naming the folder and what is wrong with it.
        """
        root = self.root
        try:
            root.mkdir(mode=0o700, parents=bool(self.work_dir))
        except FileExistsError:
            pass
        except OSError as error:
            raise UserInputError(f"Cannot create the Space's work folder {root} ({error.strerror}): set "
                                 f"{ENV_PREFIX}WORK_DIR to a folder you can write.") from None
        info = root.lstat()
        others = stat.S_IRWXG | stat.S_IRWXO if not self.work_dir else stat.S_IWGRP | stat.S_IWOTH
        if not stat.S_ISDIR(info.st_mode):
            problem = "is not a folder (a link or a file)"
        elif hasattr(os, "getuid") and info.st_uid != os.getuid():
            problem = f"belongs to another user (uid {info.st_uid})"
        elif info.st_mode & others:
            problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
        else:
            return root
        raise UserInputError(f"The Space's work folder {root} {problem}: remove it, or set {ENV_PREFIX}WORK_DIR to a "
                             "folder of your own that other users cannot write to.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides) -> SpaceSettings:
        """Settings from ``LAVIDA_MODEL`` and ``LAVIDA_SPACE_<FIELD>`` variables (e.g. ``LAVIDA_SPACE_MAX_UPLOAD_MB``),
        then ``overrides`` (None values are ignored).

        Raises:
            UserInputError: a variable that does not parse as its field's type, or an out-of-range value.
        """
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        if environ.get(MODEL_ENV, "").strip():
            values["model"] = environ[MODEL_ENV].strip()
        for spec in fields(cls):
            key = ENV_PREFIX + spec.name.upper()
            if spec.name == "model" or not environ.get(key, "").strip():
                continue
            values[spec.name] = _parse(key, environ[key].strip(), spec.type)
        values.update({key: value for key, value in overrides.items() if value is not None})
        return replace(cls(), **values)


def _user_id() -> str:
    """This user's id for per-user folder names (the login name where there are no numeric ids)."""
    if hasattr(os, "getuid"):
        return str(os.getuid())
    import getpass

    return getpass.getuser()


def _parse(key: str, text: str, annotation: str) -> object:
    kind = annotation.split("|")[0].strip()  # "int", "float", "str" (annotations are strings here)
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
    except ValueError:
        raise UserInputError(f"Environment variable {key}={text!r} is not a valid {kind}: fix or unset it.") from None
    return text


__all__ = ["ENV_PREFIX", "MODEL_ENV", "X264_PRESETS", "SpaceSettings"]
