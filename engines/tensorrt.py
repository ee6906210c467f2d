"""TensorRT backend: build engines from ONNX (TensorRT 10 and 11), cache them, run them on a CUDA stream.

Building (``build_engine``, ``maskwatch engine build``):

- TensorRT 10: the fp32 ONNX is parsed as is and ``BuilderFlag.FP16`` lets the builder pick fp16 kernels.
- TensorRT >= 11: networks are always strongly typed and the FP16 flag is gone, so the ONNX is first
  converted to fp16 with fp32 inputs/outputs (``engines.fp16``), then parsed with ``STRONGLY_TYPED``.
- A dynamic batch gets one optimization profile: min 1, opt B, max B.
- The file is written in Ultralytics' layout (``engines.engine_file``) with the ONNX's Ultralytics metadata,
  so Ultralytics loads maskwatch's engines and maskwatch loads Ultralytics' ``.engine`` exports.

Running (``TensorRTEngine``): one execution context, CUDA stream and set of device buffers (torch CUDA
tensors, no pycuda) per inference thread; ``set_tensor_address`` + ``execute_async_v3``; for static shapes
the enqueue is captured once into a CUDA graph and replayed.

``tensorrt`` and ``torch`` are imported only when this backend is used: ``import engines`` works without
them, and using the backend without them raises one ``ValueError`` line that says what to install.
"""

from __future__ import annotations

import ast
import logging
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskwatch.engines.base import Backend, Engine, build_meta, register_backend
from maskwatch.engines.engine_file import cache_key, cached_engine_path, file_sha256, read_engine_file, write_engine_file

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install maskwatch[gpu]; needs an NVIDIA GPU"
# Ultralytics writes these metadata values as Python literals in ONNX (str(v)) and as JSON values in .engine files.
_LITERAL_KEYS = ("stride", "batch", "imgsz", "names", "args", "channels", "end2end", "kpt_shape", "dla")


class TensorRTUnavailable(ValueError):
    """TensorRT (or torch with CUDA) is missing: one line that says what to install."""


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(f"TensorRT is not installed ({INSTALL_HINT})") from None
    return trt


def import_torch_cuda():
    try:
        import torch
    except ImportError:
        raise TensorRTUnavailable(f"the TensorRT backend needs torch with CUDA, which is not installed ({INSTALL_HINT})") from None
    if not torch.cuda.is_available():
        raise TensorRTUnavailable(
            f"the TensorRT backend needs a CUDA GPU, but torch {torch.__version__} sees none "
            f"(a CPU-only torch build, or no NVIDIA driver; {INSTALL_HINT})"
        )
    return torch


def trt_major(trt) -> int:
    return int(str(trt.__version__).split(".", 1)[0])


_LOGGERS: dict[int, Any] = {}


def _trt_logger(trt, verbose: bool = False):
    """One logger per severity, alive as long as the process (TensorRT keeps a reference to it)."""
    key = int(bool(verbose))
    if key not in _LOGGERS:
        _LOGGERS[key] = trt.Logger(trt.Logger.INFO if verbose else trt.Logger.WARNING)
    return _LOGGERS[key]


# ------------------------------------------------------------------------------------------ ONNX facts


def _onnx_facts(path: Path) -> tuple[dict[str, str], str, list[int | None]]:
    """(metadata_props, input name, input shape with None for symbolic axes) of an ONNX file."""
    try:
        import onnx
    except ImportError:
        raise TensorRTUnavailable(f"building a TensorRT engine needs the onnx package ({INSTALL_HINT})") from None
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # DecodeError and friends
        raise ValueError(f"{path}: not a readable ONNX model: {exc}") from None
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ValueError(f"{path}: expected one image input, got {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4:
        raise ValueError(f"{path}: expected an image input (B, 3, H, W), got {len(dims)} axes")
    return {p.key: p.value for p in model.metadata_props}, inputs[0].name, dims


def ultralytics_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """ONNX metadata_props (all strings) -> the typed dict Ultralytics writes into an .engine header."""
    out: dict[str, Any] = {}
    for key, value in props.items():
        if key in _LITERAL_KEYS:
            try:
                value = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                pass
        out[key] = value
    return out


def _metadata_strings(meta: Mapping[str, Any]) -> dict[str, str]:
    """An .engine header (JSON values) -> strings as Ultralytics' ONNX metadata carries them (for build_meta)."""
    out = {}
    for key, value in meta.items():
        if key == "names" and isinstance(value, Mapping):  # JSON turned the class ids into strings
            try:
                value = {int(k): v for k, v in value.items()}
            except (TypeError, ValueError):
                pass
        out[str(key)] = value if isinstance(value, str) else str(value)
    return out


def _resolve_build(
    onnx_path: Path, batch: int | None, dynamic: bool | None
) -> tuple[dict[str, str], str, list[int | None], tuple[int, int], int, bool]:
    """Check the build options against the ONNX; returns (props, input name, dims, (h, w), batch, dynamic)."""
    props, input_name, dims = _onnx_facts(onnx_path)
    b_dim, c_dim, h_dim, w_dim = dims
    if c_dim not in (None, 3):
        raise ValueError(f"{onnx_path}: expected 3 input channels (RGB), got {c_dim}")
    if h_dim and w_dim:
        hw = (h_dim, w_dim)
    elif "imgsz" in props:
        imgsz = ultralytics_metadata({"imgsz": props["imgsz"]})["imgsz"]
        hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(imgsz)  # type: ignore[assignment]
        if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
            raise ValueError(f"{onnx_path}: 'imgsz' metadata must be an int or [h, w], got {props['imgsz']!r}")
    else:
        raise ValueError(f"{onnx_path}: the input has dynamic height/width and no 'imgsz' metadata; "
                         "export the ONNX with a fixed imgsz")
    if batch is not None and batch < 1:
        raise ValueError(f"--batch must be >= 1, got {batch}")
    if b_dim is not None:  # a fixed batch axis cannot be changed by TensorRT
        if dynamic:
            raise ValueError(f"{onnx_path.name} has a fixed batch of {b_dim}; a dynamic engine needs an ONNX "
                             "exported with a dynamic batch axis (Ultralytics: dynamic=True)")
        if batch is not None and batch != b_dim:
            raise ValueError(f"{onnx_path.name} has a fixed batch of {b_dim}, so the engine's batch is {b_dim}, "
                             f"not {batch}; export the ONNX with batch={batch} or dynamic=True")
        return props, input_name, dims, hw, b_dim, False
    if batch is None:
        try:
            batch = max(1, int(ast.literal_eval(props.get("batch", "1"))))
        except (ValueError, SyntaxError, TypeError):
            batch = 1
    return props, input_name, dims, hw, batch, bool(dynamic)


def _gpu_name(device_index: int = 0) -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(device_index)
    except Exception:  # noqa: BLE001 - the name only labels the engine
        pass
    return "unknown"


# ------------------------------------------------------------------------------------------ build


def build_engine(
    onnx_path: str | Path,
    out: str | Path | None = None,
    fp16: bool = False,
    batch: int | None = None,
    dynamic: bool | None = None,
    workspace_gib: float | None = None,
    strongly_typed: bool | None = None,
    gpu_name: str | None = None,
    verbose: bool = False,
) -> Path:
    """Build a TensorRT engine from ``onnx_path`` and write it (Ultralytics header + plan) to ``out``.

    ``batch``: the engine's batch (None: the ONNX's fixed batch, or its 'batch' metadata for a dynamic
    axis). ``dynamic``: accept any batch 1..B (needs an ONNX with a dynamic batch axis). ``workspace_gib``:
    builder workspace limit (None: TensorRT's default). ``strongly_typed``: None picks it by version
    (TensorRT >= 11 is always strongly typed; True on TensorRT 10 builds from the fp16 ONNX as 11 does).
    Returns ``out`` (default: the ONNX path with the suffix .engine).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ValueError(f"model file not found: {onnx_path}")
    if onnx_path.suffix.lower() != ".onnx":
        raise ValueError(f"{onnx_path}: expected an ONNX model (.onnx)")
    if workspace_gib is not None and workspace_gib <= 0:
        raise ValueError(f"--workspace must be > 0 GiB, got {workspace_gib}")
    out = Path(out) if out is not None else onnx_path.with_suffix(".engine")
    if out.resolve() == onnx_path.resolve():
        raise ValueError(f"--out {out} would overwrite the ONNX model")
    props, _, dims, hw, batch, dynamic = _resolve_build(onnx_path, batch, dynamic)
    trt = import_tensorrt()
    major = trt_major(trt)
    if major < 10:
        raise ValueError(f"TensorRT {trt.__version__} is too old: maskwatch builds with TensorRT 10 or newer")
    typed = True if major >= 11 else bool(strongly_typed)
    logger = _trt_logger(trt, verbose)

    with tempfile.TemporaryDirectory(prefix="maskwatch-trt-") as tmp:
        parse_path = onnx_path
        if fp16 and typed:  # strongly typed: the precision comes from the ONNX itself
            from maskwatch.engines.fp16 import to_fp16_onnx

            parse_path = to_fp16_onnx(onnx_path, Path(tmp) / f"{onnx_path.stem}.fp16.onnx")
            log.info("%s: converted to fp16 (fp32 inputs/outputs) for a strongly typed network", onnx_path.name)
        builder = trt.Builder(logger)
        flags = 0
        typed_flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
        if typed and typed_flag is not None:
            flags |= 1 << int(typed_flag)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(parse_path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ValueError(f"{onnx_path}: TensorRT cannot parse the ONNX: {errors or 'no details'}")
        config = builder.create_builder_config()
        if workspace_gib is not None:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
        if fp16 and not typed:
            config.set_flag(trt.BuilderFlag.FP16)
        if network.num_inputs != 1:
            raise ValueError(f"{onnx_path}: expected one image input, TensorRT sees {network.num_inputs}")
        inp = network.get_input(0)
        if any(int(d) < 0 for d in inp.shape):  # a symbolic axis: one profile pins H, W and the batch range
            profile = builder.create_optimization_profile()
            full = (batch, 3, *hw)
            profile.set_shape(inp.name, (1 if dynamic else batch, 3, *hw), full, full)
            config.add_optimization_profile(profile)
        precision = "fp16" if fp16 else "fp32"
        log.info("building a %s TensorRT %s engine from %s (batch %s%s, %sx%s); this takes minutes",
                 precision, trt.__version__, onnx_path.name, batch, " dynamic" if dynamic else "", hw[1], hw[0])
        plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"{onnx_path}: the TensorRT engine build failed (see TensorRT's messages above)")

    metadata = ultralytics_metadata(props)
    metadata["batch"] = batch
    metadata.setdefault("imgsz", list(hw))
    if isinstance(metadata.get("args"), dict):  # Ultralytics' export args, as an engine export records them
        metadata["args"].update(batch=batch, dynamic=dynamic, half=bool(fp16))
    metadata["maskwatch"] = {
        "onnx": onnx_path.name,
        "onnx_sha256": file_sha256(onnx_path),
        "tensorrt": str(trt.__version__),
        "gpu": gpu_name or _gpu_name(),
        "fp16": bool(fp16),
        "batch": batch,
        "dynamic": dynamic,
        "workspace_gib": workspace_gib,
        "strongly_typed": typed,
    }
    write_engine_file(out, bytes(plan), metadata)
    log.info("wrote %s (%.1f MB)", out, out.stat().st_size / 1e6)
    return out


def build_options(
    onnx_path: Path, fp16: bool, batch: int | None, dynamic: bool | None, workspace_gib: float | None,
    strongly_typed: bool | None, trt_version: str,
) -> dict[str, Any]:
    """The resolved build options that the cache key covers (defaults filled in from the ONNX)."""
    _, _, _, hw, batch, dynamic = _resolve_build(onnx_path, batch, dynamic)
    typed = True if int(trt_version.split(".", 1)[0]) >= 11 else bool(strongly_typed)
    options: dict[str, Any] = {
        "fp16": bool(fp16),
        "batch": int(batch),
        "dynamic": bool(dynamic),
        "workspace_gib": None if workspace_gib is None else float(workspace_gib),
        "strongly_typed": typed,
        "imgsz": list(hw),
    }
    if fp16 and typed:  # the fp16 ONNX comes from onnxconverter-common: a new version may convert differently
        try:
            from importlib.metadata import version

            options["onnxconverter_common"] = version("onnxconverter-common")
        except Exception:  # noqa: BLE001
            options["onnxconverter_common"] = "unknown"
    return options


def cached_engine(
    onnx_path: str | Path,
    cache_dir: str | Path | None = None,
    fp16: bool = True,
    batch: int | None = None,
    dynamic: bool | None = None,
    workspace_gib: float | None = None,
    strongly_typed: bool | None = None,
    device_index: int = 0,
) -> Path:
    """The engine for ``onnx_path`` from the cache, built on first use (key: model, TensorRT, GPU, options)."""
    onnx_path = Path(onnx_path)
    trt = import_tensorrt()
    gpu = _gpu_name(device_index)
    options = build_options(onnx_path, fp16, batch, dynamic, workspace_gib, strongly_typed, str(trt.__version__))
    key = cache_key(onnx_path, str(trt.__version__), gpu, options)
    path = cached_engine_path(cache_dir, key)
    if path.is_file():
        log.info("%s: reusing the cached TensorRT engine %s", onnx_path.name, path)
        return path
    log.info("%s: no cached TensorRT engine for %s on %s yet; building %s", onnx_path.name, trt.__version__, gpu, path)
    return build_engine(onnx_path, path, fp16=options["fp16"], batch=options["batch"], dynamic=options["dynamic"],
                        workspace_gib=workspace_gib, strongly_typed=strongly_typed, gpu_name=gpu)


# ------------------------------------------------------------------------------------------ run


def _torch_dtype(trt, torch, dt):
    table = {
        "FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16, "INT32": torch.int32,
        "INT64": torch.int64, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool,
    }
    for name, tdt in table.items():
        if hasattr(trt.DataType, name) and dt == getattr(trt.DataType, name):
            return tdt
    raise ValueError(f"unsupported TensorRT tensor type {dt}")


def _cuda_device(torch, device: str):
    device = (device or "cuda").strip().lower()
    if device in ("cuda", "auto"):
        return torch.device("cuda", torch.cuda.current_device())
    if device.startswith("cuda:") and device[5:].isdigit():
        index = int(device[5:])
        if index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
        return torch.device("cuda", index)
    if device == "cpu":
        raise ValueError("TensorRT runs on an NVIDIA GPU only; set the device to 'cuda' or 'cuda:N' (got 'cpu')")
    raise ValueError(f"unknown device {device!r}; expected 'cuda' or 'cuda:N'")


class _ThreadState:
    """What one inference thread owns: execution context, stream, device buffers, optional CUDA graph."""

    def __init__(self, context, stream, inputs, outputs) -> None:
        self.context = context
        self.stream = stream
        self.input = inputs  # torch tensor at the largest batch
        self.outputs = outputs  # name -> torch tensor at the largest batch
        self.bound = 0  # batch size the context's shapes and addresses are set for
        self.graph = None


class TensorRTEngine(Engine):
    """A serialized TensorRT engine (Ultralytics header or plain plan) run on one CUDA device.

    Thread-safe: each calling thread gets its own execution context, stream and buffers. ``infer_torch``
    keeps data on the GPU; ``infer`` (numpy) copies in and out.
    """

    def __init__(
        self,
        path: Path,
        device: str = "cuda",
        names: Mapping[int, str] | Sequence[str] | None = None,
        cuda_graph: bool = True,
    ) -> None:
        trt = import_tensorrt()
        torch = import_torch_cuda()
        self._trt, self._torch = trt, torch
        self.device = _cuda_device(torch, device)
        path = Path(path)
        metadata, plan = read_engine_file(path)
        with torch.cuda.device(self.device):
            runtime = trt.Runtime(_trt_logger(trt))
            if metadata and metadata.get("dla") is not None:
                runtime.DLA_core = int(metadata["dla"])
            engine = runtime.deserialize_cuda_engine(plan)
        if engine is None:
            raise ValueError(
                f"{path}: TensorRT {trt.__version__} cannot deserialize this engine (built with another TensorRT "
                "version or for another GPU? rebuild it with `maskwatch engine build`)"
            )
        self._runtime, self._engine = runtime, engine
        self._local = threading.local()
        self._states: list[_ThreadState] = []
        self._lock = threading.Lock()
        self._closed = False

        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1:
            raise ValueError(f"{path}: expected one image input, got {inputs}")
        self._input_name = name_in = inputs[0]
        self.input_dtype = _torch_dtype(trt, torch, engine.get_tensor_dtype(name_in))
        if self.input_dtype not in (torch.float32, torch.float16):
            raise ValueError(f"{path}: expected a float32 or float16 input, got {self.input_dtype}")
        shape = [int(d) for d in engine.get_tensor_shape(name_in)]
        if len(shape) != 4:
            raise ValueError(f"{path}: expected an image input (B, 3, H, W), got {shape}")
        meta_raw = _metadata_strings(metadata or {})
        if -1 in shape:  # dynamic axes: profile 0 bounds them
            lo, opt, hi = ([int(d) for d in s] for s in engine.get_tensor_profile_shape(name_in, 0))
            if lo[2:] == hi[2:]:
                hw = (hi[2], hi[3])
            else:  # an Ultralytics dynamic export allows a range of sizes: use imgsz when the profile takes it
                hw = (opt[2], opt[3])
                if "imgsz" in meta_raw:
                    from maskwatch.engines.base import parse_imgsz

                    want = parse_imgsz(meta_raw["imgsz"], str(path))
                    if all(lo[i + 2] <= want[i] <= hi[i + 2] for i in range(2)):
                        hw = want
            self._min_batch, self._max_batch = lo[0], hi[0]
        else:
            hw = (shape[2], shape[3])
            self._min_batch = self._max_batch = shape[0]
        self._dynamic = self._min_batch != self._max_batch
        self._hw = hw
        if self._dynamic and "batch" in meta_raw:  # the batch the pipeline gathers must fit the profile
            try:
                meta_raw["batch"] = str(min(max(1, int(ast.literal_eval(meta_raw["batch"]))), self._max_batch))
            except (ValueError, SyntaxError, TypeError):
                meta_raw["batch"] = str(self._max_batch)

        dets = [n for n in outputs if len(engine.get_tensor_shape(n)) == 3]
        protos = [n for n in outputs if len(engine.get_tensor_shape(n)) == 4]
        if len(dets) != 1 or len(protos) != 1 or len(outputs) != 2:
            shapes = {n: tuple(engine.get_tensor_shape(n)) for n in outputs}
            raise ValueError(
                f"{path}: expected a segmentation model with two outputs, detections (B, C, N) and mask "
                f"prototypes (B, nm, h, w); got {shapes}"
            )
        self._output_names = [dets[0], protos[0]]  # engines.base._order_outputs' order
        self._cuda_graph = bool(cuda_graph) and not self._dynamic

        def probe(batch: int, hw_: tuple[int, int]) -> list[np.ndarray]:
            # Creates this thread's context and buffers (and the CUDA graph) and warms TensorRT up, so the
            # first frame pays none of it; the output shapes tell the layout and class count.
            return self._run(np.zeros((batch, 3, *hw_), np.float32))

        self.meta = build_meta(
            path=path,
            backend="tensorrt",
            metadata=meta_raw,
            names=names,
            input_name=name_in,
            input_dtype=str(self.input_dtype).replace("torch.", ""),
            input_shape=[None if self._dynamic else self._max_batch, 3, *hw],
            probe=probe,
        )
        log.info(
            "loaded %s with TensorRT %s on %s (%s): input %s %s, batch %s%s, %d classes, CUDA graph %s",
            path.name, trt.__version__, self.device, torch.cuda.get_device_name(self.device), hw,
            self.meta.input_dtype, self._max_batch, " (dynamic)" if self._dynamic else "", self.meta.nc,
            "on" if self._state().graph is not None else "off",
        )

    # -- per-thread state ----------------------------------------------------------------------------
    def _state(self) -> _ThreadState:
        st = getattr(self._local, "state", None)
        if st is None:
            if self._closed:
                raise RuntimeError(f"{self.meta.path.name}: engine is closed")
            st = self._new_state()
            self._local.state = st
            with self._lock:
                self._states.append(st)
        return st

    def _new_state(self) -> _ThreadState:
        torch, engine = self._torch, self._engine
        with torch.cuda.device(self.device):
            context = engine.create_execution_context()
            if context is None:
                raise RuntimeError("TensorRT could not create an execution context (out of GPU memory?)")
            stream = torch.cuda.Stream(self.device)
            full = (self._max_batch, 3, *self._hw)
            if not context.set_input_shape(self._input_name, full):
                raise RuntimeError(f"TensorRT refused the input shape {full}")
            inp = torch.zeros(full, dtype=self.input_dtype, device=self.device)
            outs = {}
            for name in self._output_names:
                shape = tuple(int(d) for d in context.get_tensor_shape(name))
                outs[name] = torch.empty(shape, dtype=_torch_dtype(self._trt, torch, engine.get_tensor_dtype(name)),
                                         device=self.device)
            st = _ThreadState(context, stream, inp, outs)
            self._bind(st, self._max_batch)
            if self._cuda_graph:
                st.graph = self._capture(st)
        return st

    def _bind(self, st: _ThreadState, batch: int) -> None:
        """Point the context at this thread's buffers for ``batch`` images (they hold the largest batch)."""
        if st.bound == batch:
            return
        ctx = st.context
        if not ctx.set_input_shape(self._input_name, (batch, 3, *self._hw)):
            raise ValueError(f"{self.meta.path.name}: batch {batch} is outside the engine's profile "
                             f"({self._min_batch}..{self._max_batch})")
        ctx.set_tensor_address(self._input_name, st.input.data_ptr())
        for name, buf in st.outputs.items():
            ctx.set_tensor_address(name, buf.data_ptr())  # a leading slice [:batch] starts at the same address
        st.bound = batch

    _capture_lock = threading.Lock()

    def _capture(self, st: _ThreadState):
        """Record one enqueue into a CUDA graph; None (plain enqueues) if TensorRT or CUDA refuses."""
        torch = self._torch
        try:
            with torch.cuda.stream(st.stream):
                st.input.normal_()  # arbitrary but fixed input for the self-check below
                ok = st.context.execute_async_v3(st.stream.cuda_stream)  # TensorRT allocates on its first run
            st.stream.synchronize()
            expect = [b.clone() for b in st.outputs.values()]
            graph = torch.cuda.CUDAGraph()
            with self._capture_lock, torch.cuda.graph(graph, stream=st.stream, capture_error_mode="thread_local"):
                ok = st.context.execute_async_v3(st.stream.cuda_stream) and ok
            if not ok:
                raise RuntimeError("execute_async_v3 refused the enqueue")
            for b in st.outputs.values():
                b.zero_()
            with torch.cuda.stream(st.stream):
                graph.replay()
            st.stream.synchronize()
            same = all(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3)
                       for a, b in zip(expect, st.outputs.values(), strict=True))
            if not same:
                raise RuntimeError("the replayed graph's outputs differ from a plain run")
            return graph
        except Exception as exc:  # noqa: BLE001 - the graph is an optimisation; plain enqueues still work
            log.warning("%s: CUDA graph capture failed (%s); running without it", self._engine_name(), exc)
            st.bound = 0
            self._bind(st, self._max_batch)
            return None

    def _engine_name(self) -> str:
        meta = getattr(self, "meta", None)
        return meta.path.name if meta is not None else "TensorRT engine"

    # -- inference -----------------------------------------------------------------------------------
    def infer_torch(self, batch, copy: bool = True) -> list:
        """Run on a (B, 3, H, W) tensor (CPU or CUDA, float32 or float16; RGB 0..1); any B.

        Returns ``[detections, prototypes]`` as float32 CUDA tensors on ``self.device``, ordered on the
        caller's current stream. ``copy=False`` returns views of this thread's buffers instead, valid until
        this thread's next call (saves a device copy per output).
        """
        torch = self._torch
        h, w = self._hw
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (3, h, w) or batch.shape[0] == 0:
            raise ValueError(f"{self._engine_name()}: infer expects a (B, 3, {h}, {w}) batch, got shape {tuple(batch.shape)}")
        st = self._state()
        step = self._max_batch
        parts = []
        for i in range(0, batch.shape[0], step):
            parts.append(self._run_chunk(st, batch[i : i + step], copy or batch.shape[0] > step))
        if len(parts) == 1:
            return parts[0]
        return [torch.cat(outs, dim=0) for outs in zip(*parts, strict=True)]

    def _run_chunk(self, st: _ThreadState, x, copy: bool) -> list:
        torch = self._torch
        n = int(x.shape[0])
        run_n = n if self._dynamic else self._max_batch
        if self._dynamic and n < self._min_batch:
            run_n = self._min_batch
        current = torch.cuda.current_stream(self.device)
        st.stream.wait_stream(current)  # the input may still be being written on the caller's stream
        with torch.cuda.device(self.device), torch.cuda.stream(st.stream):
            st.input[:n].copy_(x, non_blocking=True)
            if run_n > n:  # a static batch (or the profile's minimum) larger than the chunk: pad with zeros
                st.input[n:run_n].zero_()
            if st.graph is not None:
                st.graph.replay()
            else:
                self._bind(st, run_n)
                if not st.context.execute_async_v3(st.stream.cuda_stream):
                    raise RuntimeError(f"{self._engine_name()}: TensorRT inference failed (execute_async_v3)")
            outs = []
            for name in self._output_names:
                o = st.outputs[name][:n]
                if copy or o.dtype != torch.float32:
                    o = o.to(torch.float32, copy=True)
                    o.record_stream(current)  # made on this stream, used on the caller's
                outs.append(o)
        if x.is_cuda:
            x.record_stream(st.stream)
        current.wait_stream(st.stream)
        return outs

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._closed:
            raise RuntimeError(f"{self._engine_name()}: engine is closed")
        x = self._torch.from_numpy(np.ascontiguousarray(batch))
        return [o.cpu().numpy() for o in self.infer_torch(x)]

    def close(self) -> None:
        self._closed = True
        with self._lock:
            for st in self._states:
                st.graph = None
                st.context = None
            self._states.clear()
        self._local = threading.local()


# ------------------------------------------------------------------------------------------ backend


def load_tensorrt(
    path: Path,
    device: str = "cuda",
    names: Mapping[int, str] | Sequence[str] | None = None,
    threads: int | None = None,  # noqa: ARG001 - CPU threads do not apply to TensorRT
    *,
    fp16: bool = True,
    batch: int | None = None,
    dynamic: bool | None = None,
    workspace_gib: float | None = None,
    cache_dir: str | Path | None = None,
    cuda_graph: bool = True,
    precision: str | None = None,
) -> TensorRTEngine:
    """The backend's loader: an .engine/.plan file as is; an .onnx file through the engine cache.

    The cache builds the engine on first use (fp16 by default: that is what TensorRT is for) and reuses it
    after; the key covers the ONNX's sha256, TensorRT version, GPU name and the build options.
    """
    path = Path(path)
    if precision is not None:  # fp16 (the default) or fp32, for an engine built from an .onnx
        fp16 = precision == "fp16"
    import_tensorrt()
    torch = import_torch_cuda()
    dev = _cuda_device(torch, device)
    if path.suffix.lower() == ".onnx":
        path = cached_engine(path, cache_dir, fp16=fp16, batch=batch, dynamic=dynamic,
                             workspace_gib=workspace_gib, device_index=dev.index or 0)
    return TensorRTEngine(path, device=str(dev), names=names, cuda_graph=cuda_graph)


register_backend(Backend("tensorrt", (".engine", ".plan"), load_tensorrt,
                         "TensorRT on an NVIDIA GPU (.engine/.plan, or .onnx built and cached on first use)",
                         precisions=("auto", "fp16", "fp32")))
