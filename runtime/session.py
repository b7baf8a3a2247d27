"""The onnxruntime session behind a Predictor: threads, graph optimization, providers, optimized-graph cache.

onnxruntime optimizes a graph (constant folding, Conv+Add+Relu fusion, the NCHWc
layout on x86) every time a session starts. With a cache folder, the first start
saves the optimized graph and later starts load it with optimization switched
off: measured here, 0.23 s → 0.05 s for the fp32 ResNet-18. An optimized graph
may hold kernels specific to the CPU and onnxruntime build that made it, so the
cache key covers the model file's identity (path, inode, size, modification and
change times), the onnxruntime version, the optimization level, the providers
and the CPU's model name and flags. The cache is a convenience, never a point of
failure: an unreadable entry is rebuilt, and an unwritable folder means no cache.

Only a graph on the CPU provider is saved: one that another provider compiled
into its own kernels (OpenVINO) cannot be written as ONNX. The OpenVINO
execution provider keeps its own cache of compiled models instead, in the
cache folder's ``openvino`` subfolder; for the 11 MB int8 model it saves little
(0.19 → 0.17 s). Other providers start uncached.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import onnxruntime as ort

from resnet_edge.hardware import this_cpu
from resnet_edge.errors import MetadataError
from resnet_edge.metadata import ModelMetadata

OPTIMIZATION_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
# onnxruntime's names for the providers the toolkit treats specially: its own CPU kernels, and OpenVINO's.
CPU_PROVIDER, OPENVINO_PROVIDER = "CPUExecutionProvider", "OpenVINOExecutionProvider"
DEFAULT_PROVIDERS = (CPU_PROVIDER,)
_PROVIDER_SUFFIX = "ExecutionProvider"
# Providers with a model cache of their own, and the provider option that names its folder.
_OWN_CACHE_OPTION = {OPENVINO_PROVIDER: "cache_dir"}
_QUIET = 3  # onnxruntime's log severity "error": its warning about hardware-specific saved graphs is the point here


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity masks
        return os.cpu_count() or 1


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """``providers`` checked against what this onnxruntime build offers (CPU when None), as onnxruntime names them.

    A name may drop the ``ExecutionProvider`` suffix and ignore case: ``openvino`` is ``OpenVINOExecutionProvider``.
    """
    wanted = list(DEFAULT_PROVIDERS if providers is None else providers)
    available = ort.get_available_providers()
    by_name = {alias.lower(): name for name in available for alias in (name, short_provider_name(name))}
    missing = [name for name in wanted if str(name).lower() not in by_name]
    if missing or not wanted:
        raise ValueError(
            f"execution provider(s) {', '.join(map(str, missing)) or '(none given)'} not available in this "
            f"onnxruntime; available: {', '.join(available)}"
        )
    return [by_name[name.lower()] for name in wanted]


def short_provider_name(provider: str) -> str:
    """``OpenVINOExecutionProvider`` → ``OpenVINO``."""
    return provider.removesuffix(_PROVIDER_SUFFIX)


def session_options(threads: int | None, optimization: str,
                    config: Mapping[str, str] | None = None) -> ort.SessionOptions:
    """onnxruntime options; ``config`` holds session config entries (e.g. ``session.intra_op.allow_spinning``)."""
    if optimization not in OPTIMIZATION_LEVELS:
        raise ValueError(
            f"unknown graph optimization level {optimization!r}; expected one of {', '.join(OPTIMIZATION_LEVELS)}"
        )
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    for key, value in (config or {}).items():
        try:
            options.add_session_config_entry(str(key), str(value))
        except Exception as exc:  # onnxruntime refuses unknown or malformed entries with its own types
            raise ValueError(f"onnxruntime refused session config {key}={value}: {exc}") from None
    return options


def cache_key(model_path: Path, optimization: str, providers: Sequence[str],
              config: Mapping[str, str] | None = None) -> str:
    # The file's identity rather than its hash: hashing 45 MB on every start would cost as much as the
    # optimization the cache saves. ctime is included because copying tools can preserve mtime, not ctime.
    stat = model_path.stat()
    parts = [str(model_path.resolve()), str(stat.st_ino), str(stat.st_size), str(stat.st_mtime_ns),
             str(stat.st_ctime_ns), ort.__version__, optimization, ",".join(providers), this_cpu().fingerprint(),
             repr(sorted((config or {}).items()))]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]


def read_metadata_props(model_path: Path) -> dict[str, str]:
    """Every ``metadata_props`` entry of an ONNX file, read through an unoptimized session."""
    session = _session(Path(model_path), session_options(None, "disabled"), DEFAULT_PROVIDERS)
    return dict(session.get_modelmeta().custom_metadata_map)


def read_metadata(model_path: Path) -> ModelMetadata:
    """The resnet-edge metadata of an ONNX file, read through an unoptimized session."""
    return ModelMetadata.from_props(read_metadata_props(model_path), str(model_path))


def session_metadata(session: ort.InferenceSession, model_path: Path) -> ModelMetadata:
    """The resnet-edge metadata of the model an open session runs."""
    return ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(model_path))


def create_session(model_path: Path, threads: int | None, optimization: str, providers: Sequence[str],
                   cache_dir: Path | None,
                   config: Mapping[str, str] | None = None) -> tuple[ort.InferenceSession, bool]:
    """The session, and whether onnxruntime loaded it from its optimized-graph cache.

    Only a CPU-provider graph is saved; a provider with a cache of its own keeps it in ``cache_dir`` instead
    (the second value is then False: such providers do not say whether their cache served them).
    """
    options = session_options(threads, optimization, config)
    if cache_dir is None:
        return _session(model_path, options, providers), False
    if any(provider not in DEFAULT_PROVIDERS for provider in providers):
        with_caches = providers_with_caches(providers, Path(cache_dir))
        if with_caches != list(providers):
            try:
                return _session(model_path, options, with_caches), False
            except Exception:  # the provider refused its cache folder: start without it, or say why not below
                pass
        return _session(model_path, options, providers), False
    if optimization == "disabled":
        return _session(model_path, options, providers), False
    cached = Path(cache_dir) / f"{model_path.stem}.{cache_key(model_path, optimization, providers, config)}.onnx"
    if cached.is_file():
        cached_options = session_options(threads, "disabled", config)
        try:
            return _session(cached, cached_options, providers), True
        except Exception:  # a damaged entry (a full disk, a crash): rebuild it below
            cached.unlink(missing_ok=True)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{cached.name}.", suffix=".tmp", dir=cached.parent)
        os.close(fd)
    except OSError:  # a read-only or missing cache folder: run without the cache
        return _session(model_path, options, providers), False
    try:
        # Written under a temporary name, synced and renamed, so a concurrent or later start never reads half a file.
        options.optimized_model_filepath = tmp_name
        options.log_severity_level = _QUIET
        session = _session(model_path, options, providers)
        with open(tmp_name, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, cached)
    finally:
        Path(tmp_name).unlink(missing_ok=True)
    return session, False


def _session(model_path: Path, options: ort.SessionOptions, providers: Sequence[Any]) -> ort.InferenceSession:
    """An onnxruntime session; a file onnxruntime cannot load is a :class:`MetadataError` naming it."""
    try:
        return ort.InferenceSession(str(model_path), options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable files
        raise MetadataError(f"cannot load {model_path} as an ONNX model: {str(exc).splitlines()[0]}") from None


def providers_with_caches(providers: Sequence[str], cache_dir: Path) -> list[str | tuple[str, dict[str, str]]]:
    """``providers``, each one with a cache of its own given a subfolder of ``cache_dir`` for it."""
    with_caches: list[str | tuple[str, dict[str, str]]] = []
    for provider in providers:
        option = _OWN_CACHE_OPTION.get(provider)
        folder = cache_dir / short_provider_name(provider).lower()
        try:
            if option is not None:
                folder.mkdir(parents=True, exist_ok=True)  # OpenVINO fails the whole session when it cannot
        except OSError:  # as for onnxruntime's graph: an unwritable folder means no cache
            option = None
        with_caches.append(provider if option is None else (provider, {option: str(folder)}))
    return with_caches
