"""ens: turn a pile of fine-tuned audio models into an honest, calibrated competition submission."""

__version__ = "0.1.0"
