"""`ens export` / `ens predict`: a submission's whole chain as one ONNX graph, run by ONNX Runtime alone.

`state` turns fitted blenders and calibrators into plain JSON for the submission's sidecar (no
pickle); `graph` builds the ONNX model from that sidecar and the runs' fold graphs; `predict` loads
and runs it without torch. Import what you need from the submodules: this package imports nothing heavy.
"""
