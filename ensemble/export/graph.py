"""One ONNX model from raw waveforms to a submission's probabilities.

Input `waves` `(batch, time)` float32 at the runs' sampling rate, every row a whole clip of the same
length (`ensemble.export.runtime` groups clips by length; a padded batch would change the windows).
Per run, inside the graph, exactly as `ensemble.backbones.predict.predict_clips` does in numpy:

1. pad a clip shorter than the window at the end; cut `n`-sample windows every `hop` samples, the
   last one aligned to the clip's end (`ensemble.audio.clip.windows`);
2. the extractor's zero-mean unit-variance normalisation per window (Wav2Vec2-style extractors;
   `raw` models normalise inside themselves); other extractors (AST's filter banks) are refused;
3. every fold model (its graph copied in under a prefix), window logits (eps 1e-7) averaged, sigmoid;
4. folds aggregated by the mean of their logits (`ensemble.stack.inputs.mean_of_logits`).

Then the blend and the calibrators (`blend`: the stack's own ops, `ensemble.stack.onnx_ops.pipeline_ops`
bound to the submission's saved state, handed in by the command) and the prior shift, in float64.
Output `probabilities` `(batch, labels)` float64.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ensemble.artifacts.records import PriorRecord
from ensemble.errors import ContractError
from ensemble.export.ops import DOUBLE, FLOAT, INT64, Graph, prior_shift
from ensemble.probability import LOGIT_EPS, WINDOW_EPS

INPUT, OUTPUT = "waves", "probabilities"
NORM_EPS = 1e-7    # transformers' zero_mean_unit_var_norm
MIN_OPSET = 18     # Reduce* ops take their axes as an input from opset 18 on

# `(graph, P, opset, subgraphs) -> output`: the saved blend and calibrators as ops on `P` (batch, runs, labels)
BlendOps = Callable[[Any, str, int, list], str]


@dataclass
class RunGraphs:
    """One run's fold graphs and how its clips are windowed and normalised."""

    name: str
    folds: list[Any]           # onnx.ModelProto per fold, in the order of the run's manifest
    n: int                     # window length in samples
    hop: int
    normalize: bool            # zero-mean unit-variance per window before the model
    takes_mask: bool
    labels: list[str] = field(default_factory=list)
    fold_ids: list[int] = field(default_factory=list)  # the fold number of each graph in `folds`
    rate: int = 16000                                   # sampling rate the folds take


def preprocessing(pre: dict[str, Any], where: str) -> tuple[bool, bool]:
    """(normalize, takes_mask) for a fold's `preprocessor` metadata; refuses what the graph cannot do."""
    kind, cls = pre.get("kind"), pre.get("extractor_class")
    if kind == "raw":
        return False, bool(pre.get("takes_attention_mask"))
    if kind == "hf" and cls == "Wav2Vec2FeatureExtractor":
        return bool((pre.get("extractor_config") or {}).get("do_normalize", True)), bool(pre.get("takes_attention_mask"))
    raise ContractError(f"{where}: feature extractor {cls or kind!r} has no ONNX export (only raw waveforms and "
                        "Wav2Vec2FeatureExtractor normalisation are built into the graph)")


def _windows(g: Graph, waves: str, n: int, hop: int) -> tuple[str, str]:
    """`(batch·windows, n)` float32 windows of equal-length clips, and `[batch, -1]` for pooling."""
    shape = g.op("Shape", waves)
    t = g.op("Slice", shape, g.const([1], np.int64), g.const([2], np.int64))        # [T]
    pad = g.op("Max", g.op("Sub", g.const([n], np.int64), t), g.const([0], np.int64))
    pads = g.op("Concat", g.const([0, 0, 0], np.int64), pad, axis=0)
    x = g.op("Pad", waves, pads, mode="constant")                                  # (B, max(T, n))
    last = g.op("Sub", g.op("Max", t, g.const([n], np.int64)), g.const([n], np.int64))
    last_s = g.op("Squeeze", last, g.axes(0))
    starts = g.op("Concat", g.op("Range", g.const(0, np.int64), last_s, g.const(hop, np.int64)), last, axis=0)
    index = g.op("Add", g.op("Unsqueeze", starts, g.axes(1)), g.const(np.arange(n)[None], np.int64))  # (W, n)
    windows = g.op("Gather", x, index, axis=1)                                     # (B, W, n)
    flat = g.op("Reshape", windows, g.const([-1, n], np.int64))
    batch = g.op("Slice", shape, g.const([0], np.int64), g.const([1], np.int64))
    return flat, batch


def _normalize(g: Graph, flat: str) -> str:
    """(x − mean) / sqrt(var + 1e-7) per window, computed in float64, back to float32."""
    d = g.op("Cast", flat, to=DOUBLE)
    centred = g.op("Sub", d, g.op("ReduceMean", d, g.axes(1), keepdims=1))
    var = g.op("ReduceMean", g.op("Mul", centred, centred), g.axes(1), keepdims=1)
    return g.op("Cast", g.op("Div", centred, g.op("Sqrt", g.op("Add", var, g.const(NORM_EPS)))), to=FLOAT)


def drop_softmax_nan_checks(model: Any) -> int:
    """Remove the exporter's `Where(IsNaN(softmax), 0, softmax)` after every Softmax (in place).

    The check zeroes rows that are fully masked; in the exported chain every window is whole and the
    attention mask (where a family takes one) is all ones, so no row is masked and no Softmax row can
    be NaN unless its input already is. Returns how many checks were removed.
    """
    nodes = list(model.graph.node)
    softmax = {n.output[0] for n in nodes if n.op_type == "Softmax"}
    isnan = {n.output[0]: n.input[0] for n in nodes if n.op_type == "IsNaN" and n.input[0] in softmax}
    rename, dropped = {}, set()
    for n in nodes:
        if n.op_type == "Where" and len(n.input) == 3 and n.input[0] in isnan and n.input[2] == isnan[n.input[0]]:
            rename[n.output[0]] = n.input[2]
            dropped.add(id(n))
    graph_outputs = {o.name for o in model.graph.output}
    if not rename or rename.keys() & graph_outputs:
        return 0
    kept = [n for n in nodes if id(n) not in dropped]
    used = {i for n in kept for i in n.input}
    kept = [n for n in kept if not (n.op_type == "IsNaN" and n.output[0] not in used)]
    for n in kept:
        for k, name in enumerate(n.input):
            if name in rename:
                n.input[k] = rename[name]
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return len(rename)


def _run(g: Graph, run: RunGraphs, r: int, subgraphs: list) -> str:
    """One run's clip probabilities `(batch, labels)` float64 (windows and folds pooled)."""
    import onnx.compose
    from onnx import helper

    flat, batch = _windows(g, INPUT, run.n, run.hop)
    values = _normalize(g, flat) if run.normalize else flat
    mask = g.op("ConstantOfShape", g.op("Shape", flat), value=helper.make_tensor("one", INT64, [1], [1])) \
        if run.takes_mask else None
    pool_shape = g.op("Concat", batch, g.const([-1, len(run.labels)], np.int64), axis=0)
    fold_probs = []
    for k, model in enumerate(run.folds):
        lean = onnx.ModelProto()
        lean.CopyFrom(model)
        drop_softmax_nan_checks(lean)
        sub = onnx.compose.add_prefix(lean, f"r{r}f{k}_")
        subgraphs.append(sub)
        feeds = {"input_values": values, "attention_mask": mask}
        for inp in sub.graph.input:
            source = feeds.get(inp.name[len(f"r{r}f{k}_"):])
            if source is None:
                raise ContractError(f"run {run.name!r} fold graph {k} takes input {inp.name!r}; "
                                    "only input_values and attention_mask can be fed")
            g.nodes.append(helper.make_node("Identity", [source], [inp.name], name=f"feed_{inp.name}"))
        probs = g.op("Cast", sub.graph.output[0].name, to=DOUBLE)                  # (B·W, labels)
        z = g.op("Reshape", g.logit(probs, WINDOW_EPS), pool_shape)                 # (B, W, labels)
        fold_probs.append(g.sigmoid(g.op("ReduceMean", z, g.axes(1), keepdims=0)))
    if len(fold_probs) == 1:
        return fold_probs[0]
    stacked = g.op("Concat", *[g.op("Unsqueeze", p, g.axes(1)) for p in fold_probs], axis=1)
    return g.sigmoid(g.op("ReduceMean", g.logit(stacked, LOGIT_EPS), g.axes(1), keepdims=0))


def _default_opset(model: Any) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _opset(runs: list[RunGraphs]) -> int:
    """One default-domain opset for every fold graph: the highest they use, at least MIN_OPSET. Graphs
    below it — the classical families', at the tree converters' opset 15 — are converted up in place
    (onnx's version converter; the `ai.onnx.ml` trees keep their own domain)."""
    from onnx import version_converter

    target = max([MIN_OPSET] + [_default_opset(m) for run in runs for m in run.folds])
    for run in runs:
        try:
            run.folds[:] = [m if _default_opset(m) == target else version_converter.convert_version(m, target)
                            for m in run.folds]
        except Exception as err:  # the converter raises its own types
            raise ContractError(f"run {run.name!r}: a fold graph cannot be converted to opset {target} ({err}); "
                                "re-run `ens finetune` with this version to re-export it") from err
    return target


def _tail(g: Graph, P: str, blend: BlendOps, prior: PriorRecord | None, opset: int, subgraphs: list) -> str:
    """Blend, calibrators and prior shift on `P` `(batch, runs, labels)` float64."""
    return prior_shift(g, blend(g, P, opset, subgraphs), prior)


def _finish(g: Graph, subgraphs: list, out: str, inputs: list[Any], n_labels: int, opset: int, ir_version: int,
            metadata: dict[str, str]) -> Any:
    """Merge the copied subgraphs and `g` into one checked model with output `probabilities`."""
    import onnx
    from onnx import helper

    g.nodes.append(helper.make_node("Identity", [out], [OUTPUT], name="ens_output"))
    nodes, inits, functions = [], [], []
    for sub in subgraphs:
        nodes.extend(sub.graph.node)
        inits.extend(sub.graph.initializer)
        functions.extend(sub.functions)
    available = {i.name for i in inputs} | {i.name for i in inits + g.initializers}
    graph = helper.make_graph(_topological(nodes + g.nodes, available), "ens_submission", inputs,
                              [helper.make_tensor_value_info(OUTPUT, DOUBLE, ["batch", n_labels])],
                              initializer=inits + g.initializers)
    imports = {"": opset}
    for sub in subgraphs:
        for o in sub.opset_import:
            imports[o.domain] = max(imports.get(o.domain, 0), o.version)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in imports.items()],
                              functions=functions, producer_name="ens")
    model.ir_version = ir_version
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    if model.ByteSize() < 2**31 - 2**24:
        onnx.checker.check_model(model)
    return model


def _waves_input() -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(INPUT, FLOAT, ["batch", "time"])


def build_model(runs: list[RunGraphs], blend: BlendOps, prior: PriorRecord | None, labels: list[str],
                metadata: dict[str, str]) -> Any:
    """The whole chain as one `onnx.ModelProto` (checked), with `metadata` as metadata_props."""
    opset = _opset(runs)
    g, subgraphs = Graph(), []
    per_run = [_run(g, run, r, subgraphs) for r, run in enumerate(runs)]
    P = g.op("Concat", *[g.op("Unsqueeze", p, g.axes(1)) for p in per_run], axis=1)  # (B, runs, labels)
    out = _tail(g, P, blend, prior, opset, subgraphs)
    ir = max(m.ir_version for run in runs for m in run.folds)
    return _finish(g, subgraphs, out, [_waves_input()], len(labels), opset, ir, metadata)


def build_run_model(run: RunGraphs) -> Any:
    """One run's windows, folds and pooling alone: waves → the run's clip probabilities (float64)."""
    opset = _opset([run])
    g, subgraphs = Graph(), []
    out = _run(g, run, 0, subgraphs)
    ir = max(m.ir_version for m in run.folds)
    return _finish(g, subgraphs, out, [_waves_input()], len(run.labels), opset, ir, {})


def build_blend_model(blend: BlendOps, prior: PriorRecord | None, n_runs: int, n_labels: int,
                      opset: int, ir_version: int) -> Any:
    """The blend, calibrators and prior alone: `P` `(batch, runs, labels)` float64 → probabilities."""
    from onnx import helper

    g, subgraphs = Graph(), []
    out = _tail(g, "P", blend, prior, opset, subgraphs)
    inputs = [helper.make_tensor_value_info("P", DOUBLE, ["batch", n_runs, n_labels])]
    return _finish(g, subgraphs, out, inputs, n_labels, opset, ir_version, {})


def _topological(nodes: list[Any], available: set[str]) -> list[Any]:
    """Nodes ordered so each comes after the producers of its inputs (ONNX requires it)."""
    producer = {out: i for i, node in enumerate(nodes) for out in node.output}
    order, state = [], [0] * len(nodes)  # 0 new, 1 visiting, 2 done
    for root in range(len(nodes)):
        stack = [(root, False)]
        while stack:
            i, expanded = stack.pop()
            if state[i] == 2:
                continue
            if expanded:
                state[i] = 2
                order.append(nodes[i])
                continue
            state[i] = 1
            stack.append((i, True))
            for name in nodes[i].input:
                j = producer.get(name)
                if name and name not in available and j is not None and state[j] == 0:
                    stack.append((j, False))
    return order


def metadata_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


METADATA_DIGEST = "metadata_sha256"  # over every other metadata entry: an edit (labels renamed) is caught on load


def metadata_digest(metadata: dict[str, str]) -> str:
    """Hex SHA-256 of an export's metadata entries (all but `METADATA_DIGEST`), keys sorted."""
    import hashlib

    rest = {k: v for k, v in metadata.items() if k != METADATA_DIGEST}
    return hashlib.sha256(metadata_json(rest).encode()).hexdigest()
