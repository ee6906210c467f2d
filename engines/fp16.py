"""fp32 ONNX -> fp16 ONNX with fp32 inputs and outputs (for TensorRT 11's strongly typed networks).

TensorRT 11 dropped the FP16 builder flag: a network runs in the precisions its ONNX declares. This
converts weights and activations to fp16 with onnxconverter-common, keeping the graph's inputs and outputs
float32 (Cast nodes at the edges) so the engine takes and returns what every other backend does. Ops in
the converter's default block list (Resize, Range, TopK, NonMaxSuppression, Min/Max, ...) stay fp32
between Casts: ONNX Runtime's CPU Resize has no fp16 kernel, and index-like arithmetic is exact only in fp32.

The result loads in ONNX Runtime on the CPU, which is how it is checked without a GPU
(tests/engines/test_fp16_onnx.py: mask IoU against the fp32 model).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)


def to_fp16_onnx(
    src: str | Path,
    dst: str | Path,
    op_block_list: Iterable[str] | None = None,
    node_block_list: Iterable[str] | None = None,
    fp32_tail: bool = True,
) -> Path:
    """Write an fp16 copy of the ONNX model ``src`` to ``dst`` (fp32 I/O kept); returns ``dst``.

    ``op_block_list``: op types to keep in fp32 (None: the converter's default list, which includes
    Resize and Range); ``node_block_list``: node names to keep in fp32. ``fp32_tail``: keep the
    ``decode_tail`` (the head's box decode, score Sigmoid and output Concats) in fp32. Metadata
    (Ultralytics' names, imgsz, ...) is carried over.
    """
    try:
        import onnx
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ValueError(
            f"fp16 ONNX conversion needs onnx and onnxconverter-common ({exc.name} is missing; "
            "pip install maskwatch[gpu])"
        ) from None

    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as exc:  # onnx raises DecodeError and friends
        raise ValueError(f"{src}: not a readable ONNX model: {exc}") from None
    if any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer):
        raise ValueError(f"{src}: cannot convert to fp16: the model is already converted to float16")
    blocked = list(float16.DEFAULT_OP_BLOCK_LIST if op_block_list is None else op_block_list)
    model = onnx.shape_inference.infer_shapes(model)  # types of the tensors where body and tail meet
    body, tail, tail_inits = _split_tail(model, decode_tail(model.graph) if fp32_tail else [])
    with warnings.catch_warnings():
        # One warning per weight outside fp16's range ("will be truncated to 1e-07"): expected, not news.
        warnings.simplefilter("ignore", UserWarning)
        try:
            half = float16.convert_float_to_float16(
                body, keep_io_types=True, op_block_list=blocked, node_block_list=list(node_block_list or [])
            )
        except ValueError as exc:
            raise ValueError(f"{src}: cannot convert to fp16: {exc}") from None
    fixed = _fix_cast_value_info(half.graph)
    if fixed:
        log.debug("fp16: corrected the declared type of %d Cast outputs: %s", len(fixed), fixed)
    if tail:  # re-attach the fp32 tail behind the body's (fp32) outputs
        graph = half.graph
        graph.node.extend(tail)
        graph.initializer.extend(tail_inits)
        del graph.output[:]
        graph.output.extend(model.graph.output)
    onnx.checker.check_model(half)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(half, str(dst))
    return dst


def _split_tail(model, tail_names: list[str]):
    """(body model, tail nodes, tail initializers): the body ends where the tail's inputs are made.

    The body's outputs are the tensors the tail reads (plus the model outputs the body makes itself), so the
    converter, with fp32 I/O kept, hands them over as fp32; the tail and its weights stay untouched (fp32).
    onnxconverter-common cannot block a node that makes a graph output itself ("The downstream node of the
    second cast node should be graph output"), hence the split instead of its node_block_list.
    """
    import onnx

    if not tail_names:
        return model, [], []
    names = set(tail_names)
    graph = model.graph
    tail = [n for n in graph.node if n.name in names]
    body_nodes = [n for n in graph.node if n.name not in names]
    made_by_body = {o for n in body_nodes for o in n.output} | {i.name for i in graph.input}
    inits = {t.name: t for t in graph.initializer}
    body_reads = {i for n in body_nodes for i in n.input}
    types = {v.name: v for v in [*graph.value_info, *graph.input, *graph.output]}
    handover, tail_inits, renamed = [], [], {}
    for node in tail:
        for k, name in enumerate(node.input):
            if name in inits:
                if name in body_reads:  # shared with the body, which turns it fp16: the tail gets its own copy
                    new = renamed.setdefault(name, f"{name}__fp32")
                    node.input[k] = new
                    if all(t.name != new for t in tail_inits):
                        copy = onnx.TensorProto()
                        copy.CopyFrom(inits[name])
                        copy.name = new
                        tail_inits.append(copy)
                elif all(t.name != name for t in tail_inits):
                    tail_inits.append(inits[name])
            elif name in made_by_body and name not in {v.name for v in handover}:
                if name not in types:
                    raise ValueError(f"fp16: no type known for {name!r} (shape inference failed)")
                handover.append(types[name])
    outputs = [o for o in graph.output if o.name in made_by_body]
    body = onnx.ModelProto()
    body.CopyFrom(model)
    del body.graph.node[:]
    body.graph.node.extend(body_nodes)
    keep = body_reads
    kept_inits = [t for t in graph.initializer if t.name in keep]
    del body.graph.initializer[:]
    body.graph.initializer.extend(kept_inits)
    del body.graph.output[:]
    body.graph.output.extend([*handover, *outputs])
    made_by_tail = {o for n in tail for o in n.output}
    body_infos = [v for v in graph.value_info if v.name not in made_by_tail]  # the converter would make them fp16
    del body.graph.value_info[:]
    body.graph.value_info.extend(body_infos)
    return body, tail, tail_inits


HEAVY_OPS = ("Conv", "ConvTranspose", "MatMul", "Gemm")


def decode_tail(graph) -> list[str]:
    """Names of the nodes between the last heavy op (Conv, MatMul, ...) and each graph output.

    In a YOLO segmentation head these are the box decode (anchor points + DFL distances, times the
    stride), the class-score Sigmoid and the Concats/Reshapes of the outputs: elementwise work on a few
    hundred kB that fp16 gets wrong in ways that matter, while the convolutions keep all the speed-up:

    - coordinates: fp16 steps by 0.25 px from 256 and 0.5 px from 512, so boxes (which crop the masks)
      move by up to a frame pixel; on small objects that cost up to 4 % of mask IoU (measured);
    - scores: a sigmoid saturates at 1.0 from a logit of about 7.6 (fp16 steps by 0.0005 near 1), so
      overlapping candidates of confident objects tie and NMS keeps other boxes than fp32 does.
      Ultralytics keeps the same Sigmoid out of INT8 for the same reason.
    """
    producer = {out: node for node in graph.node for out in node.output}
    tail: list[str] = []
    seen: set[int] = set()
    stack = [o.name for o in graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or id(node) in seen or node.op_type in HEAVY_OPS:
            continue
        seen.add(id(node))
        if node.name:
            tail.append(node.name)
        stack.extend(node.input)
    return tail


def _fix_cast_value_info(graph) -> list[str]:
    """Declare each Cast output with the type the Cast produces.

    onnxconverter-common 1.14-1.16 leaves the value_info of a blocked op's output (e.g. Resize) as float32
    after it inserts a Cast to fp16 behind it (and the graph outputs' value_info as fp16 behind the Cast back
    to fp32); ONNX Runtime then refuses the model ("Type (tensor(float)) of output arg ... does not match
    expected type (tensor(float16))").
    """
    produced = {out: attr.i for node in graph.node if node.op_type == "Cast"
                for attr in node.attribute if attr.name == "to" for out in node.output}
    fixed = []
    for vi in graph.value_info:
        to = produced.get(vi.name)
        if to is not None and vi.type.tensor_type.elem_type != to:
            vi.type.tensor_type.elem_type = to
            fixed.append(vi.name)
    return fixed
