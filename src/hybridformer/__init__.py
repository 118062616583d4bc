"""hybridformer: improved Transformers — long-text attention, convolution hybrids, model fusion."""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .config import ModelConfig, load_config
from .errors import CheckpointError, ConfigError, DataError, HybridformerError
from .evaluate import evaluate
from .fusion import Ensemble, average_checkpoints, merge_checkpoints
from .generation import generate
from .models import DecoderLM, Encoder, EncoderDecoder, build_model
from .train import train

__version__ = "0.1.0"

__all__ = [
    "ModelConfig", "load_config", "build_model", "EncoderDecoder", "DecoderLM", "Encoder",
    "Checkpoint", "load_checkpoint", "save_checkpoint", "train", "generate", "evaluate",
    "Ensemble", "average_checkpoints", "merge_checkpoints",
    "ConfigError", "CheckpointError", "DataError", "HybridformerError",
]

# Classification (issue 3: LRA text).
from .classify import evaluate_classifier  # noqa: E402

__all__ += ["evaluate_classifier"]

# Pretrained models (issue 13): Hugging Face / GGUF conversion.
from .embed import embed  # noqa: E402
from .interop import convert  # noqa: E402

__all__ += ["convert", "embed"]
