"""hybridformer: improved Transformers — long-text attention, convolution hybrids, model fusion."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import ModelConfig, load_config
from .errors import CheckpointError, ConfigError, DataError, HybridformerError
from .models import DecoderLM, Encoder, EncoderDecoder, build_model

__version__ = "0.1.0"

__all__ = [
    "ModelConfig", "load_config", "build_model", "EncoderDecoder", "DecoderLM", "Encoder",
    "Checkpoint", "load_checkpoint", "save_checkpoint",
    "ConfigError", "CheckpointError", "DataError", "HybridformerError",
]

# Decoding and evaluation (issue 6).
from .decoding.generate import generate  # noqa: E402
from .evaluate import evaluate  # noqa: E402

__all__ += ["generate", "evaluate"]
