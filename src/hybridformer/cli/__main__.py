"""``python -m hybridformer.cli ...`` (what torchrun launches: ``torchrun -m hybridformer.cli train ...``)."""

from . import main

main()
