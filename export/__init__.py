"""Export trained models to SavedModel and ONNX, verified against Keras."""
