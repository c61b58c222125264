"""Model layer: backbone table, classifiers, training of one fold, ONNX export and ONNX Runtime inference."""
