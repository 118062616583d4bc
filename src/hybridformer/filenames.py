"""The file names of a checkpoint directory, and of the folders it is converted from or exported to: one place,
so a reader and a writer can never disagree on a name."""

WEIGHTS = "model.safetensors"
CONFIG = "config.json"  # our ModelConfig in a checkpoint; transformers' or CTranslate2's config in their folders
TOKENIZER = "tokenizer.json"
TOKENIZER_CONFIG = "tokenizer_config.json"  # a converted model's chat template and special tokens
CHAT_TEMPLATE = "chat_template.jinja"  # where newer Hugging Face folders keep the chat template
META = "meta.json"  # how the checkpoint was made (source, fusion, compression, step) and a classifier's labels
TRAINER_STATE = "trainer_state.pt"  # optimizer, schedule, RNG and data position of a resumable step checkpoint
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"  # PEFT's LoRA format

# Hugging Face and CTranslate2 folders (convert reads them, export writes them)
WEIGHTS_INDEX = "model.safetensors.index.json"  # a sharded Hugging Face model
GENERATION_CONFIG = "generation_config.json"
CT2_WEIGHTS = "model.bin"
