"""Registry names, in a module free of torch: the CLI's help texts show them (``hybridformer --help`` stays
fast) and the config validates against them without importing the modules that implement them.

tests/cli/test_lazy_cli.py checks they match the registries (``attention.ATTENTION``, ``blocks.LAYERS``,
``ffn.ACTIVATIONS``, ``fusion.METHODS`` and what ``fusion.merge.describe_methods`` reads from each method).
"""

ATTENTION_NAMES = ("reference", "full", "chunked", "sliding_window", "block_sparse", "linear", "performer",
                   "linformer", "nystrom", "window_linear", "retrieval_heads")
LAYER_NAMES = ("transformer", "conformer", "lsra", "branchformer", "ebranchformer", "lightconv", "dynamicconv",
               "shortconv", "mamba2", "parallel_mamba2")
ACTIVATIONS = ("relu", "gelu", "gelu_tanh", "silu", "swiglu", "geglu", "geglu_tanh")
MERGE_METHOD_HELP = {  # name -> what it takes, for ``merge --help``
    "linear": "--weights",
    "slerp": "t (default 0.5: position on the arc: 0 = first checkpoint, 1 = second)",
    "task_arithmetic": "--base; --weights",
    "ties": "--base; --weights; density (default 0.2: fraction of each task vector kept (the paper's k = 20%))",
    "dare": "--base; --weights; density (default 0.1: fraction of each task vector kept); seed (default 0: seed of "
            "the random drop); combine (default 'linear': combine the sparse task vectors by linear|ties|ties_sum "
            "(ties_sum: mergekit's dare_ties)); rescale (default 'density': survivors divided by density (the paper) "
            "or scaled to keep the L1 norm (l1: mergekit))",
}
MERGE_METHODS = tuple(MERGE_METHOD_HELP)
POOLS = ("mean", "cls")
