"""SVR-Hand and MVR-Hand networks in Flax Linen.

Layout mirrors the architecture: ``layers`` (torch-compatible building blocks), ``backbone``
(DenseStack hourglasses), ``lifting`` (2D-to-3D feature lifting), ``spiral`` (spiral decoder),
``attention``, ``ofe`` (SiMA's orientation-feature enhancement) and ``orientation`` (the
orientation branch), ``svr`` (the single-view model), ``fusion`` and ``mvr`` (the multi-view
teacher), ``config``.
"""

from simajax.models import fusion
from simajax.models.config import mvr_config, svr_config
from simajax.models.mvr import MVRHand, build_mvr, init_mvr_variables
from simajax.models.svr import OUTPUT_KEYS, SVRHand, build_svr, init_variables

__all__ = ["MVRHand", "OUTPUT_KEYS", "SVRHand", "build_mvr", "build_svr", "fusion",
           "init_mvr_variables", "init_variables", "mvr_config", "svr_config"]
