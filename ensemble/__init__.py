"""ens: turn a pile of fine-tuned audio models into an honest, calibrated competition submission."""

__version__ = "0.1.0"


def load(path, threads=None):
    """An `ens export` file in ONNX Runtime (no torch): `ensemble.load("model.onnx").predict(waves)`."""
    from ensemble.export.runtime import load as _load

    return _load(path, threads)
