"""simajax: SiMA-Hand (AAAI 2024) in JAX/Flax.

Layout (mirrors the method):
  simajax.geometry  rotations shared by hand models, networks, losses and data
  simajax.hand      hand models (MANO from the user's pickle, built-in SynthHand)
  simajax.mesh      multi-level mesh topology (decimation, up-sampling, spirals)
  simajax.models    SVR-Hand and MVR-Hand networks
"""

__version__ = "0.1.0"
