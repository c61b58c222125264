"""Inference and fine-tuning throughput of a base-size audio backbone, side by side.

CPU (default): ONNX Runtime vs PyTorch eager, clips/s on `--seconds`-long 16 kHz clips at each batch size,
with the ratio ORT / torch. The two sides are interleaved (torch, ORT, then ORT, torch, …: the order
alternates each round) so a neighbour's load on shared cores hits both alike; the table gives medians,
the spread (min–max) of the per-round paired ratios, and the load average before and after. The model
is `base-wav2vec2` (the real base config, random init: weights do not change the speed).

    .venv/bin/python bench/bench_inference.py                 # CPU, batch 1 and 8
    .venv/bin/python bench/bench_inference.py --device cuda   # GPU: torch inference + bf16 fine-tuning

CUDA mode needs only torch, transformers, numpy and this repo: torch inference clips/s (fp32 and bf16
autocast) and fine-tuning samples/s (bf16 autocast, frozen feature encoder, AdamW), with the achieved
fraction of the GPU's dense bf16 peak. FLOPs per sample are counted with torch's FlopCounterMode on the
real model (forward for inference; forward + backward for a training step, so the frozen encoder's missing
weight gradients are accounted for), under `no_grad` (wav2vec2's weight-normalised positional conv fails
under `inference_mode` in the counter), plus the attention matmuls the counter does not see when
scaled-dot-product attention runs as a fused kernel it has no formula for; the peak comes from a small
table or `--peak-tflops`.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ensemble.backbones.model import build_classifier  # noqa: E402

LABELS = ["fake", "real"]
# Dense bf16 tensor-core peaks, TFLOP/s (vendor data sheets; "with sparsity" figures halved).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 PCIe": 756.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0,
                    "L4": 121.0, "A10": 125.0, "RTX 4090": 165.0}


def clips(n: int, seconds: float, sr: int = 16000) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.standard_normal(int(seconds * sr)) * 0.1).astype(np.float32) for _ in range(n)]


def timed(fn, iters: int, warmup: int = 1, sync=lambda: None) -> float:
    """Median seconds per call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def versions() -> str:
    import torch
    import transformers

    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}",
             f"transformers {transformers.__version__}", f"numpy {np.__version__}"]
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        pass
    return ", ".join(parts)


def bench_cpu(args: argparse.Namespace) -> None:
    import torch

    from ensemble.backbones.onnx_export import export_onnx
    from ensemble.backbones.ort import OnnxClassifier

    torch.set_num_threads(args.threads)
    clf = build_classifier(args.model, LABELS)
    clf.module.eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        t0 = time.perf_counter()
        export_onnx(clf, path, {"run_id": "bench"})
        export_s = time.perf_counter() - t0
        ort_model = OnnxClassifier(path, provider="cpu", threads=args.threads)
        print(f"machine: {platform.machine()} {platform.processor() or ''}, {args.threads} threads; {versions()}")
        print(f"model: {args.model} ({clf.describe()['n_params'] / 1e6:.1f} M params), {args.seconds:g}-s clips, "
              f"export {export_s:.0f} s")
        load_before = os.getloadavg()
        print(f"{'batch':>5} {'torch clips/s':>14} {'onnxruntime clips/s':>20} {'ORT/torch':>10} {'ratio spread':>14}")
        for batch in args.batch_sizes:
            inputs = clf.preprocess(clips(batch, args.seconds))
            tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}

            def run_torch() -> None:
                with torch.inference_mode():
                    clf.module(**tensors)

            t_torch, t_ort = interleaved(run_torch, lambda: ort_model.predict_proba(inputs), args.iters)
            paired = t_torch / t_ort
            print(f"{batch:>5} {batch / np.median(t_torch):>14.2f} {batch / np.median(t_ort):>20.2f} "
                  f"{np.median(paired):>10.2f} {paired.min():>6.2f}–{paired.max():<6.2f}")
        load_after = os.getloadavg()
        print(f"{args.iters} interleaved rounds per batch size (order alternating); ORT/torch = median of the "
              f"per-round ratios; load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after "
              f"on {os.cpu_count()} cores")


def interleaved(a, b, rounds: int, warmup: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seconds per call of `a` and `b`, measured in alternating order (a b, b a, …) after a warm-up of each."""
    for _ in range(warmup):
        a()
        b()
    times: dict[int, list[float]] = {0: [], 1: []}
    fns = (a, b)
    for r in range(rounds):
        for side in ((0, 1) if r % 2 == 0 else (1, 0)):
            t0 = time.perf_counter()
            fns[side]()
            times[side].append(time.perf_counter() - t0)
    return np.array(times[0]), np.array(times[1])


def peak_tflops(name: str, given: float | None) -> float | None:
    if given:
        return given
    for key, value in PEAK_BF16_TFLOPS.items():  # most specific names first
        if key in name:
            return value
    return None


def flops(fn, attention_flops: float = 0.0) -> float:
    """FLOPs of `fn()` by FlopCounterMode, plus `attention_flops` when it counted no attention op.

    FlopCounterMode has formulas for some fused attention kernels only (none for the CPU flash kernel,
    for instance); when none of its counts is an attention op, the attention matmuls were not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    counted = counter.get_flop_counts().get("Global", {})
    seen = any("attention" in str(op) for op in counted)
    return float(counter.get_total_flops()) + (0.0 if seen else attention_flops)


def attention_matmul_flops(config, batch: int, frames: int, backward: bool = False) -> float:
    """Q·Kᵀ and A·V of every layer: 2 matmuls × 2·T²·hidden FLOPs per clip (×3 with the backward pass)."""
    per_layer = 2 * 2 * frames * frames * config.hidden_size
    return per_layer * config.num_hidden_layers * batch * (3 if backward else 1)


def encoder_frames(module, inputs) -> int:
    """Frames the transformer sees: the conv feature encoder's output length for these inputs."""
    import torch

    length = inputs["input_values"].shape[-1]
    inner = getattr(module, "model", module)
    with torch.no_grad():
        return int(inner._get_feat_extract_output_lengths(torch.tensor(length)))


def forward_flops(module, inputs) -> float:
    """Forward FLOPs for `inputs` (counted under no_grad, attention added where the counter skipped it)."""
    import torch

    config, batch = getattr(getattr(module, "model", module), "config", None), inputs["input_values"].shape[0]
    extra = attention_matmul_flops(config, batch, encoder_frames(module, inputs)) if config is not None else 0.0
    with torch.no_grad():
        return flops(lambda: module(**inputs), extra)


def bench_cuda(args: argparse.Namespace) -> None:
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no CUDA device")
    name = torch.cuda.get_device_name(0)
    peak = peak_tflops(name, args.peak_tflops)
    clf = build_classifier(args.model, LABELS)
    module = clf.module.to("cuda")
    sync = torch.cuda.synchronize
    print(f"machine: {name}, peak bf16 dense {peak or '?'} TFLOP/s; {versions()}")
    print(f"model: {args.model} ({clf.describe()['n_params'] / 1e6:.1f} M params), {args.seconds:g}-s clips")

    batch = args.gpu_batch
    inputs = {k: torch.from_numpy(v).cuda() for k, v in clf.preprocess(clips(batch, args.seconds)).items()}
    module.eval()
    fwd_flops = forward_flops(module, inputs) / batch
    print(f"{'mode':<28} {'batch':>5} {'items/s':>10} {'TFLOP/s':>9} {'of peak':>8}")

    def report(mode: str, seconds: float, per_item_flops: float) -> None:
        rate = batch / seconds
        tflops = rate * per_item_flops / 1e12
        share = f"{tflops / peak:.1%}" if peak else "?"
        print(f"{mode:<28} {batch:>5} {rate:>10.1f} {tflops:>9.1f} {share:>8}")

    for label, dtype in (("inference fp32", None), ("inference bf16 autocast", torch.bfloat16)):
        def infer() -> None:
            with torch.inference_mode(), torch.autocast("cuda", dtype=dtype or torch.float32,
                                                        enabled=dtype is not None):
                module(**inputs)
        report(label, timed(infer, args.iters * 5, warmup=3, sync=sync), fwd_flops)

    # What a deployment runs: the weights themselves in bf16 (no autocast casts on every call).
    half = copy.deepcopy(module).to(torch.bfloat16)
    half_inputs = {k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in inputs.items()}

    def infer_half() -> None:
        with torch.inference_mode():
            half(**half_inputs)
    report("inference bf16 weights", timed(infer_half, args.iters * 5, warmup=3, sync=sync), fwd_flops)

    clf.freeze_feature_encoder()
    module.train()
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=3e-5)
    targets = torch.randint(0, 2, (batch, len(LABELS)), device="cuda").float()

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            logits = module(**inputs)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def fwd_bwd() -> None:
        logits = module(**inputs)
        torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.zero_grad(set_to_none=True)

    config = getattr(getattr(module, "model", module), "config", None)
    extra = attention_matmul_flops(config, batch, encoder_frames(module, inputs), backward=True) if config else 0.0
    train_flops = flops(fwd_bwd, extra) / batch
    report("fine-tune bf16 (frozen enc.)", timed(step, args.iters * 5, warmup=3, sync=sync), train_flops)
    print(f"FLOPs per {args.seconds:g}-s clip: forward {fwd_flops / 1e9:.1f} G, "
          f"training step {train_flops / 1e9:.1f} G")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--model", default="base-wav2vec2")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--iters", type=int, default=6, help="interleaved rounds per batch size (CPU)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-batch", type=int, default=32)
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of the GPU")
    args = parser.parse_args()
    bench_cpu(args) if args.device == "cpu" else bench_cuda(args)


if __name__ == "__main__":
    main()
