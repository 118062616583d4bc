"""Registry names, in a module free of torch: the CLI's help texts show them (``hybridformer --help`` stays
fast) and the config validates against them without importing the modules that implement them.

tests/cli/test_lazy_cli.py checks they match the registries (``attention.ATTENTION``, ``blocks.LAYERS``,
``ffn.ACTIVATIONS``, ``fusion.METHODS``).
"""

ATTENTION_NAMES = ("reference", "full", "chunked", "sliding_window", "block_sparse", "linear", "performer",
                   "linformer", "nystrom", "window_linear")
LAYER_NAMES = ("transformer", "conformer", "lsra", "branchformer", "ebranchformer", "lightconv", "dynamicconv",
               "shortconv", "mamba2", "parallel_mamba2")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "geglu_tanh")
MERGE_METHODS = ("linear", "slerp", "task_arithmetic", "ties", "dare")
POOLS = ("mean", "cls")
