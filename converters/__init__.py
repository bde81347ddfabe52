"""Trained model -> deployable stage files (ExecuTorch, TFLite, Core ML) and the `adpc` CLI."""
