"""The `ens` command line: parses options, calls one library function, presents the result.

Library errors (`EnsError`) become one line on stderr, `Error: …`, and exit code 1; set ENS_DEBUG=1 for
the traceback. Heavy libraries (torch, transformers, onnxruntime) are imported only by the commands
that need them, so `ens --help`, `ens stack` and `ens board` start fast.
"""

from __future__ import annotations

import functools
import json
import os
from enum import Enum
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.core import TyperGroup

from ensemble.cli.config import merge_config, parse_folds, parse_grad_norm, parse_params
from ensemble.errors import EnsError

PIPELINE = ["finetune", "tune", "oof", "import", "features", "testlike", "stack", "score", "lb", "board", "report", "export", "predict", "serve",
            "demo"]


class PipelineGroup(TyperGroup):
    """Commands listed in pipeline order, each with its whole first sentence (click cuts them at 45 characters)."""

    def list_commands(self, ctx) -> list[str]:
        names = super().list_commands(ctx)
        return sorted(names, key=lambda n: PIPELINE.index(n) if n in PIPELINE else len(PIPELINE))

    def format_commands(self, ctx, formatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            cmd = self.get_command(ctx, name)
            if cmd is not None and not cmd.hidden:
                rows.append((name, " ".join((cmd.short_help or cmd.help or "").split("\n\n")[0].split())))
        with formatter.section("Commands, in pipeline order"):
            formatter.write_dl(rows)


app = typer.Typer(
    help="ens: fine-tune audio models k-fold, export ONNX, stack their predictions into an honest, calibrated submission.",
    epilog="A day with ens: finetune (or import) runs → stack --compare → submit the CSV on the contest site → "
           "lb NAME --public X → board → report.",
    cls=PipelineGroup,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: option names never cut, no <bool> on flags, wraps at the terminal
)

WorkspaceOpt = Annotated[Optional[Path], typer.Option("--workspace", "-w", envvar="ENS_WORKSPACE",
                                                      help="Workspace folder (holds models/ and submissions/). Default: current directory.")]
DataOpt = Annotated[Optional[Path], typer.Option("--data", help="Competition folder; remembered in the workspace's ens.toml.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]
MetricOpt = Annotated[Optional[str], typer.Option("--metric", help="Metric every choice uses: dacon-fakevoice (alias competition; the default for fake/real), auc, macro-auc, logloss (the default for multiclass), brier, accuracy or macro-f1; remembered in ens.toml.")]
TaskOpt = Annotated[Optional[str], typer.Option("--task", help="multilabel or multiclass (default: from the competition folder; remembered in ens.toml).")]


class Format(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    md = "md"


def output_format(value: str) -> Format:
    """`--format` checked here, so a bad value is one `Error:` line naming the option and the choices."""
    try:
        return Format(value)
    except ValueError:
        fail(f"--format must be one of {', '.join(f.value for f in Format)}; got {value!r}")


def fail(message: str) -> None:
    """Print one error line and exit 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


def handles_errors(func: Callable) -> Callable:
    """Turn library errors into one `Error: …` line and exit code 1 (traceback with ENS_DEBUG=1)."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (EnsError, OSError) as exc:
            if os.environ.get("ENS_DEBUG"):
                raise
            fail(str(exc))

    return wrapper


def command(*args, **kwargs) -> Callable:
    """`app.command` with the one-line error handling every command shares."""
    def decorate(func: Callable) -> Callable:
        return app.command(*args, **kwargs)(handles_errors(func))

    return decorate


def _context(workspace: Path | None, data: Path | None, audio: tuple[str, ...] = (), task: str | None = None,
             metric: str | None = None):
    """The workspace and its validated competition folder (with the audio of `audio` splits checked); a
    `--metric` given is remembered in the workspace's ens.toml."""
    from ensemble.artifacts.competition import open_competition
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    comp = open_competition(ws, data, audio, task)
    if metric is not None:
        ws.remember_metric(comp.task, metric)
    return ws, comp


def console():
    from rich.console import Console

    return Console(width=max(80, min(140, Console().width)))


def say(text: str) -> None:
    """One message on stdout, wrapped at the console's width with continuation lines indented."""
    from ensemble.cli.present import hang

    typer.echo(hang(text, console().width))


@command("import")
def import_cmd(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Name of the new run.")],
    test: Annotated[Path, typer.Option("--test", help="Test predictions: CSV with id and the label columns.")],
    oof: Annotated[Optional[Path], typer.Option("--oof", help="Out-of-fold predictions for train ids (CSV, optional `fold` column).")] = None,
    testlike: Annotated[Optional[Path], typer.Option("--testlike", help="Predictions for the workspace's test-like clips (CSV with id and the label columns; see `ens testlike export`). Needs --oof.")] = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Turn prediction CSVs made elsewhere into a run that can be blended (and learned from, with --oof)."""
    from ensemble.commands.import_ import import_run

    ws, comp = _context(workspace, data)
    run = import_run(ws, comp, name, test, oof, force=force, testlike_csv=testlike)
    cv = (run.manifest.get("metrics") or {}).get("cv")
    tail = f" (CV {cv['score']:.5f})" if cv else " (no OOF: can be averaged, not learned from)"
    typer.echo(f"imported run {name} into {run.dir}{tail}")
    say(f"next: `ens board` lists it; `ens stack {name} OTHER_RUN --compare` tells whether a blend helps")


@command("score")
def score_cmd(
    file: Annotated[Path, typer.Argument(metavar="FILE", help="Submission CSV to score.")],
    answers: Annotated[Path, typer.Option("--answers", help="Answer key: CSV with id and 0/1 label columns.")],
    format: Annotated[str, typer.Option("--format", help="table, json, csv or md.")] = "table",
    metric: MetricOpt = None,
    task: Annotated[Optional[str], typer.Option("--task", help="multilabel or multiclass (default: multiclass when the key has 3+ columns and one 1 per row).")] = None,
) -> None:
    """Score a submission against an answer key (default: the competition metric, lower is better;
    multiclass: log loss, with accuracy, macro-F1 and per-class precision/recall/F1)."""
    from ensemble.commands.score import score_file
    from ensemble.metrics.scorer import SCORERS

    format = output_format(format)
    parts, per_label = score_file(file, answers, metric, task)
    if format == Format.json:
        typer.echo(json.dumps({**{k: v for k, v in parts.as_dict().items() if v == v}, "labels": per_label}, indent=2))
        return
    from ensemble.cli.present import score_table

    name = metric or ("logloss" if "*" in per_label else "competition")
    console().print(score_table(parts, per_label, format.value, name, SCORERS[name].greater_is_better))


@command("lb")
def lb_cmd(
    submission: Annotated[str, typer.Argument(metavar="SUBMISSION", help="Submission name (or its CSV path).")],
    public: Annotated[Optional[float], typer.Option("--public", help="Public leaderboard score.")] = None,
    private: Annotated[Optional[float], typer.Option("--private", help="Private leaderboard score.")] = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Record leaderboard scores for a submission (stored in its JSON sidecar)."""
    from ensemble.commands.lb import record_leaderboard
    from ensemble.artifacts.workspace import Workspace

    sidecar = record_leaderboard(Workspace.resolve(workspace), Path(submission).stem, public, private)
    board = sidecar["leaderboard"]
    scores = ", ".join(f"{key} {board[key]:g}" for key in ("public", "private") if board.get(key) is not None)
    typer.echo(f"recorded {sidecar['name']}: {scores}")
    say("next: `ens board` ranks it beside the others; from three public scores on it tells whether CV predicts "
        "the leaderboard")


@command("board")
def board_cmd(
    format: Annotated[str, typer.Option("--format", help="table (for people), json, csv or md.")] = "table",
    metric: MetricOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """Compare runs and submissions: CV score and its parts, recorded leaderboard scores, rank; partial runs
    with the folds they have."""
    from ensemble.commands.board import board_frame, cv_public_correlation
    from ensemble.cli.present import board_output
    from ensemble.artifacts.workspace import Workspace

    format = output_format(format)
    frame = board_frame(Workspace.resolve(workspace), metric)
    out = console()
    output = board_output(frame, cv_public_correlation(frame), format.value, out.width)
    if isinstance(output, str):
        typer.echo(output, nl=not output.endswith("\n"))
    else:
        out.print(output)


@command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Hub id, local folder, or a named config (tiny-wav2vec2, logmel-cnn, …).")],
    data: DataOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default: from MODEL).")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Number of folds when the shared folds file is created (default 5).")] = None,
    fold: Annotated[Optional[str], typer.Option("--fold", help="Run only these folds, e.g. 0,2 (spread folds over machines).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs per fold.")] = 5,
    lr: Annotated[Optional[float], typer.Option("--lr", help="AdamW learning rate (default 3e-5; 1e-3 for named configs trained from scratch).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step.")] = 16,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Steps per update (default: effective batch 128).")] = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Clip length the model sees (crop/pad; longer clips are windowed at inference).")] = 5.0,
    augment: Annotated[str, typer.Option("--augment", help="'default', 'none', or a list such as mix,noise,gain,shift.")] = "default",
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with any of these options (command-line values win).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    devices: Annotated[int, typer.Option("--devices", help="Processes training each fold together (DDP: one GPU each on CUDA, gloo on CPU); same effective batch.")] = 1,
    seed: Annotated[int, typer.Option("--seed", help="Seed for folds, augmentation and initialisation.")] = 0,
    testlike_per_fold: Annotated[Optional[int], typer.Option("--testlike-per-fold", help="Test-like clips per fold when the shared set is first built (default: about half a fold, 50–2000).")] = None,
    freeze: Annotated[Optional[str], typer.Option("--freeze", help="Weights kept fixed: feature-encoder, first:N (feature encoder and the first N transformer layers), all-but-head, or none (default: feature-encoder for pretrained checkpoints, none for named configs).")] = None,
    model_config: Annotated[Optional[list[str]], typer.Option("--model-config", metavar="KEY=VALUE", help="Override a key of the backbone's config before it is built (repeatable), e.g. apply_spec_augment=false, attention_dropout=0.1, layerdrop=0.05.")] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="Learning-rate schedule after the warm-up: cosine, linear, tri-stage (hold, then linear decay) or constant.")] = "cosine",
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up, as a fraction of the optimizer steps.")] = 0.1,
    hold: Annotated[float, typer.Option("--hold", help="tri-stage: steps held at the peak rate after the warm-up, as a fraction (e.g. 0.4).")] = 0.0,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (matrices only).")] = 0.01,
    max_grad_norm: Annotated[str, typer.Option("--max-grad-norm", help="Clip the gradient norm at this value; 0 or off: no clipping.")] = "1.0",
    pooling: Annotated[str, typer.Option("--pooling", help="How frames become one vector (wav2vec2-like families): mean, attention, stats (mean and std), or weighted (learned sum of all layers, SUPERB).")] = "mean",
    ray: Annotated[Optional[str], typer.Option("--ray", metavar="ADDRESS", help="Run every fold as a Ray task: 'local' (a cluster started here), 'auto' (the cluster running on this machine) or the head's host:port. Every node needs the workspace and data at the same path.")] = None,
    ray_cpus: Annotated[float, typer.Option("--ray-cpus", help="CPUs per fold task on Ray.")] = 1.0,
    ray_gpus: Annotated[Optional[float], typer.Option("--ray-gpus", help="GPUs per fold task on Ray (default: 1 when the cluster has GPUs and --device is not cpu).")] = None,
    metric: MetricOpt = None,
    class_weight: Annotated[str, typer.Option("--class-weight", help="Multiclass imbalance: none (default: keeps the probabilities calibrated to the class mix, which log loss scores) or balanced (loss weights 1/class count; for macro-F1 on rare classes).")] = "none",
    task: TaskOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """K-fold fine-tune an audio classifier: ONNX per fold, OOF/test/test-like predictions, run.json."""
    from ensemble.commands.finetune import FinetuneOptions, check_devices_option, check_knobs, check_model_ref, finetune
    from ensemble.cli.progress import event_printer
    from ensemble.artifacts.workspace import check_name

    values = dict(model=model, name=name, folds=folds, only_folds=parse_folds(fold), epochs=epochs, lr=lr,
                  batch_size=batch_size, grad_accum=grad_accum, max_seconds=max_seconds, augment=augment,
                  device=device, devices=devices, seed=seed, testlike_per_fold=testlike_per_fold, freeze=freeze,
                  model_config=parse_params(model_config or [], "--model-config"), schedule=schedule, warmup=warmup, hold=hold,
                  weight_decay=weight_decay, max_grad_norm=max_grad_norm, pooling=pooling, metric=metric,
                  class_weight=class_weight)
    if config is not None:
        values = merge_config(config, values, ctx)
    values["max_grad_norm"] = parse_grad_norm(values["max_grad_norm"])
    opts = FinetuneOptions(**values)
    check_name(opts.run_name, "run")  # options first, then the model, the folder and its audio, then compute
    check_model_ref(opts.model)  # a typo fails in a second, not after the hub's retries
    check_devices_option(opts)
    check_knobs(opts)
    ws, comp = _context(workspace, data, audio=("train", "test", "unlabeled"), task=task, metric=metric)
    with event_printer(console()) as show:
        if ray is None:
            run = finetune(ws, comp, opts, force=force, progress=show)
        else:
            run = _finetune_on_ray(ws, comp, opts, force, show, ray, ray_cpus, ray_gpus)
    if run is None:
        from ensemble.artifacts.runs import partial_run

        partial = partial_run(ws.run_dir(opts.run_name))
        state = partial.progress() if partial else "some folds finished"
        hint = partial.finish_hint() if partial else f"ens finetune {opts.model} with the other --fold values"
        say(f"run {opts.run_name}: {state}; finish it: {hint} (or copy fold folders made elsewhere into "
            f"{ws.run_dir(opts.run_name)} and run it again)")
        return
    metrics = run.manifest["metrics"]
    parity = max(f["onnx"]["parity_max_abs_diff"] for f in run.manifest["folds"])
    cv = metrics["cv"]
    if "metric" in cv:  # multiclass: the chosen metric beside the usual numbers
        scores = (f"CV {cv['metric']} {cv['score']:.5f} (log loss {cv['logloss']:.4f}, accuracy {cv['accuracy']:.4f}, "
                  f"macro-F1 {cv['macro_f1']:.4f})")
    else:
        scores = f"CV {cv['score']:.5f}, test-like CV {metrics['cv_testlike']['score']:.5f}"
    model_info = run.manifest["source"]["model"]
    trainable = (f", {model_info['n_trainable']:,} of {model_info['n_params']:,} weights trained"
                 if "n_trainable" in model_info else "")
    typer.echo(f"run {run.name}: {scores}, ONNX parity {parity:.2e}{trainable} → {run.dir}")


def _finetune_on_ray(ws, comp, opts, force: bool, show, address: str, cpus: float, gpus: float | None):
    """`ens finetune --ray`: the run's folds as Ray tasks (Ray is an optional extra)."""
    try:
        import ray  # noqa: F401
    except ImportError:
        from ensemble.errors import ConfigError

        raise ConfigError("--ray needs Ray: pip install 'ens[ray]'") from None
    from ensemble.commands.finetune_ray import FoldResources, connect, finetune_on_ray

    connect(address)
    return finetune_on_ray(ws, comp, [opts], force=force, progress=show, resources=FoldResources(cpus, gpus))[0]


@command("features")
def features_cmd(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="vad: Silero VAD voice activity (voiced fraction, longest voiced stretch, peak and mean P(speech)), duration and level.")],
    name: Annotated[Optional[str], typer.Option("--name", help="Feature set name (default: KIND).")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Number of folds when this command makes the shared folds file (default 5).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the shared folds and test-like set, when this command makes them.")] = 0,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Per-clip meta-features for the stacker (train, test and test-like clips) in models/features/NAME/; `ens stack --meta NAME` uses them."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.features import make_features

    ws, comp = _context(workspace, data, audio=("train", "test", "unlabeled"))
    with event_printer(console()) as show:
        manifest = make_features(ws, comp, kind, name, seed=seed, force=force, progress=show, n_folds=folds)
    rows = ", ".join(f"{n} {split}" for split, n in manifest["rows"].items())
    typer.echo(f"feature set {manifest['name']}: {len(manifest['columns'])} columns for {rows} clips in "
               f"{manifest['seconds']:.0f} s → {ws.models_dir / 'features' / manifest['name']}")


@command("tune")
def tune_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Hub id, local folder, or a named config, as for finetune.")],
    data: DataOpt = None,
    trials: Annotated[int, typer.Option("--trials", help="Complete trials the study should hold (a resumed study runs the rest).")] = 10,
    fold: Annotated[Optional[str], typer.Option("--fold", help="Folds each trial trains and scores, e.g. 0,1 (default 0).")] = None,
    metric: MetricOpt = None,
    study: Annotated[Optional[str], typer.Option("--study", help="Study name: tune/<study>.db in the workspace (default: from MODEL).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Where to write the best options (default tune/<study>.toml).")] = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Most epochs a trial may draw.")] = 5,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Centre of the learning-rate range (a decade either side; default as finetune's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips per step (fixed).")] = 16,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help="Steps per update (fixed; default as finetune's).")] = None,
    max_seconds: Annotated[float, typer.Option("--max-seconds", help="Longest crop a trial may draw (from half of it).")] = 5.0,
    augment: Annotated[str, typer.Option("--augment", help="Augmentation (fixed), as for finetune.")] = "default",
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML file with any of these options (command-line values win).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampler and of every trial's training.")] = 0,
    workspace: WorkspaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Start the study over (its stored trials are deleted).")] = False,
) -> None:
    """Search the fine-tuning knobs with Optuna on the workspace's folds; write the best options as a run.toml."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.finetune import FinetuneOptions
    from ensemble.commands.tune import TuneOptions, check_tune, tune

    values = dict(model=model, epochs=epochs, lr=lr, batch_size=batch_size, grad_accum=grad_accum,
                  max_seconds=max_seconds, augment=augment, device=device, seed=seed, trials=trials,
                  only_folds=parse_folds(fold), metric=metric, study=study, out=out)
    if config is not None:
        values = merge_config(config, values, ctx)
    settings = TuneOptions(trials=values.pop("trials"), folds=values.pop("only_folds"), metric=values.pop("metric"),
                           study=values.pop("study"), out=Path(values["out"]) if values.pop("out") else None)
    base = check_tune(FinetuneOptions(**values), settings)  # before the folder's audio is checked
    ws, comp = _context(workspace, data, audio=("train",), metric=metric)
    with event_printer(console()) as show:
        result = tune(ws, comp, base, settings, force=force, progress=show)
    from ensemble.cli.present import trial_lines

    typer.echo(f"study {result.study}: {result.ran} trial(s) run now, {len(result.trials)} complete, "
               f"{result.seconds:.0f} s")
    for line in trial_lines(result.trials[:5], ws.metric(comp.task)):
        say(line)
    say(f"best options (trial {result.best['number']}) → {result.toml_path}; next: "
        f"`ens finetune {model} --config {result.toml_path}`")


@command("oof")
def oof_cmd(
    run: Annotated[str, typer.Argument(metavar="RUN", help="Run whose ONNX folds to run.")],
    data: DataOpt = None,
    split: Annotated[str, typer.Option("--split", help="train, test, testlike or all.")] = "all",
    provider: Annotated[str, typer.Option("--provider", help="auto (CUDA when available), cuda or cpu.")] = "auto",
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per ONNX Runtime call.")] = 8,
    workspace: WorkspaceOpt = None,
) -> None:
    """Re-predict a run with ONNX Runtime (OOF from the fold that never saw each row), replacing its files."""
    from ensemble.commands.oof import SPLITS, run_oof
    from ensemble.cli.progress import event_printer

    if split != "all" and split not in SPLITS:
        fail(f"--split must be one of all, {', '.join(SPLITS)}; got {split!r}")
    from ensemble.artifacts.audio_check import audio_splits

    splits = SPLITS if split == "all" else (split,)
    ws, comp = _context(workspace, data, audio=audio_splits(splits))
    with event_printer(console()) as show:
        diffs = run_oof(ws, comp, run, splits, provider, batch_size, progress=show)
    for name, diff in diffs.items():
        change = "new test-like clips, nothing to compare" if diff != diff else f"max |p_onnx - p_previous| = {diff:.2e}"
        typer.echo(f"{run} {name}: {change}")


@command("stack")
def stack_cmd(
    runs: Annotated[list[str], typer.Argument(metavar="RUN", help="Runs to blend (names in models/).")],
    method: Annotated[str, typer.Option("--method", "-m", help="auto (the best single run unless a blend or calibration credibly beats it); mean, logit or rank (equal-weight averages of probabilities, logits, ranks); weighted (weights fitted to the OOF); hillclimb (greedy forward selection of runs, with repeats, bagged); flip (first re-orients runs whose label columns look swapped or inverted, then recalibrates and weights them); logreg or lgbm (a logistic regression / LightGBM on the runs' logits); or single (one run, --param run=INDEX).")] = "mean",
    name: Annotated[Optional[str], typer.Option("--name", help="Submission name (default: <method>-<runs>).")] = None,
    calibrate: Annotated[str, typer.Option("--calibrate", help="auto (a calibrator only where it credibly beats none), none, temperature, platt, isotonic or beta.")] = "auto",
    test_prior: Annotated[str, typer.Option("--test-prior", help="Adapt to the test set's class mix: none, em, or an assumed prior such as 0.4.")] = "none",
    fit_on: Annotated[str, typer.Option("--fit-on", help="auto (test-like when every run has it), testlike, clean or both.")] = "auto",
    param: Annotated[list[str], typer.Option("--param", help="Method parameter key=value (repeatable), e.g. n_bags=20.")] = [],
    compare: Annotated[bool, typer.Option("--compare", help="Score every run (raw and calibrated) and every method side by side; writes nothing unless --write.")] = False,
    write: Annotated[bool, typer.Option("--write", help="With --compare: write what the decision rule chooses (as --method auto).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for bagging, bootstrap and LightGBM.")] = 0,
    meta: Annotated[str, typer.Option("--meta", help="Per-clip meta-features (feature sets made by `ens features`) for logreg and lgbm: auto (with --compare or --method auto, every feature set joins as extra candidates such as logreg+meta, written only when one credibly beats the best single run; none otherwise), none, or NAME[,NAME].")] = "auto",
    metric: MetricOpt = None,
    task: TaskOpt = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Blend runs into a calibrated submission scored by nested CV (the blender never scores rows it saw)."""
    from ensemble.cli.present import compare_table, prior_table, stack_summary
    from ensemble.cli.progress import event_printer
    from ensemble.commands.stack import run_stack
    from ensemble.stack.request import StackRequest

    if write and not compare:
        fail("--write only goes with --compare (it writes what the comparison chooses); without --compare "
             "every `ens stack` writes its submission")
    request = StackRequest(runs=tuple(runs), method=method, params=parse_params(param), calibrate=calibrate,
                           test_prior=test_prior, fit_on=fit_on, seed=seed, meta=meta, metric=metric, name=name,
                           compare=compare, write=write or not compare, force=force)
    request.check()  # before any data is read
    ws, comp = _context(workspace, data, task=task, metric=metric)
    with event_printer(console()) as show:
        done = run_stack(ws, comp, request, progress=show)
    out = console()
    if compare:
        out.print(compare_table(done.comparison, out.width))
        if done.written is None:
            say(f"next: `ens stack {' '.join(runs)} --compare --write` writes {done.comparison.chosen.name} "
                f"as {done.name}")
            return
    for note in done.written.cleaned:
        typer.echo(f"warning: {note}", err=True)  # whole: it names files to find
    typer.echo(stack_summary(done.written.csv, done.result, done.sidecar["recipe"], out.width))
    if test_prior != "none" and (table := prior_table(done.result)) is not None:
        out.print(table)
    say(f"next: submit {done.written.csv.name} on the contest site, then `ens lb {done.name} --public SCORE`; "
        "`ens report` shows it with figures")


@command("demo")
def demo_cmd(
    out: Annotated[Path, typer.Option("--out", help="Folder for the demo's competition data and workspace.")] = Path("demo"),
    seed: Annotated[int, typer.Option("--seed", help="Seed for the generated audio and the models.")] = 0,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline on generated demo audio: fine-tune, ONNX, stack --compare, submit, score."""
    from ensemble.commands.demo import run_demo
    from ensemble.cli.present import compare_table, frame_table
    from ensemble.cli.progress import event_printer

    with event_printer(console()) as show:
        result = run_demo(out, force=force, seed=seed, progress=show)
    out_console = console()
    out_console.print(compare_table(result.compare, out_console.width))
    out_console.print(frame_table(result.scores, title="scores on the demo's answer key"))
    runs = result.scores[result.scores["kind"] == "run"]
    best_run = runs.loc[runs["test"].idxmin()]
    sub = result.scores[result.scores["kind"] == "submission"].iloc[0]
    gain = best_run["test"] - sub["test"]
    verdict = ("the stack BEAT the best single run" if gain > 1e-9 else
               "the stack did NOT beat the best single run" if gain < -1e-9 else
               "the written submission scores the same as the best single run")
    say(f"{verdict} on the answer key: written {sub['name']} ({result.compare.chosen.name}) "
        f"{sub['test']:.4f} vs best single run {best_run['name']} {best_run['test']:.4f} "
        f"(lower is better, gain {gain:+.4f})")
    typer.echo(f"workspace: {result.workspace}")
    say(f"next: `ens board -w {result.workspace}` ranks runs and submissions; `ens report -w {result.workspace}` "
        "puts them, their recipes and figures on one page")


@command("report")
def report_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs to show (default: every run with OOF).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for the figures and index.html (default: <workspace>/report); an earlier report there is replaced.")] = None,
    restack: Annotated[bool, typer.Option("--restack/--no-restack", help="Re-run each submission stacked from these runs to draw its reliability diagram.")] = True,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
) -> None:
    """PNG figures and a page: reliability diagrams, logit correlations, fold spread, CV vs leaderboard."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.report import write_report
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    if data is not None:
        from ensemble.artifacts.competition import open_competition

        open_competition(ws, data)
    with event_printer(console()) as show:
        folder = write_report(ws, out, runs or None, restack=restack, progress=show)
    typer.echo(f"report: {folder / 'index.html'}")


testlike_app = typer.Typer(help="The simulated test-like set: how test-like it is.", no_args_is_help=True,
                           rich_markup_mode=None)
app.add_typer(testlike_app, name="testlike")


@testlike_app.command("check")
@handles_errors
def testlike_check_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(metavar="RUN", help="Runs whose predictions to check too (test-like vs test clips).")] = None,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    clips: Annotated[int, typer.Option("--clips", help="Test-like and real clips compared (each side).")] = 300,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the samples and the classifier's folds.")] = 0,
) -> None:
    """Domain check: cross-validated AUC of a classifier telling rendered test-like clips from the real
    test (and unlabeled) clips on per-clip audio statistics (0.5: indistinguishable), the statistics
    that differ most, and a warning above the threshold; real clips the generator's fit never saw are
    used when at least 50 are left. With RUNS, the same on the runs' predictions. Recorded in
    models/testlike.json; a pass on held-out clips lets the test-like rows alone decide what to write."""
    from ensemble.commands.testlike import check_predictions, check_testlike

    ws, comp = _context(workspace, data)
    _show_domain_check(check_testlike(ws, comp, clips, seed), "statistic", "clips")
    if runs:
        _show_domain_check(check_predictions(ws, comp, runs, seed), "run:label logit", "predictions")


def _show_domain_check(check, feature: str, what: str) -> None:
    low, high = check.auc_interval
    held = " held out from the generator's fit" if check.extra.get("held_out") else ""
    typer.echo(f"domain AUC on {what} {check.auc:.3f} (95% {low:.3f}–{high:.3f}, fold std {check.auc_fold_std:.3f}; "
               f"{check.n_simulated} test-like vs {check.n_real} real clips{held})")
    typer.echo(f"{feature:<18} {'real − test-like (SMD)':>22}")
    for stat, smd in check.top(5):
        typer.echo(f"{stat:<18} {smd:>+22.2f}")
    if check.warn:
        typer.echo(f"warning: domain AUC on {what} {check.auc:.3f} > {check.threshold:.2f}: the test-like set is easy "
                   "to tell from the test; its scores and calibrators may not carry over", err=True)


@testlike_app.command("export")
@handles_errors
def testlike_export_cmd(
    out: Annotated[Path, typer.Argument(metavar="DIR", help="Folder for <id>.wav files and ids.csv.")],
    rate: Annotated[int, typer.Option("--rate", help="Sample rate of the WAV files (Hz).")] = 16000,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Write the workspace's test-like clips as WAV files (+ ids.csv) for models made outside ens; their
    predictions come back with `ens import NAME --test … --oof … --testlike PREDS.csv`."""
    from ensemble.commands.testlike import export_testlike

    ws, comp = _context(workspace, data)
    folder = export_testlike(ws, comp, out, rate, force)
    typer.echo(f"wrote {len(list(folder.glob('*.wav')))} test-like clips at {rate} Hz and ids.csv → {folder}")


@command("export")
def export_cmd(
    submission: Annotated[str, typer.Argument(help="Submission name (in submissions/) to export.")],
    out: Annotated[Optional[Path], typer.Option("--out", help="ONNX file to write (default: exports/<submission>.onnx in the workspace).")] = None,
    quantize: Annotated[str, typer.Option("--quantize", help="none, or int8: dynamic int8 MatMul weights, kept only if the score check allows.")] = "none",
    max_score_change: Annotated[float, typer.Option("--max-score-change", help="With --quantize int8: refuse when the OOF score worsens by more.")] = 0.002,
    check_rows: Annotated[int, typer.Option("--check-rows", help="With --quantize int8: OOF rows (train clips, each by the folds that never saw it) the score check predicts.")] = 2000,
    data: DataOpt = None,
    workspace: WorkspaceOpt = None,
    force: ForceOpt = False,
) -> None:
    """Export a submission's whole chain (fold models, pooling, blend, calibration, prior) as one ONNX file."""
    from ensemble.commands.export import export_submission
    from ensemble.cli.progress import event_printer
    from ensemble.artifacts.workspace import Workspace

    ws = Workspace.resolve(workspace)
    comp = _context(workspace, data, audio=("train",))[1] if quantize == "int8" else None
    target = out if out is not None else ws.root / "exports" / f"{submission}.onnx"
    with event_printer(console()) as show:
        done = export_submission(ws, submission, target, quantize=quantize, force=force, comp=comp,
                                 max_score_change=max_score_change, check_rows=check_rows, progress=show)
    typer.echo(f"wrote {done.path} ({done.bytes / 1e6:.1f} MB): runs {', '.join(done.runs)}, {done.folds} fold graphs")
    if done.score_check:
        c = done.score_check
        typer.echo(f"int8 score check on {c['rows']} OOF rows: fp32 {c['fp32']:.5f}, int8 {c['int8']:.5f} "
                   f"(change {c['change']:+.5f}, limit {c['max_change']}; max |Δp| {c['max_abs_diff']:.2e})")
        typer.echo(f"whole chain on {c['speed_clips']} clips, interleaved: fp32 {c['fp32_clips_per_s']:.1f} clips/s, "
                   f"int8 {c['int8_clips_per_s']:.1f} clips/s; size {c['fp32_bytes'] / 1e6:.1f} → "
                   f"{c['int8_bytes'] / 1e6:.1f} MB")


@command("predict")
def predict_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `ens export`.")],
    audio: Annotated[Optional[list[Path]], typer.Argument(help="Audio files to predict (or --data DIR --split test).")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", help="Competition folder whose split to predict.")] = None,
    split: Annotated[str, typer.Option("--split", help="With --data: test or train.")] = "test",
    out: Annotated[Path, typer.Option("--out", help="CSV to write (id + label columns; submission order with --data).")] = Path("preds.csv"),
    batch_size: Annotated[int, typer.Option("--batch-size", help="Clips of one length per ONNX Runtime call.")] = 8,
    force: ForceOpt = False,
) -> None:
    """Predict audio with an exported submission in ONNX Runtime alone (no torch)."""
    from ensemble.cli.progress import event_printer
    from ensemble.commands.predict import predict_command

    with event_printer(console()) as show:
        frame = predict_command(model, audio, data, split, out, batch_size, force, progress=show)
    typer.echo(f"wrote {len(frame)} predictions → {out}")


@command("serve")
def serve_cmd(
    model: Annotated[Path, typer.Argument(help="ONNX file written by `ens export`.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
) -> None:
    """Serve an exported submission over HTTP: POST /predict with an audio file, GET /health."""
    from ensemble.commands.serve import make_server
    from ensemble.export.runtime import load

    server = make_server(load(model), host, port)
    typer.echo(f"serving {model} on http://{host}:{server.server_port} (POST /predict, GET /health); Ctrl-C stops")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
