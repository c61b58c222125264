"""`ens export`: a submission's sidecar + its runs' fold graphs → one ONNX file.

The sidecar is the source: its `recipe.state` (exact fitted blend and calibrators, written by `ens
stack`), `recipe.prior` and `recipe.runs` (each run's run.json hash at stacking time). A run whose
run.json or fold ONNX changed since is refused: the export would not be the submission. Fold paths
come from untrusted run.json files and must stay inside their run folder.

`quantize="int8"`: each fold graph goes through ONNX Runtime dynamic quantization (MatMul only, int8
weights); fp32 and int8 then predict the same OOF rows (each train clip by the folds that never saw it,
then the submission's blend), and the export is refused when the competition score worsens by more
than `max_score_change`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ensemble.artifacts.records import BlendState, FoldRecord, Recipe, RunEntry, Sidecar
from ensemble.errors import ConfigError, ContractError, DataError
from ensemble.export.graph import OUTPUT, RunGraphs, build_model, metadata_json, preprocessing
from ensemble.progress import Progress
from ensemble.stack.base import BLENDERS
from ensemble.stack.onnx_ops import pipeline_ops

FORMAT_VERSION = "1"
QUANTIZE = ("none", "int8")


@dataclass
class Exported:
    """What `export_submission` wrote and measured."""

    path: Path
    runs: list[str]
    folds: int
    bytes: int
    score_check: dict[str, Any] | None = None


def _inside(base: Path, relative: str, what: str) -> Path:
    """`base / relative`, refused when it escapes `base` (symlinks resolved)."""
    path = (base / relative).resolve()
    if not path.is_relative_to(base.resolve()):
        raise ContractError(f"{what}: path {relative!r} leaves {base}")
    return path


def _fold_graph(run, info: FoldRecord, manifest_path: Path, quantize: str, tmp: Path, k: int,
                hashes: dict[str, str]) -> tuple[Any, bool, bool, int]:
    """One fold's graph, hashed and parsed from the same bytes and checked against run.json (int8 weights
    with `quantize`), with its normalisation, mask and rate; its hash goes into `hashes`."""
    import onnx

    onnx_info = info.onnx
    if onnx_info is None:
        raise ContractError(f"{manifest_path}: a fold entry has no onnx.path")
    path = _inside(run.dir, onnx_info.path, str(manifest_path))
    if not path.is_file():
        raise DataError(f"{path}: fold ONNX file missing")
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != onnx_info.sha256:
        raise ContractError(f"{path}: SHA-256 differs from the one {manifest_path} records")
    hashes[f"{run.name}/{onnx_info.path}"] = digest
    try:
        model = onnx.load_from_string(data)
        pre = json.loads({p.key: p.value for p in model.metadata_props}.get("preprocessor", "{}"))
    except Exception as err:  # protobuf and json raise their own types
        raise DataError(f"{path}: not a readable fold graph ({err})") from err
    normalize, mask = preprocessing(pre, str(path))
    if quantize == "int8":
        plain = tmp / f"{run.name}_{k}_fp32.onnx"
        plain.write_bytes(data)
        model = onnx.load(str(_quantized(plain, tmp / f"{run.name}_{k}.onnx")))
    return model, normalize, mask, int(pre.get("sampling_rate", 0))


def _load_runs(ws, entries: list[RunEntry], sidecar_path: Path, quantize: str,
               tmp: Path) -> tuple[list[RunGraphs], int, dict]:
    """Each run's fold graphs (checked against the hashes recorded at stacking and in run.json)."""
    from ensemble.backbones.predict import HOP_FRACTION
    from ensemble.artifacts.io import file_sha256
    from ensemble.artifacts.runs import RUN_MANIFEST_FILE, load_run

    runs, rates, hashes = [], set(), {}
    for entry in entries:
        run = load_run(ws, entry.run)
        manifest_path = run.dir / RUN_MANIFEST_FILE
        if file_sha256(manifest_path) != entry.manifest_sha256:
            raise ContractError(f"{manifest_path} changed since submission {sidecar_path.stem!r} was stacked "
                                "(re-predicted or re-trained?); stack again, then export")
        if run.manifest.kind != "finetune" or not isinstance(run.manifest.folds, list) or not run.manifest.folds:
            raise ContractError(f"run {run.name!r} has no ONNX folds (kind {run.manifest.kind!r}); "
                                "only submissions made of `ens finetune` runs can be exported")
        folds, fold_ids, normalize, mask, rate = [], [], False, False, 0
        for info in run.manifest.folds:
            model, normalize, mask, rate = _fold_graph(run, info, manifest_path, quantize, tmp, len(folds), hashes)
            rates.add(rate)
            folds.append(model)
            fold_ids.append(info.fold)
        hashes[f"{run.name}/{RUN_MANIFEST_FILE}"] = entry.manifest_sha256
        if run.manifest.max_seconds is None:
            raise ContractError(f"{manifest_path}: options.max_seconds missing or not a number")
        n = int(round(run.manifest.max_seconds * rate))
        runs.append(RunGraphs(run.name, folds, n, max(1, int(n * HOP_FRACTION)), normalize, mask,
                              list(run.manifest.labels), fold_ids, rate))
    if not runs:
        raise ContractError(f"{sidecar_path}: recipe names no runs")
    if len(rates) != 1:
        raise ContractError(f"runs of submission {sidecar_path.stem!r} take different sampling rates {sorted(rates)}; "
                            "one graph input takes one rate")
    return runs, rates.pop(), hashes


def _quantized(path: Path, out: Path) -> Path:
    """ONNX Runtime dynamic quantization of MatMul weights to int8."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer advises pre-processing on the root logger; library code is quiet
    try:
        quantize_dynamic(str(path), str(out), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return out


def _metadata(name: str, sidecar: Sidecar, labels: list[str], rate: int, runs: list[RunGraphs], hashes: dict,
              quantize: str) -> dict[str, str]:
    from ensemble import __version__

    recipe = {k: v for k, v in sidecar.recipe.to_dict().items() if k != "state"}
    return {"ens_export_format": FORMAT_VERSION, "ens_version": __version__, "submission": name,
            "labels": metadata_json(labels), "sampling_rate": str(rate),
            "windows": metadata_json({r.name: {"n": r.n, "hop": r.hop, "folds": len(r.folds)} for r in runs}),
            "recipe": metadata_json(recipe), "sha256": metadata_json(hashes), "quantize": quantize}


def exportable_recipe(ws, name: str, quantize: str = "none") -> tuple[Path, Path, Sidecar]:
    """Submission `name`'s CSV and sidecar paths and its sidecar, checked (hashes, task, fitted state, no
    meta-features) before anything is built or written."""
    from ensemble.artifacts.submission import read_sidecar, submission_paths

    if quantize not in QUANTIZE:
        raise ConfigError(f"--quantize must be one of {', '.join(QUANTIZE)}; got {quantize!r}")
    csv, sidecar_path = submission_paths(ws, name)
    sidecar = read_sidecar(ws, name)
    check_submission_integrity(csv, sidecar_path, sidecar)
    recipe = sidecar.recipe
    if not recipe.task_type.label_by_label:  # the graph pools and blends per label
        raise ConfigError(f"{sidecar_path}: a multiclass submission cannot be exported yet (the exported chain "
                          "pools and blends label by label); its runs' fold graphs are in models/<run>/fold*/model.onnx")
    if recipe.state is None:
        raise ContractError(f"{sidecar_path}: recipe.state holds no fitted blend (a hand-made submission?); stack it "
                            "with ens to export it")
    if recipe.state.meta_columns or recipe.meta_features:
        columns = ", ".join(recipe.meta_columns) or "meta-features"
        raise ConfigError(f"submission {name!r} blends per-clip meta-features ({columns}), which an exported graph "
                          "cannot compute yet (the voice-activity detector is not in it); export a submission "
                          "stacked without them (`ens stack … --meta none`)")
    return csv, sidecar_path, sidecar


def build_submission_model(ws, name: str, quantize: str = "none") -> tuple[Any, list[RunGraphs], Recipe]:
    """The ONNX model of submission `name` (not written), the runs in it, and the recipe it was built
    from (its state re-indexed to those runs)."""
    from ensemble.artifacts.io import file_sha256

    csv, sidecar_path, sidecar = exportable_recipe(ws, name, quantize)
    recipe = sidecar.recipe
    labels, entries = list(recipe.labels), recipe.runs
    keep, state = used_runs(len(entries), recipe.state)  # a run the blend ignores need not be exportable
    with tempfile.TemporaryDirectory(prefix="ens-export-") as tmp:
        runs, rate, hashes = _load_runs(ws, [entries[r] for r in keep], sidecar_path, quantize, Path(tmp))
        for run in runs:
            if run.labels != labels:
                raise ContractError(f"run {run.name!r} has labels {run.labels}; submission {name!r} has {labels}")
        hashes["sidecar"] = file_sha256(sidecar_path)
        hashes["submission_csv"] = file_sha256(csv)
        metadata = _metadata(name, sidecar, labels, rate, runs, hashes, quantize)
        model = build_model(runs, functools.partial(pipeline_ops, state), recipe.prior, labels, metadata)
    return model, runs, replace(recipe, state=state)


def check_submission_integrity(csv: Path, sidecar_path: Path, sidecar: Sidecar) -> None:
    """The CSV and the recipe are the ones `ens stack` wrote: their SHA-256s match what the sidecar recorded."""
    from ensemble.artifacts.io import file_sha256
    from ensemble.artifacts.submission import recipe_sha256

    if sidecar.csv_sha256 is not None and file_sha256(csv) != sidecar.csv_sha256:
        raise ContractError(f"{csv}: SHA-256 differs from the csv_sha256 {sidecar_path} records (the CSV was edited "
                            "or replaced after stacking); stack it again, then export")
    if sidecar.recipe_sha256 is not None and recipe_sha256(sidecar.recipe) != sidecar.recipe_sha256:
        raise ContractError(f"{sidecar_path}: its recipe differs from the one stacked (recipe_sha256 does not match; "
                            "edited after stacking?); stack it again, then export")


def used_runs(n_runs: int, state: BlendState) -> tuple[list[int], BlendState]:
    """Indices of the runs the blend reads (the method's `select_runs`: `single`'s run, the runs with a
    weight, else all) and the state re-indexed to them."""
    keep, blender = BLENDERS.get(state.method).select_runs(state.blender)
    return keep, (state if blender is state.blender else replace(state, blender=blender))


def save_model(model: Any, path: Path) -> int:
    """Write `model` atomically (weights in `<file>.data` beside it when over protobuf's 2 GB)."""
    import onnx

    from ensemble.artifacts.io import atomic_path

    from ensemble.export.graph import METADATA_DIGEST, metadata_digest

    path = Path(path)
    props = {p.key: p.value for p in model.metadata_props if p.key != METADATA_DIGEST}
    del model.metadata_props[:]
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    model.metadata_props.add(key=METADATA_DIGEST, value=metadata_digest(props))  # checked by `ensemble.load`
    big = model.ByteSize() >= 2**31 - 2**24
    with atomic_path(path) as tmp:
        if big:  # the weights file is written in place; the graph that points at it lands last
            onnx.save_model(model, str(tmp), save_as_external_data=True, location=f"{path.name}.data")
        else:
            onnx.save_model(model, str(tmp))
    return path.stat().st_size


def _session(model: Any) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _oof_tensor(runs: list[RunGraphs], waves_of: Callable[[int], tuple[np.ndarray, list[np.ndarray]]],
                n_rows: int, n_labels: int) -> np.ndarray:
    """`(rows, runs, labels)`: each row predicted by the fold graph of each run that never trained on it."""
    from ensemble.export.graph import build_run_model
    from ensemble.export.runtime import predict_grouped

    P = np.full((n_rows, len(runs), n_labels), np.nan)
    for r, run in enumerate(runs):
        for fold, graph in zip(run.fold_ids, run.folds):
            rows, waves = waves_of(fold)
            if len(rows):
                one = RunGraphs(run.name, [graph], run.n, run.hop, run.normalize, run.takes_mask, run.labels, [fold],
                                run.rate)
                P[rows, r] = predict_grouped(_session(build_run_model(one)), waves, n_labels)
    return P


def _interleaved_speed(chains: dict[str, Path], sample: list[np.ndarray], rounds: int = 3) -> dict[str, Any]:
    """Median clips/s of each exported chain on the same clips, rounds interleaved (A, B, then B, A, …)."""
    import time

    from ensemble.export.runtime import load

    models = {k: load(v) for k, v in chains.items()}
    times: dict[str, list[float]] = {k: [] for k in models}
    order = list(models)
    for k in order:
        models[k].predict(sample[:2])  # warm-up
    for r in range(rounds):
        for k in (order if r % 2 == 0 else order[::-1]):
            t0 = time.perf_counter()
            models[k].predict(sample)
            times[k].append(len(sample) / max(time.perf_counter() - t0, 1e-9))
    return {**{f"{k}_clips_per_s": float(np.median(v)) for k, v in times.items()}, "speed_clips": len(sample)}


def quantization_check(ws, comp, recipe: Recipe, variants: dict[str, list[RunGraphs]],
                       chains: dict[str, Path], rows: int, seed: int,
                       progress: Progress | None = None) -> dict[str, Any]:
    """The competition score of the fp32 and int8 chains on OOF rows, and their speed.

    Score: seeded train rows, each predicted by every run's fold graph that never trained on it (as
    `ens oof` does), then the submission's blend, calibrators and prior — the same OOF view the
    stacker had, so neither score is in-sample for the fold models. Speed: the whole exported chains
    on the same clips, interleaved (fp32, int8, then int8, fp32, …), median clips/s over rounds.
    """
    from ensemble.export.graph import build_blend_model
    from ensemble.artifacts.folds import load_folds
    from ensemble.metrics.dacon import MetricError, competition_score

    folds = load_folds(ws)
    labels = list(recipe.labels)
    pick = np.sort(np.random.default_rng(seed).permutation(len(folds))[: max(1, rows)])
    ids, fold_of = folds["id"].astype(str).to_numpy()[pick], folds["fold"].to_numpy()[pick]
    y = folds[labels].to_numpy(dtype=np.float64)[pick]
    path_of = dict(zip(comp.train["id"].astype(str), comp.train["path"]))
    fp32_runs = variants["fp32"]
    loaded: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}

    def waves_of(fold: int) -> tuple[np.ndarray, list[np.ndarray]]:
        if fold not in loaded:  # one fold's clips in memory at a time
            from ensemble.audio.load import load_audio

            loaded.clear()
            where = np.flatnonzero(fold_of == fold)
            loaded[fold] = (where, [load_audio(comp.audio_path(path_of[i]), fp32_runs[0].rate) for i in ids[where]])
        return loaded[fold]

    out: dict[str, Any] = {"rows": int(len(pick))}
    sample: list[np.ndarray] = []
    for step, (key, runs) in enumerate(variants.items()):
        if progress:
            progress({"stage": "int8 score check", "done": step, "total": len(variants) + 1})
        P = _oof_tensor(runs, waves_of, len(pick), len(labels))
        if np.isnan(P).any():
            raise ContractError("the runs' folds do not cover the workspace's folds file; the score check needs them all")
        opset = max(o.version for o in runs[0].folds[0].opset_import if o.domain in ("", "ai.onnx"))
        blend = _session(build_blend_model(functools.partial(pipeline_ops, recipe.state), recipe.prior, len(runs),
                                           len(labels), opset, runs[0].folds[0].ir_version))
        p = blend.run([OUTPUT], {"P": P})[0]
        try:
            out[key] = competition_score(y, p, labels).score
        except MetricError as err:
            raise DataError(f"int8 score check on {len(pick)} OOF rows failed: {err}; use more --check-rows") from err
        out[f"{key}_oof"] = p
        if not sample:
            sample = [w for _, ws_ in loaded.values() for w in ws_][:32]
    out["change"] = out["int8"] - out["fp32"]
    out["max_abs_diff"] = float(np.abs(out.pop("int8_oof") - out.pop("fp32_oof")).max())
    out.update(_interleaved_speed(chains, sample))
    if progress:
        progress({"stage": "int8 score check", "done": len(variants) + 1, "total": len(variants) + 1})
    return out


@dataclass(frozen=True)
class Int8Check:
    """How `--quantize int8` is checked: on `rows` seeded OOF clips, refused beyond `max_score_change`."""

    max_score_change: float = 0.002
    rows: int = 2000
    seed: int = 0


def export_submission(ws, name: str, out: Path, *, quantize: str = "none", force: bool = False,
                      comp=None, int8: Int8Check = Int8Check(), progress: Progress | None = None) -> Exported:
    """Write submission `name` as one ONNX file at `out`; int8 only when the score check allows it.

    `out` is locked for this writer (a second `ens export` to it is refused); `force` replaces only a file
    an earlier `ens export` wrote."""
    from ensemble.artifacts.io import recover_dir
    from ensemble.artifacts.locking import lock_beside, name_lock

    out = Path(out)
    _check_replaceable(out, force)
    exportable_recipe(ws, name, quantize)  # a submission that cannot be exported leaves no folder or lock
    out.parent.mkdir(parents=True, exist_ok=True)
    with name_lock(lock_beside(out), f"export {out}"):
        recover_dir(out)  # temp files of a killed export
        _check_replaceable(out, force)
        return _export(ws, name, out, quantize, comp, int8, progress)


def _check_replaceable(out: Path, force: bool) -> None:
    """An existing `out` is replaced only with `force`, and only when it is an `ens export` file."""
    from ensemble.errors import ExistsError

    if not (out.exists() or out.is_symlink()):
        return
    if not force:
        raise ExistsError(f"{out} exists; pass --force to overwrite it")
    if out.is_symlink() or not out.is_file() or not _is_export(out):
        raise ExistsError(f"{out} was not written by ens; refusing to replace it")


def _is_export(path: Path) -> bool:
    """Whether `path` is an ONNX file whose metadata says `ens export` wrote it."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf raises its own types for a file that is not ONNX
        return False
    return any(p.key == "ens_export_format" for p in model.metadata_props)


def _export(ws, name: str, out: Path, quantize: str, comp, int8: Int8Check, progress: Progress | None) -> Exported:
    """`export_submission` under the output's lock."""
    if quantize == "none":
        model, runs, _ = build_submission_model(ws, name)
        size = save_model(model, out)
        return Exported(out, [r.name for r in runs], sum(len(r.folds) for r in runs), size)
    if comp is None:
        raise ConfigError("--quantize int8 needs the competition folder (--data) for its score check")
    model_q, runs, recipe = build_submission_model(ws, name, quantize)
    model_f, runs_f, _ = build_submission_model(ws, name)
    from ensemble.artifacts.io import staged_dir

    tmp = staged_dir(out)  # `.NAME.new-PID-…`: what a killed export leaves is swept by the next one
    try:
        fp32, int8_path = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        save_model(model_f, fp32)
        save_model(model_q, int8_path)
        max_score_change = int8.max_score_change
        check = quantization_check(ws, comp, recipe, {"fp32": runs_f, "int8": runs}, {"fp32": fp32, "int8": int8_path},
                                   int8.rows, int8.seed, progress)
        check["max_change"] = max_score_change
        check["fp32_bytes"], check["int8_bytes"] = fp32.stat().st_size, int8_path.stat().st_size
        if check["change"] > max_score_change:
            raise ContractError(f"int8 worsens the OOF score on {check['rows']} train clips by {check['change']:+.5f} "
                                f"(fp32 {check['fp32']:.5f}, int8 {check['int8']:.5f}; clips/s fp32 {check['fp32_clips_per_s']:.1f}, "
                                f"int8 {check['int8_clips_per_s']:.1f}) > {max_score_change}; "
                                "export without --quantize (or raise --max-score-change)")
        model_q.metadata_props.add(key="quantization_check", value=metadata_json(check))
        size = save_model(model_q, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Exported(out, [r.name for r in runs], sum(len(r.folds) for r in runs), size, check)
