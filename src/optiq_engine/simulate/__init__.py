"""Independent simulators for scoring attribution models (``from optiq_engine.simulate import worlds``).

See docs/worlds.md.
"""

from __future__ import annotations

from . import worlds

__all__ = ["worlds"]
