"""`ens export` / `ens predict`: a submission's whole chain as one ONNX graph, run by ONNX Runtime alone.

The fitted blend comes from the submission's sidecar (`recipe.state`, written by `ensemble.stack.state`:
JSON and LightGBM text, no pickle); `graph` builds the ONNX model from it and the runs' fold graphs
(`ops`: the graph writer; each stacking method writes its own ops, `ensemble.stack.onnx_ops`); `runtime` loads and runs it without torch. The
commands `ens export`, `ens predict` and `ens serve` live in `ensemble.commands`. Import what you need from the submodules: this package imports nothing heavy.
"""
