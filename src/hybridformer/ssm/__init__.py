"""State-space mixers: Mamba-2 (``mamba2.py``) on the selective scan in ``scan.py``. See docs/ssm.md."""

from .mamba2 import GatedRMSNorm, Mamba2
from .scan import ssd_chunked, ssd_sequential, ssd_step

__all__ = ["Mamba2", "GatedRMSNorm", "ssd_chunked", "ssd_sequential", "ssd_step"]
