"""``python -m hybridformer.cli ...`` (what torchrun launches: ``torchrun -m hybridformer.cli train ...``)."""

import sys

from . import main

sys.exit(main())
