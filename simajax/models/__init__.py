"""SVR-Hand (and, later, MVR-Hand) networks in Flax Linen.

Layout mirrors the architecture: ``layers`` (torch-compatible building blocks), ``backbone``
(DenseStack hourglasses), ``lifting`` (2D-to-3D feature lifting), ``spiral`` (spiral decoder),
``attention`` and ``orientation`` (the orientation branch), ``svr`` (the top module), ``config``.
"""

from simajax.models.config import svr_config
from simajax.models.svr import OUTPUT_KEYS, SVRHand, build_svr, init_variables

__all__ = ["OUTPUT_KEYS", "SVRHand", "build_svr", "init_variables", "svr_config"]
