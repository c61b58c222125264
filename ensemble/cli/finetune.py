"""`ens finetune`: k-fold fine-tuning of an audio classifier, locally or on Ray."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from ensemble.cli.config import option_values, parse_grad_norm, parse_params, training_commands
from ensemble.cli.shared import DataOpt, ForceOpt, MetricOpt, TaskOpt, WorkspaceOpt, console, say, workspace_and_competition


@training_commands.command("finetune")
def finetune_cmd(
    ctx: typer.Context,
    model: Annotated[str, typer.Argument(metavar="MODEL", help="Hub id, local folder, or a named config (tiny-wav2vec2, logmel-cnn, …).")],
    data: DataOpt = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Run name (default: from MODEL).")] = None,
    folds: Annotated[Optional[int], typer.Option("--folds", help="Number of folds when the shared folds file is created (default 5).")] = None,
    training: dict = None,  # --fold --epochs --lr --batch-size --grad-accum --max-seconds --augment --config --device --seed
    devices: Annotated[int, typer.Option("--devices", help="Processes training each fold together (DDP: one GPU each on CUDA, gloo on CPU); same effective batch.")] = 1,
    testlike_per_fold: Annotated[Optional[int], typer.Option("--testlike-per-fold", help="Test-like clips per fold when the shared set is first built (default: about half a fold, 50–2000).")] = None,
    freeze: Annotated[Optional[str], typer.Option("--freeze", help="Weights kept fixed: feature-encoder, first:N (feature encoder and the first N transformer layers), all-but-head, or none (default: feature-encoder for pretrained checkpoints, none for named configs).")] = None,
    model_config: Annotated[Optional[list[str]], typer.Option("--model-config", metavar="KEY=VALUE", help="Override a key of the backbone's config before it is built (repeatable), e.g. apply_spec_augment=false, attention_dropout=0.1, layerdrop=0.05.")] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="Learning-rate schedule after the warm-up: cosine, linear, tri-stage (hold, then linear decay) or constant.")] = "cosine",
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up, as a fraction of the optimizer steps.")] = 0.1,
    hold: Annotated[float, typer.Option("--hold", help="tri-stage: steps held at the peak rate after the warm-up, as a fraction (e.g. 0.4).")] = 0.0,
    weight_decay: Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay (matrices only).")] = 0.01,
    max_grad_norm: Annotated[str, typer.Option("--max-grad-norm", help="Clip the gradient norm at this value; 0 or off: no clipping.")] = "1.0",
    pooling: Annotated[str, typer.Option("--pooling", help="How frames become one vector (wav2vec2-like families): mean, attention, stats (mean and std), or weighted (learned sum of all layers, SUPERB).")] = "mean",
    pseudo_label: Annotated[float, typer.Option("--pseudo-label", metavar="CONFIDENCE", help="Classical families: refit each fold with the test clips its first fit labels at least this surely (e.g. 0.9; per label, the rest left out). Each fold's pseudo-labels come from its own first fit, so OOF and test-like scores stay honest; 0 (default): off.")] = 0.0,
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
    from ensemble.cli.progress import event_printer, first_saying
    from ensemble.artifacts.workspace import check_name

    values = option_values(ctx, model, training, name=name, folds=folds, devices=devices,
                           testlike_per_fold=testlike_per_fold, freeze=freeze,
                           model_config=parse_params(model_config or [], "--model-config"), schedule=schedule,
                           warmup=warmup, hold=hold, weight_decay=weight_decay, max_grad_norm=max_grad_norm,
                           pooling=pooling, metric=metric, class_weight=class_weight, pseudo_label=pseudo_label)
    values["max_grad_norm"] = parse_grad_norm(values["max_grad_norm"])
    opts = FinetuneOptions(**values).validate()
    check_name(opts.run_name, "run")  # options first, then the model, the folder and its audio, then compute
    check_model_ref(opts.model)  # a typo fails in a second, not after the hub's retries
    check_devices_option(opts)
    check_knobs(opts)
    ws, comp = workspace_and_competition(workspace, data, audio=("train", "test", "unlabeled"), task=task,
                                         metric=metric)
    with event_printer(console()) as show:
        show = first_saying(comp.task_note(), show, say)  # as compute starts: a wrong task would train every fold
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
    metrics = run.manifest.metrics
    from ensemble.commands.finetune import parity_words

    worst = max((f.onnx for f in run.manifest.folds), key=lambda o: o.parity_max_abs_diff)
    cv = metrics.cv
    if cv.metric is not None:  # multiclass: the chosen metric beside the usual numbers
        scores = (f"CV {cv.metric} {cv.score:.5f} (log loss {cv.logloss:.4f}, accuracy {cv.accuracy:.4f}, "
                  f"macro-F1 {cv.macro_f1:.4f})")
    else:
        scores = f"CV {cv.score:.5f}, test-like CV {metrics.cv_testlike.score:.5f}"
    weights = run.manifest.weights
    trainable = f", {weights[0]:,} of {weights[1]:,} weights trained" if weights else ""
    typer.echo(f"run {run.name}: {scores}, ONNX parity {parity_words(worst)}{trainable} → {run.dir}")


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
