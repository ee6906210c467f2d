"""TensorRT backend: the CLI and loader without TensorRT, the build logic against a stand-in TensorRT module,
and (on a CUDA machine with TensorRT only) real builds compared with ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
import types

import numpy as np
import onnx
import pytest

from maskwatch.engines import load_engine
from maskwatch.engines import tensorrt as trt_backend
from maskwatch.engines.engine_file import read_engine_file

from .helpers import DYNAMIC_MODEL, ROOT

DEMO = ROOT / "models" / "maskwatch-demo-seg.onnx"
HAVE_TRT = importlib.util.find_spec("tensorrt") is not None


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


# ------------------------------------------------------------------------------------------ without TensorRT


def test_cli_without_tensorrt_exits_2_with_one_line(tmp_path):
    # a fresh process where `import tensorrt` fails, whether or not TensorRT is installed here
    code = ("import sys; sys.modules['tensorrt'] = None; from maskwatch.cli import main; "
            f"sys.exit(main(['engine', 'build', {str(DEMO)!r}, '--fp16', '--out', {str(tmp_path / 'm.engine')!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["maskwatch: error: engine build: TensorRT is not installed "
                     "(pip install maskwatch[gpu]; needs an NVIDIA GPU)"], proc.stderr
    assert not (tmp_path / "m.engine").exists()


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` raises ImportError


def test_cli_in_process_without_tensorrt(no_tensorrt, capsys):
    from maskwatch.cli import main

    assert main(["engine", "build", str(DEMO)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("maskwatch: error: engine build: TensorRT is not installed") and "\n" not in err
    assert "pip install maskwatch[gpu]" in err


def test_cli_help_lists_every_option(capsys):
    from maskwatch.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["engine", "build", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("MODEL.onnx", "--fp16", "--batch", "--dynamic", "--workspace", "--out"):
        assert option in out


@pytest.mark.parametrize(
    "args, match",
    [
        (["models/missing.onnx"], "model file not found"),
        ([str(DEMO), "--batch", "4"], "fixed batch of 1"),
        ([str(DEMO), "--dynamic"], "dynamic batch axis"),
        ([str(DEMO), "--workspace", "0"], "--workspace must be > 0"),
    ],
)
def test_cli_option_errors_exit_2(no_tensorrt, capsys, args, match):
    from maskwatch.cli import main

    assert main(["engine", "build", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err


def test_loader_without_tensorrt_is_one_value_error(no_tensorrt):
    for path in (DEMO,):
        with pytest.raises(ValueError, match=r"^TensorRT is not installed \(pip install maskwatch\[gpu\]"):
            load_engine(path, backend="tensorrt", device="cuda")


def test_import_engines_does_not_import_tensorrt_or_torch():
    code = "import sys; from maskwatch import engines; print('tensorrt' in sys.modules, 'torch' in sys.modules, 'tensorrt' in engines.backends())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert out.split() == ["False", "False", "True"]


def test_engine_suffixes_resolve_to_tensorrt(tmp_path):
    from maskwatch.engines.base import resolve_backend

    for suffix in (".engine", ".plan"):
        assert resolve_backend(tmp_path / f"m{suffix}", "auto").name == "tensorrt"
    assert resolve_backend(tmp_path / "m.onnx", "auto").name == "onnxruntime"  # .onnx goes to TensorRT only when asked


# ------------------------------------------------------------------------------------------ stand-in TensorRT


class _Dims(tuple):
    pass


def fake_tensorrt(version: str, calls: list):
    """Just enough of the TensorRT 10/11 builder API to run build_engine; records what it is asked."""
    major = int(version.split(".")[0])
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version

    class Logger:
        INFO, WARNING, VERBOSE = 1, 2, 3

        def __init__(self, severity):
            self.severity = severity

    class Flag:
        STRONGLY_TYPED = 1

    class BuilderFlag:
        pass

    if major < 11:
        BuilderFlag.FP16 = "FP16"  # removed in TensorRT 11

    class MemoryPoolType:
        WORKSPACE = "WORKSPACE"

    class Input:
        def __init__(self, name, shape):
            self.name, self.shape = name, _Dims(shape)

    class Network:
        def __init__(self, flags):
            self.flags, self.inputs = flags, []

        @property
        def num_inputs(self):
            return len(self.inputs)

        def get_input(self, i):
            return self.inputs[i]

    class Parser:
        def __init__(self, network, logger):
            self.network, self.num_errors = network, 0

        def parse_from_file(self, path):
            model = onnx.load(path)
            weights = {t.name for t in model.graph.initializer}
            inp = [i for i in model.graph.input if i.name not in weights][0]
            shape = [d.dim_value if d.HasField("dim_value") else -1 for d in inp.type.tensor_type.shape.dim]
            self.network.inputs.append(Input(inp.name, shape))
            fp16 = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
            io = [v.type.tensor_type.elem_type for v in [*model.graph.input, *model.graph.output]]
            calls.append(("parse", {"fp16_weights": fp16, "io_float32": set(io) == {onnx.TensorProto.FLOAT}}))
            return True

    class Config:
        def set_memory_pool_limit(self, pool, size):
            calls.append(("workspace", pool, size))

        def set_flag(self, flag):
            calls.append(("flag", flag))

        def add_optimization_profile(self, profile):
            calls.append(("profile", profile.shapes))

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min, opt, max):  # noqa: A002 - TensorRT's names
            self.shapes[name] = (tuple(min), tuple(opt), tuple(max))

    class Builder:
        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(("network_flags", flags))
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            return b"fake plan " + version.encode()

    trt.Logger, trt.NetworkDefinitionCreationFlag, trt.BuilderFlag = Logger, Flag, BuilderFlag
    trt.MemoryPoolType, trt.Builder, trt.OnnxParser = MemoryPoolType, Builder, Parser
    return trt


@pytest.fixture
def fake_trt(monkeypatch):
    def install(version: str) -> list:
        calls: list = []
        monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt(version, calls))
        trt_backend._LOGGERS.clear()
        return calls

    yield install
    trt_backend._LOGGERS.clear()


def test_build_trt10_fp16_uses_the_builder_flag(fake_trt, tmp_path):
    calls = fake_trt("10.16.0")
    out = trt_backend.build_engine(DEMO, tmp_path / "m.engine", fp16=True, workspace_gib=2, gpu_name="GPU X")
    assert ("flag", "FP16") in calls and ("network_flags", 0) in calls
    assert ("parse", {"fp16_weights": False, "io_float32": True}) in calls  # the fp32 ONNX as is
    assert ("workspace", "WORKSPACE", 2 << 30) in calls
    assert not [c for c in calls if c[0] == "profile"]  # static shapes: no profile
    meta, plan = read_engine_file(out)
    assert plan == b"fake plan 10.16.0"
    assert meta["names"] == {"0": "worker", "1": "excavator", "2": "dump_truck", "3": "player", "4": "ball"}
    assert meta["imgsz"] == [384, 640] and meta["stride"] == 32 and meta["batch"] == 1 and meta["task"] == "segment"
    assert meta["args"]["half"] is True and meta["args"]["dynamic"] is False
    assert meta["maskwatch"] == {
        "onnx": DEMO.name, "onnx_sha256": meta["maskwatch"]["onnx_sha256"], "tensorrt": "10.16.0", "gpu": "GPU X",
        "fp16": True, "batch": 1, "dynamic": False, "workspace_gib": 2, "strongly_typed": False,
    }


def test_build_trt11_fp16_parses_an_fp16_onnx_strongly_typed(fake_trt, tmp_path):
    calls = fake_trt("11.4.0")
    out = trt_backend.build_engine(DEMO, tmp_path / "m.engine", fp16=True)
    assert not [c for c in calls if c[0] == "flag"]  # no FP16 flag in TensorRT 11
    assert ("network_flags", 1 << 1) in calls  # STRONGLY_TYPED
    assert ("parse", {"fp16_weights": True, "io_float32": True}) in calls
    meta, _ = read_engine_file(out)
    assert meta["maskwatch"]["strongly_typed"] is True and meta["maskwatch"]["fp16"] is True


def test_build_trt11_fp32_parses_the_onnx_as_is(fake_trt, tmp_path):
    calls = fake_trt("11.4.0")
    trt_backend.build_engine(DEMO, tmp_path / "m.engine", fp16=False)
    assert ("parse", {"fp16_weights": False, "io_float32": True}) in calls


@pytest.mark.parametrize("dynamic, profile_min", [(True, 1), (False, 4)])
def test_build_dynamic_batch_profile(fake_trt, tmp_path, dynamic, profile_min):
    calls = fake_trt("10.16.0")
    out = trt_backend.build_engine(DYNAMIC_MODEL, tmp_path / "d.engine", batch=4, dynamic=dynamic)
    (profile,) = [c[1] for c in calls if c[0] == "profile"]
    (shapes,) = profile.values()
    assert shapes == ((profile_min, 3, 320, 320), (4, 3, 320, 320), (4, 3, 320, 320))  # min, opt, max
    meta, _ = read_engine_file(out)
    assert meta["batch"] == 4 and meta["maskwatch"]["dynamic"] is dynamic


def test_cli_build_with_stand_in_tensorrt(fake_trt, tmp_path, capsys):
    from maskwatch.cli import main

    fake_trt("10.16.0")
    model = tmp_path / "demo.onnx"
    model.write_bytes(DEMO.read_bytes())
    assert main(["engine", "build", str(model), "--fp16"]) == 0  # default out: MODEL.engine
    assert (tmp_path / "demo.engine").is_file()
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'demo.engine'}"


def test_cached_engine_builds_once_then_reuses(fake_trt, tmp_path, monkeypatch):
    calls = fake_trt("10.16.0")
    monkeypatch.setattr(trt_backend, "_gpu_name", lambda index=0: "GPU X")
    first = trt_backend.cached_engine(DEMO, tmp_path, fp16=True)
    assert first.parent == tmp_path and first.suffix == ".engine"
    n = len(calls)
    assert trt_backend.cached_engine(DEMO, tmp_path, fp16=True) == first and len(calls) == n  # no second build
    assert trt_backend.cached_engine(DEMO, tmp_path, fp16=False) != first  # another option, another engine
    monkeypatch.setattr(trt_backend, "_gpu_name", lambda index=0: "GPU Y")
    assert trt_backend.cached_engine(DEMO, tmp_path, fp16=True) != first  # another GPU, another engine


# ------------------------------------------------------------------------------------------ real TensorRT + CUDA

gpu = pytest.mark.skipif(not (HAVE_TRT and _cuda()), reason="needs TensorRT and a CUDA device")


@pytest.fixture(scope="module")
def built_fp16(tmp_path_factory):
    return trt_backend.build_engine(DEMO, tmp_path_factory.mktemp("trt") / "demo.engine", fp16=True)


@gpu
def test_gpu_fp16_engine_matches_onnxruntime(built_fp16):
    from maskwatch.engines import Segmenter, letterbox
    from maskwatch.scenes.site import SiteScene

    ref = Segmenter(load_engine(DEMO), conf=0.25)
    seg = Segmenter(load_engine(built_fp16, device="cuda"), conf=0.25)
    assert seg.meta.backend == "tensorrt" and seg.meta.names == ref.meta.names and seg.meta.input_hw == ref.meta.input_hw
    frame, _ = SiteScene(3).render(1.0)
    img, box = letterbox(np.ascontiguousarray(frame[..., ::-1]), ref.input_hw)
    (a,), (b,) = ref([img], [box], full_masks=True), seg([img], [box], full_masks=True)
    assert abs(len(a) - len(b)) <= max(1, len(a) // 20)
    x = ref.preprocess([img])
    p32, p16 = ref.engine.infer(x), seg.engine.infer(x)
    assert np.abs(p32[0][0, 4:9] - p16[0][0, 4:9]).max() < 0.02  # class scores


@gpu
def test_gpu_infer_torch_cuda_graph_and_threads(built_fp16):
    import torch

    eng = load_engine(built_fp16, device="cuda")
    x = torch.rand(3, 3, *eng.meta.input_hw, device=eng.device)
    ref = [o.clone() for o in eng.infer_torch(x)]  # batch 3 on a batch-1 engine: three runs
    assert [o.device.type for o in ref] == ["cuda", "cuda"] and ref[0].ndim == 3 and ref[1].ndim == 4
    assert eng.input_dtype == torch.float32 and eng._state().graph is not None  # static shapes: CUDA graph

    results, errors = {}, []

    def work(i):
        try:
            for _ in range(5):
                results[i] = [o.cpu() for o in eng.infer_torch(x)]
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(eng._states) == 4  # the main thread + one context per worker thread
    for outs in results.values():
        for got, want in zip(outs, ref, strict=True):
            torch.testing.assert_close(got, want.cpu(), rtol=1e-3, atol=1e-3)
    eng.close()


@gpu
def test_gpu_onnx_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MASKWATCH_CACHE_DIR", str(tmp_path))
    eng = load_engine(DEMO, backend="tensorrt", device="cuda")  # first use: builds into the cache
    (cached,) = tmp_path.glob("*.engine")
    assert eng.meta.backend == "tensorrt" and eng.meta.nc == 5
    mtime = cached.stat().st_mtime_ns
    load_engine(DEMO, backend="tensorrt", device="cuda")  # second use: reuses it
    assert cached.stat().st_mtime_ns == mtime
