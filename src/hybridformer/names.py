"""Registry names the CLI's help texts show, in a module free of torch so ``hybridformer --help`` stays fast.

tests/cli/test_lazy_cli.py checks they match the registries (``blocks.LAYERS``, ``fusion.METHODS``).
"""

LAYER_NAMES = ("transformer", "conformer", "lsra", "branchformer", "ebranchformer", "lightconv", "dynamicconv",
               "shortconv", "mamba2", "parallel_mamba2")
MERGE_METHODS = ("linear", "slerp", "task_arithmetic", "ties", "dare")
POOLS = ("mean", "cls")
