"""What ADP-C is and how it is trained: the model, its FLOPs, data and training."""

from .adpc import ADPCConfig, ADPCNet, ExitOutputs, InputSizeError, check_input_size
from .registry import CheckpointError, create_model, list_models, load_pretrained

__all__ = [
    "ADPCConfig",
    "ADPCNet",
    "CheckpointError",
    "ExitOutputs",
    "InputSizeError",
    "check_input_size",
    "create_model",
    "list_models",
    "load_pretrained",
]
