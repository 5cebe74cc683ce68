"""ONNX export of the full churn scoring graph, parity check, release directory."""
