"""Mutation check: each entry breaks one behaviour on purpose; the tests selected for it must fail.

    python bench/mutations.py            # every mutation
    python bench/mutations.py -k prior   # those whose name contains "prior"
    python bench/mutations.py --list

For each mutation the repository is copied to a temporary folder (the working tree is never edited),
the exact `old` text is replaced by `new` in one file there, and the mutation's test selection runs in
the copy (`PYTHONPATH` and the working directory point at it). The selection is first run on an
unmutated copy, so a failure is the mutation's doing. Exit code 1 when a mutation SURVIVED (its tests
passed), when its `old` text is not found exactly once (STALE: the code moved on, update the entry), or
when its selection collects no test (NO TESTS). Run on demand, not in every CI run: about a minute
per mutation on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IGNORE = shutil.ignore_patterns(".git", ".venv", "demo", "__pycache__", ".pytest_cache", ".hypothesis", "*.egg-info")


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str            # relative to the repository root
    old: str             # exact text, found exactly once
    new: str
    tests: tuple[str, ...]  # pytest arguments: node ids, files, `-k` expressions


MUTATIONS = [
    Mutation("stack ignores --test-prior", "ensemble/stack/pipeline.py",
             "    method, meta, test_prior = request.method, inputs.meta, request.prior",
             '    method, meta, test_prior = request.method, inputs.meta, "none"',
             ("tests/test_stack_cli.py::test_numeric_test_prior_shifts_every_logit_by_hand",)),
    Mutation("check_compatible drops the data-fingerprint check", "ensemble/artifacts/runs.py",
             "made_on[key] != ref_data[key]:", "False:",
             ("tests/test_bad_inputs_data.py", "-k", "other_train_csv or other_test_csv or pairwise")),
    Mutation("a lone run is not checked against the workspace (old gather)", "ensemble/stack/inputs.py",
             "check_compatible(runs, data=comp.fingerprint(), folds=current_folds_fingerprint(ws), labels=comp.labels)",
             "check_compatible(runs)", ("tests/test_bad_inputs_data.py", "-k", "lone_run")),
    Mutation("fold test predictions averaged as probabilities", "ensemble/task.py",
             "        return self.inverse_link(self.link(p, self.blend_eps).mean(axis=-1))", "        return p.mean(axis=-1)",
             ("tests/test_bad_inputs_data.py", "-k", "logits")),
    Mutation("resume unpickles trainer.pt", "ensemble/backbones/train.py", "weights_only=True)", "weights_only=False)",
             ("tests/test_bad_inputs_data.py", "-k", "resume_crafted")),
    Mutation("paths may leave the competition folder", "ensemble/artifacts/competition.py",
             "        if os.path.commonpath([inside, real]) != inside:\n            raise DataError(f\"{source}: id",
             "        if False:\n            raise DataError(f\"{source}: id",
             ("tests/test_bad_inputs_data.py", "-k", "path_dot or symlink")),
    Mutation("unlabeled_data/ files may leave the competition folder", "ensemble/artifacts/competition.py",
             "            if os.path.commonpath([inside, real]) != inside:\n                raise DataError(f\"{p}: resolves",
             "            if False:\n                raise DataError(f\"{p}: resolves",
             ("tests/test_hostile_inputs.py", "-k", "unlabeled_symlinks")),
    Mutation("absolute paths accepted", "ensemble/artifacts/competition.py", "        if os.path.isabs(rel):", "        if False:",
             ("tests/test_bad_inputs_data.py", "-k", "absolute")),
    Mutation("header-only CSVs accepted", "ensemble/artifacts/competition.py", "    if df.empty:\n", "    if False:\n",
             ("tests/test_bad_inputs_data.py", "-k", "header_only")),
    Mutation("audio not checked before compute", "ensemble/artifacts/audio_check.py", "    if problems:\n", "    if False:\n",
             ("tests/test_bad_inputs_data.py", "-k", "audio")),
    Mutation("ens.toml remembered before the folder validated", "ensemble/artifacts/competition.py",
             "comp = Competition.load(ws.data_dir(data, remember=False), task).validate()",
             "comp = Competition.load(ws.data_dir(data, remember=True), task).validate()",
             ("tests/test_bad_inputs_data.py", "-k", "header_only or path_ or audio")),
    Mutation("oof rows not validated before aligning", "ensemble/stack/inputs.py",
             "        validate_oof(frame, comp.labels, folds, run.dir / OOF_FILE)\n", "        pass\n", ("tests/test_bad_inputs_data.py", "-k", "oof_")),
    Mutation("test rows not validated before aligning", "ensemble/stack/inputs.py",
             "        validate_test(frame, comp.labels, comp.test_ids, run.dir / TEST_FILE)\n", "",
             ("tests/test_bad_inputs_data.py", "-k", "test_parquet")),
    Mutation("outputs keep mkstemp's 0600", "ensemble/artifacts/io.py", "    os.chmod(tmp, umask_mode(directory=False))", "    pass",
             ("tests/test_bad_inputs_data.py", "-k", "umask")),
    Mutation("libsndfile's reason passed on for a corrupt file", "ensemble/audio/load.py",
             'return DataError(f"audio file {path} cannot be decoded', 'return DataError(f"audio file {path} {err}',
             ("tests/test_bad_inputs_data.py", "-k", "stderr_clean")),
    Mutation("validate_submission drops the row-order check", "ensemble/artifacts/submission.py",
             "    if order.any():", "    if False:",
             ("tests/test_import_score_board.py::test_submission_rows_must_be_in_sample_order",)),
    Mutation("run and submission names not validated", "ensemble/artifacts/workspace.py",
             'if not name or name.startswith(".") or not set(name) <= allowed:', "if False:",
             ("tests/test_bad_inputs_stack.py", "-k", "name")),
    Mutation("board ranks by clean CV, not the test-like score", "ensemble/commands/board.py",
             '    return "cv_testlike" if scored["cv_testlike"].notna().any() else "cv"',
             '    return "cv"',
             ("tests/test_import_score_board.py::test_board_ranks_by_the_test_like_score_where_there_is_one",)),
    Mutation("the written submission's recipe is not shown in words", "ensemble/cli/present.py",
             "lines.extend(f\"  {line}\" for line in recipe_lines(recipe))", "lines.extend([])",
             ("tests/test_cli_ux.py::test_written_submission_shows_its_recipe_in_words",)),
    Mutation("the board leaves partial runs out", "ensemble/commands/board.py",
             "    for partial in partial_runs(ws):  # unranked", "    for partial in []:  # unranked",
             ("tests/test_cli_ux.py::test_board_legend_names_the_ranking_column_and_lists_partial_runs",)),
    Mutation("submission created without the lock", "ensemble/artifacts/submission.py",
             "    with exclusive(submission_lock(ws)):\n        cleaned = tidy(ws, name)",
             "    if True:\n        cleaned = tidy(ws, name)",
             ("tests/test_faults.py::test_two_writers_of_one_submission_in_one_process_exactly_one_wins",
              "tests/test_faults.py::test_two_writers_of_one_name_exactly_one_wins")),
    Mutation("lone CSV or sidecar not cleaned", "ensemble/artifacts/submission.py",
             "    if csv.is_file() != meta.is_file():", "    if False:",
             ("tests/test_faults.py::test_lone_files_and_temp_litter_are_removed_with_a_warning",)),
    Mutation("temp litter not swept from submissions/", "ensemble/artifacts/submission.py",
             "    swept = sweep_tmp(ws.submissions_dir)", "    swept = []",
             ("tests/test_faults.py::test_lone_files_and_temp_litter_are_removed_with_a_warning",)),
    Mutation("sidecar written after the CSV (CSV no longer the commit point)", "ensemble/artifacts/submission.py",
             "            os.replace(meta_tmp, meta)\n            os.replace(csv_tmp, csv)  # the commit point\n",
             "            os.replace(csv_tmp, csv)  # the commit point\n            os.replace(meta_tmp, meta)\n",
             ("tests/test_faults.py::test_stack_killed_at_every_rename",
              "tests/test_faults.py::test_forced_replace_killed_at_every_rename_leaves_old_new_or_nothing")),
    Mutation("readers accept a lone sidecar", "ensemble/artifacts/submission.py",
             "    if not (meta.is_file() and csv.is_file()):", "    if not meta.is_file():",
             ("tests/test_faults.py::test_stack_killed_at_every_rename",)),
    Mutation("ens stack checks the name only after reading the runs", "ensemble/cli/stack.py",
             "        check_free(Workspace.resolve(workspace), request.out_name, force)", "        pass",
             ("tests/test_bad_inputs_stack.py", "-k", "refused-before")),
    Mutation("run_stack checks the name only after stacking", "ensemble/commands/stack.py",
             "        check_free(ws, request.out_name, request.force)", "        pass",
             ("tests/test_cli_ux.py", "-k", "taken_name")),
    Mutation("ens oof leaves temp litter in the run folder", "ensemble/commands/oof.py",
             "        sweep_tmp(run.dir)  # a killed", "        pass  # a killed",
             ("tests/test_finetune.py::test_oof_with_onnx_runtime_reproduces_the_predictions",)),
    Mutation("finetune redoes a fold over its temp litter", "ensemble/commands/finetune.py",
             "    sweep_tmp(ctx.run_dir / f\"fold{k}\")", "    pass",
             ("tests/test_faults.py::test_finetune_killed_at_rename_n_resumes_to_the_same_predictions[8]",)),
    Mutation("finetune resumes over the run folder's temp litter", "ensemble/commands/finetune.py",
             "        sweep_tmp(run_dir)  # a killed", "        pass  # a killed",
             ("tests/test_faults.py::test_finetune_killed_at_rename_n_resumes_to_the_same_predictions[12]",)),
    # what ens decides for the user (issue 8): each rule falls back to doing nothing unless shown to help
    Mutation("a blend is chosen whose gain interval reaches zero", "ensemble/stack/decide.py",
             'passed = bool(g["lo"] > 0)', 'passed = bool(g["gain"] > 0)',
             ("tests/test_stack_decide.py",)),
    Mutation("a blend worse on the clean rows is chosen", "ensemble/stack/decide.py",
             'passed = bool(h["hi"] >= 0)', "passed = True", ("tests/test_stack_decide.py",)),
    Mutation("calibrate auto keeps a calibrator without a credible gain", "ensemble/stack/calibration.py",
             '    if g["lo"] > 0:\n', '    if g["gain"] > 0:\n', ("tests/test_stack_decide.py",)),
    Mutation("EM prior applied under covariate shift", "ensemble/stack/prior.py",
             "    if distance > noise:", "    if False:", ("tests/test_stack_decide.py",)),
    Mutation("EM prior applied when EM and BBSE disagree", "ensemble/stack/prior.py",
             "    if abs(em - bbse) > tolerance:", "    if False:", ("tests/test_stack_decide.py",)),
    Mutation("density-ratio weights ignored by the calibrators", "ensemble/stack/nested.py",
             "        w = None if cache.weights is None else cache.weights[train]\n        guard = None",
             "        w = None\n        guard = None",
             ("tests/test_stack_decide.py",)),
    Mutation("density-ratio weights ignored by the multiclass temperature", "ensemble/stack/nested.py",
             "            w = None if cache.weights is None else cache.weights[train]\n            cal, note = fit_temperature",
             "            w = None\n            cal, note = fit_temperature",
             ("tests/test_multiclass.py", "-k", "density_ratio")),
    Mutation("runs that predicted an older test-like set are stacked", "ensemble/stack/inputs.py",
             "            if made_for is not None and made_for != current:", "            if False:",
             ("tests/test_testlike_rebuilt.py",)),
    Mutation("decode cache trusts any entry (no dtype/shape/finite check)", "ensemble/audio/cache.py",
             "    if not isinstance(wave, np.ndarray) or wave.dtype != np.float32 or wave.ndim != 1 or not np.isfinite(wave).all():",
             "    if False:", ("tests/test_audio_cache.py", "-k", "damaged")),
    Mutation("ens oof decodes the test split again in every fold", "ensemble/commands/oof.py",
             "test_wave_store(comp, sr, decoded), background_loader", "test_wave_store(comp, sr, decoded, cache=False), background_loader",
             ("tests/test_finetune.py", "-k", "decodes_each_clip_once")),
    Mutation("DDP: every process trains on the same share of the batch", "ensemble/backbones/train.py",
             "mine = slice(self.shard.rank, None, self.shard.world)", "mine = slice(0, None, self.shard.world)",
             ("tests/test_distributed.py", "-k", "gloo")),
    Mutation("a meta-feature column that copies a label is let through", "ensemble/stack/metafeatures.py",
             "if x[pos].min() > x[neg].max() or x[pos].max() < x[neg].min():", "if False:",
             ("tests/test_stack_meta.py", "-k", "copies")),
    Mutation("meta-features of every row fit each outer fold", "ensemble/stack/nested.py",
             "meta = None if self.meta is None else self.meta[keep]", "meta = self.meta",
             ("tests/test_stack_meta.py", "-k", "spy")),
    Mutation("ens export lets a meta-feature submission through", "ensemble/commands/export.py",
             "if recipe.state.meta_columns or recipe.meta_features:", "if False:",
             ("tests/test_features_vad.py", "-k", "stack_with_meta")),
    Mutation("a guard gain that cannot be scored counts as accepted", "ensemble/stack/calibration.py",
             "        if other is None or other <= 0:", "        if other is not None and other <= 0:",
             ("tests/test_stack_decide.py", "-k", "guard_gain_cannot_be_scored")),
    Mutation("the multiclass temperature is always kept", "ensemble/stack/multiclass.py",
             '            method = "temperature" if g["lo"] > 0 else "none"', '            method = "temperature"',
             ("tests/test_multiclass.py", "-k", "no_temperature")),
    # the fine-tuning knobs (tests/test_knobs.py, tests/test_tune.py)
    Mutation("--model-config overrides are dropped", "ensemble/backbones/overrides.py",
             "    checked = check_overrides(config, overrides)\n    if not checked:",
             "    checked = check_overrides(config, overrides)\n    if True:",
             ("tests/test_knobs.py", "-k", "reach_the_built_model")),
    Mutation("an unknown config key is accepted", "ensemble/backbones/overrides.py", "        if key not in known:",
             "        if False:", ("tests/test_knobs.py", "-k", "bad_config_overrides")),
    Mutation("first:N leaves the first layers trainable", "ensemble/backbones/freezing.py",
             "        for module in [*stack[n:], *after]:", "        for module in [*stack, *after]:",
             ("tests/test_knobs.py", "-k", "frozen_weights")),
    Mutation("the tri-stage hold is skipped", "ensemble/backbones/schedules.py",
             "    if step < warm + held:", "    if False:", ("tests/test_knobs.py", "-k", "each_schedule")),
    Mutation("gradients are never clipped", "ensemble/backbones/train.py",
             "        if self.config.max_grad_norm:", "        if False:", ("tests/test_knobs.py", "-k", "clipping")),
    Mutation("stats pooling averages the padding too", "ensemble/backbones/pooling.py",
             "    return (hidden * frames.unsqueeze(-1)).sum(dim=1) / frames.sum(dim=1, keepdim=True).clamp(min=1.0)",
             "    return hidden.mean(dim=1)", ("tests/test_knobs.py", "-k", "masked_pooling")),
    Mutation("a tune trial scores the rows it trained on", "ensemble/commands/finetune.py",
             "            held = trained.data.held_idx", "            held = trained.data.train_idx",
             ("tests/test_tune.py", "-k", "trains_on_fold_rows")),
    Mutation("the decision rule tests each challenger at 95 % (no Bonferroni)", "ensemble/stack/decide.py",
             "    return ALPHA / max(1, n_challengers)", "    return ALPHA",
             ("tests/test_stack_decide.py", "-k", "corrected_for_the_number")),
    Mutation("the decision rule writes the worst challenger that passes", "ensemble/stack/decide.py",
             "    chosen = min(winners, key=lambda i: score[i]) if winners else base",
             "    chosen = max(winners, key=lambda i: score[i]) if winners else base",
             ("tests/test_stack_decide.py", "-k", "best_scored")),
    Mutation("EM and BBSE must agree within 0.05 whatever BBSE's noise", "ensemble/stack/prior.py",
             "    tolerance = max(DISAGREE_WARN, float(norm.isf(MIXTURE_ALPHA / 2)) * bbse_error)",
             "    tolerance = DISAGREE_WARN",
             ("tests/test_stack_decide.py", "-k", "few_hundred_test_rows or beyond_bbse_noise")),
    Mutation("each run is tested at the blend's EM prior", "ensemble/stack/prior.py",
             "mixture_ks(R_oof[:, r, j], y_oof[:, j], R_test[:, r, j], None, tests)",
             "mixture_ks(R_oof[:, r, j], y_oof[:, j], R_test[:, r, j], em[j], tests)",
             ("tests/test_stack_decide.py", "-k", "any_label_shift_fits")),
    Mutation("--calibrate auto ignores the clean rows", "ensemble/stack/pipeline.py",
             '    if fit_on == "testlike":\n        guard = ', '    if False:\n        guard = ',
             ("tests/test_stack_decide.py", "-k", "only_the_test_like_rows_want")),
    Mutation("the report restacks a recipe on the workspace's metric", "ensemble/stack/request.py",
             "metric=recipe.metric,", "metric=None,", ("tests/test_report.py", "-k", "other_metric")),
    Mutation("a run.json or sidecar with an unknown key is read", "ensemble/artifacts/records.py",
             "    if unknown:\n        raise DataError(f\"{source}: unknown key {unknown[0]!r}; a ",
             "    if False:\n        raise DataError(f\"{source}: unknown key {unknown[0]!r}; a ",
             ("tests/test_bad_inputs_stack.py", "tests/test_import_score_board.py", "-k",
              "unknown-key or off_its_schema")),
    Mutation("a metrics object with an unknown key is read", "ensemble/artifacts/records.py",
             "        if unknown:\n            raise DataError(f\"{source}: unknown key {unknown[0]!r} in metrics",
             "        if False:\n            raise DataError(f\"{source}: unknown key {unknown[0]!r} in metrics",
             ("tests/test_records.py", "-k", "malformed_cv_scores")),
    Mutation("ONNX exports keep this checkout's source paths", "ensemble/backbones/onnx_export.py",
             "        _drop_source_traces(model)", "        pass", ("tests/test_onnx_export.py", "-k", "no_trace")),
    Mutation("a task unpickles to a copy (Ray workers lose every identity check)", "ensemble/task.py",
             "    def __reduce__(self) -> tuple:", "    def _reduce(self) -> tuple:",
             ("tests/test_task.py", "-k", "another_process")),
    Mutation("a CPU-trained fold predicts with torch, not its ONNX graph", "ensemble/commands/finetune.py",
             '    if result.device != "cpu":', "    if True:",
             ("tests/test_finetune.py::test_oof_with_onnx_runtime_reproduces_the_predictions",)),
    Mutation("the d-vector front end loads random weights", "ensemble/backbones/voice_embedding.py",
             "        self.load_state_dict(weights)", "        pass",
             ("tests/test_voice_embedding.py", "-k", "tell_recorded_voices")),
    Mutation("NaN pseudo-targets count as negatives", "ensemble/task.py",
             "            known = ~np.isnan(y[:, j])\n", "            known = np.ones(len(y), dtype=bool)\n",
             ("tests/test_pseudo_labels.py", "-k", "nan_targets")),
    Mutation("pseudo-labels at any confidence", "ensemble/task.py",
             "np.where(p >= confidence, 1.0, np.where(p <= 1.0 - confidence, 0.0, np.nan))",
             "np.where(p >= 0.5, 1.0, 0.0)", ("tests/test_pseudo_labels.py",)),
    Mutation("multiclass pseudo-labels at any confidence", "ensemble/task.py",
             "        sure = p.max(axis=1) >= confidence\n", "        sure = np.ones(len(p), dtype=bool)\n",
             ("tests/test_pseudo_labels.py", "-k", "keep_only_confident")),
    Mutation("--pseudo-label accepted for a neural family", "ensemble/commands/finetune.py",
             "    if not is_classical(opts.model):\n        raise ConfigError(f\"--pseudo-label",
             "    if False:\n        raise ConfigError(f\"--pseudo-label", ("tests/test_pseudo_labels.py", "-k", "checked")),
    Mutation("pitch from the cepstrum's first lag", "ensemble/backbones/features.py",
             "log_f0 = torch.log(self.spec.sampling_rate / (lag.to(power.dtype) + self.first_lag))",
             "log_f0 = torch.log(self.spec.sampling_rate / (lag.to(power.dtype) + 1.0))",
             ("tests/test_classical.py", "-k", "pitch")),
    Mutation("pitch steps over every frame, voiced or not", "ensemble/backbones/features.py",
             "        pairs = voiced[:, 1:] * voiced[:, :-1]\n", "        pairs = torch.ones_like(voiced[:, 1:])\n",
             ("tests/test_classical.py", "-k", "pitch")),
    Mutation("folds of two model definitions assemble into one run", "ensemble/commands/finetune.py",
             "    _check_same_model(fold_info, run_dir)\n", "",
             ("tests/test_classical.py", "-k", "features_upgrade")),
]


def copy_repo(dest: Path) -> Path:
    shutil.copytree(REPO, dest, ignore=IGNORE)
    return dest


def apply(m: Mutation, root: Path) -> int:
    """Apply the mutation in `root`; returns how many times its old text was found (1 to apply)."""
    path = root / m.file
    text = path.read_text() if path.is_file() else ""
    count = text.count(m.old)
    if count == 1:
        path.write_text(text.replace(m.old, m.new))
    return count


def run_tests(root: Path, tests: tuple[str, ...]) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("ENS_WORKSPACE", None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return done.returncode, time.perf_counter() - started


def check(m: Mutation, scratch: Path) -> tuple[str, float]:
    """One mutation: its tests on a clean copy (they must pass), then on the mutated copy."""
    root = copy_repo(scratch / "repo")
    count = (root / m.file).read_text().count(m.old) if (root / m.file).is_file() else 0
    if count != 1:
        return f"STALE (old text found {count} times)", 0.0
    base, _ = run_tests(root, m.tests)
    if base == 5:
        return "NO TESTS (the selection collects nothing)", 0.0
    if base != 0:
        return f"BASELINE FAILS (pytest exit {base} without the mutation)", 0.0
    apply(m, root)
    code, seconds = run_tests(root, m.tests)
    return ("killed" if code == 1 else f"SURVIVED (pytest exit {code})"), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-k", default="", help="only mutations whose name contains this text")
    parser.add_argument("--list", action="store_true", help="list the mutations and their tests")
    args = parser.parse_args(argv)
    chosen = [m for m in MUTATIONS if args.k.lower() in m.name.lower()]
    if args.list:
        for m in chosen:
            print(f"{m.name} | {m.file} | {' '.join(m.tests)}")
        return 0
    rows = []
    for m in chosen:
        with tempfile.TemporaryDirectory(prefix="ens-mutation-") as scratch:
            outcome, seconds = check(m, Path(scratch))
        rows.append((m.name, outcome, seconds))
        print(f"{m.name}: {outcome}", file=sys.stderr, flush=True)
    width = max(len(r[0]) for r in rows)
    print(f"| {'mutation':<{width}} | outcome | seconds |\n|{'-' * (width + 2)}|---|---|")
    for name, outcome, seconds in rows:
        print(f"| {name:<{width}} | {outcome} | {seconds:.0f} |")
    return 0 if all(outcome == "killed" for _, outcome, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
