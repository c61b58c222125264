"""`ens tune`: a Bayesian search (Optuna's TPE) over the fine-tuning knobs, on the workspace's own folds.

Each trial trains the model with drawn options on the training rows of a subset of the shared folds
and scores its predictions of those folds' held-out rows with the chosen metric (the model never saw
them; `finetune.fit_held_out`). The study lives in `tune/<study>.db` (SQLite) under the workspace: a
killed or finished search resumes where it stopped, and `--trials` is the total the study should
hold. The best trial's options are written as a TOML file that `ens finetune --config` reads.

Choosing among trials by their held-out score makes that score optimistic for the winner (ten draws,
one maximum): compare the written options with the defaults on a full `ens finetune` run, not by the
trial score.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ensemble.artifacts.competition import Competition
from ensemble.artifacts.folds import ensure_folds, folds_fingerprint
from ensemble.artifacts.io import atomic_path
from ensemble.artifacts.locking import exclusive
from ensemble.artifacts.workspace import Workspace, check_name
from ensemble.commands.finetune import FinetuneOptions, fit_held_out
from ensemble.commands.tune.space import SEARCHED, describe_space, suggest
from ensemble.errors import ConfigError, DataError
from ensemble.progress import Progress, tagged

TUNE_DIR = "tune"
TOML_KEYS = ("epochs", "lr", "batch_size", "grad_accum", "max_seconds", "augment", "seed", "freeze", "schedule",
             "warmup", "hold", "weight_decay", "max_grad_norm", "pooling")


@dataclass
class TuneOptions:
    """How to search: trials in the study, folds per trial, the metric, the study's name and seed."""

    trials: int = 10
    folds: list[int] | None = None  # None: fold 0
    metric: str | None = None  # None: the workspace's metric (ens.toml), else the task's default
    study: str | None = None  # None: the run name of the base options
    out: Path | None = None   # None: tune/<study>.toml


@dataclass
class TuneResult:
    """The finished study: every complete trial (best first), the best options and where they went."""

    study: str
    trials: list[dict]
    best: dict
    best_options: FinetuneOptions
    toml_path: Path
    seconds: float
    ran: int


def tune(ws: Workspace, comp: Competition, base: FinetuneOptions, settings: TuneOptions, force: bool = False,
         progress: Progress | None = None) -> TuneResult:
    """Run the study's missing trials (up to `settings.trials` complete ones) and write the best options."""
    import optuna

    from ensemble.backbones.model import load_config
    from ensemble.metrics.scorer import get_scorer

    emit = progress or (lambda event: None)
    base = check_tune(base, settings)
    settings = replace(settings, metric=ws.metric(comp.task, settings.metric))
    name = settings.study or base.run_name
    scorer = get_scorer(settings.metric, comp.task)
    folds = sorted(set(settings.folds or [0]))
    config = load_config(base.model)
    root = ws.root / TUNE_DIR
    root.mkdir(parents=True, exist_ok=True)
    storage_path = root / f"{name}.db"
    started = time.perf_counter()
    with exclusive(root / f".{name}.lock"):  # one search per study at a time
        if force and storage_path.exists():
            storage_path.unlink()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = _open_study(storage_path, name, scorer.greater_is_better, base.seed, settings.trials)
        _check_identity(study, _identity(ws, comp, base, folds, scorer.name, config), storage_path)
        _fail_stale(study)
        done = _complete(study)
        ran, stores = 0, {}  # the decoded audio, shared by the trials
        for _ in range(max(0, settings.trials - len(done))):
            trial = study.ask()
            opts = replace(suggest(trial, base, config), name=f"{name}-trial{trial.number}")
            t0 = time.perf_counter()
            try:
                _ids, y, p = fit_held_out(ws, comp, opts, root / f".{name}.trial{trial.number}", folds,
                                          tagged(emit, trial=trial.number), stores)
                score = float(scorer(y, p))
            except BaseException:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                raise
            trial.set_user_attr("options", _toml_values(opts))
            trial.set_user_attr("seconds", round(time.perf_counter() - t0, 2))
            study.tell(trial, score)
            ran += 1
            emit({"stage": "trial", "trial": trial.number, settings.metric: score,
                  "best": study.best_value, "seconds": int(round(time.perf_counter() - t0))})
        trials = _complete(study)
    if not trials:
        raise ConfigError(f"study {name!r} holds no complete trial")
    trials.sort(key=lambda t: t["score"], reverse=scorer.greater_is_better)
    best = trials[0]
    best_options = replace(base, **_from_toml(best["options"]))
    toml_path = settings.out or root / f"{name}.toml"
    write_toml(best["options"], toml_path, header=[
        f"ens tune: best of {len(trials)} trials of study {name!r} ({base.model}), trial {best['number']}",
        f"{scorer.name} {best['score']:.5f} on the held-out rows of fold(s) {', '.join(map(str, folds))} "
        "(optimistic: the best of several draws)",
        f"use: ens finetune {base.model} --config {toml_path.name}"])
    return TuneResult(name, trials, best, best_options, toml_path, time.perf_counter() - started, ran)


def check_tune(base: FinetuneOptions, settings: TuneOptions) -> FinetuneOptions:
    """Everything a study's settings can get wrong, checked before any compute; returns the checked base."""
    from ensemble.backbones.families import is_classical
    from ensemble.commands.finetune import check_knobs, check_model_ref
    from ensemble.metrics.scorer import get_scorer

    if not isinstance(settings.trials, int) or isinstance(settings.trials, bool) or settings.trials < 1:
        raise ConfigError(f"--trials {settings.trials!r}: accepted: a whole number ≥ 1 (a study needs a trial)")
    for option, value in (("--study", settings.study), ("--metric", settings.metric)):
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{option} {value!r} is {type(value).__name__}; accepted: text")
    base = base.validate()  # the folds too: a TOML `fold = "a"` is one line, not a crash in a trial
    check_name(settings.study or base.run_name, "study")
    if settings.metric is not None:
        get_scorer(settings.metric)
    if settings.folds is not None and not (isinstance(settings.folds, list) and all(
            isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in settings.folds)):
        raise ConfigError(f"--fold {settings.folds!r}: accepted: fold numbers ≥ 0, e.g. 0,1")
    check_model_ref(base.model)
    if is_classical(base.model):
        raise ConfigError(f"{base.model}: ens tune searches the fine-tuning knobs of trained (torch) families; "
                          "a classical family has none of them")
    return check_knobs(base)


def _startup(trials: int) -> int:
    """Random draws before TPE models the results: a third of the trials, 2..10."""
    return min(10, max(2, trials // 3))


def _identity(ws: Workspace, comp: Competition, base: FinetuneOptions, folds: list[int], metric: str,
              config: Any) -> dict:
    """What a resumed study must share with the one it resumes: fixed options, folds, metric, space."""
    with exclusive(ws.models_dir / ".lock"):  # the shared folds, made once
        shared = ensure_folds(ws, comp, base.folds, base.seed)
    fixed = {k: v for k, v in base.identity().items() if k not in SEARCHED and k != "folds"}
    return json.loads(json.dumps({"fixed": fixed, "folds": folds, "metric": metric,
                                  "folds_fingerprint": folds_fingerprint(shared),
                                  "space": describe_space(base, config)}, default=str))


def _check_identity(study: Any, identity: dict, path: Path) -> None:
    before = study.user_attrs.get("identity")
    if before is None:
        study.set_user_attr("identity", identity)
        return
    if before != identity:
        changed = sorted(k for k in set(before) | set(identity) if before.get(k) != identity.get(k))
        raise ConfigError(f"{path}: this study was started with other settings ({', '.join(changed)}); "
                          "pass --force to start it over, or another --study")


def _open_study(path: Path, name: str, maximize: bool, seed: int, trials: int) -> Any:
    """The study stored in `path` (created when missing); a file that is no readable study database, or one
    another program holds locked, is a DataError naming it."""
    import sqlite3

    import optuna

    if path.is_file():  # read it as SQLite first: optuna would otherwise fail deep inside SQLAlchemy
        try:
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
                db.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as err:
            raise _study_error(path, err) from None
    try:
        return optuna.create_study(study_name=name, storage=f"sqlite:///{path}", load_if_exists=True,
                                   direction="maximize" if maximize else "minimize",
                                   sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=_startup(trials)))
    except Exception as err:  # SQLAlchemy and optuna wrap the sqlite errors in their own types
        if isinstance(err, ConfigError) or not _is_storage_error(err):
            raise
        raise _study_error(path, err) from None


def _is_storage_error(err: BaseException) -> bool:
    """An error of the study's storage (sqlite, SQLAlchemy, optuna's storage checks), not of the search."""
    import sqlite3

    chain = [err, err.__cause__, err.__context__, getattr(err, "orig", None)]
    return any(isinstance(e, sqlite3.Error) or type(e).__module__.startswith(("sqlalchemy", "optuna.storages"))
               for e in chain if e is not None)


def _study_error(path: Path, err: BaseException) -> DataError:
    text = str(getattr(err, "orig", None) or err).splitlines()[0][:160]
    if "locked" in text:
        return DataError(f"{path}: the study database is locked by another program ({text}); retry when it "
                         "is closed")
    return DataError(f"{path}: not a readable study database ({text}); move it aside, or pass --force to "
                     "start the study over")


def _fail_stale(study: Any) -> None:
    """Trials left running by a killed search (this process holds the study's lock) count as failed."""
    import optuna

    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)


def _complete(study: Any) -> list[dict]:
    import optuna

    return [{"number": t.number, "score": float(t.value), "options": t.user_attrs["options"],
             "seconds": t.user_attrs.get("seconds")}
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]


def _toml_values(opts: FinetuneOptions) -> dict:
    """The options a run.toml carries (those `ens finetune --config` reads), JSON-clean."""
    values = asdict(opts)
    out = {k: values[k] for k in TOML_KEYS if values[k] is not None}
    if opts.model_config:
        out["model_config"] = dict(opts.model_config)
    return json.loads(json.dumps(out))


def _from_toml(values: dict) -> dict:
    return {k: v for k, v in values.items() if k in TOML_KEYS or k == "model_config"}


def write_toml(values: dict, path: Path, header: list[str]) -> None:
    """Scalars and one `[model_config]` table as TOML (JSON literals are TOML literals for these types),
    read back before it replaces anything, so a file that does not round-trip is never written."""
    import tomllib

    lines = [f"# {line}" for line in header]
    lines += [f"{key} = {json.dumps(value)}" for key, value in values.items() if key != "model_config"]
    if values.get("model_config"):
        lines += ["", "[model_config]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in values["model_config"].items()]
    text = "\n".join(lines) + "\n"
    if tomllib.loads(text) != values:
        raise ConfigError(f"{path}: the options do not round-trip through TOML: {values}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)
