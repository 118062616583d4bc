"""Registry names the CLI's help texts show, in a module free of torch so ``hybridformer --help`` stays fast.

tests/cli/test_lazy_cli.py checks they match the registries (``blocks.LAYERS``, ``fusion.METHODS`` and what
``fusion.merge.describe_methods`` reads from each method's declaration).
"""

LAYER_NAMES = ("transformer", "conformer", "lsra", "branchformer", "ebranchformer", "lightconv", "dynamicconv",
               "shortconv", "mamba2")
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
