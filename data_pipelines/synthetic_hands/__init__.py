"""The built-in synthetic multi-view hand dataset (``synthetic_hands``).

  builder.py  the TFDS builder and its configs (tiny / small / default, and *_mano twins)
  scene.py    one frame: posed hand, occluders, 8 cameras, rendering
"""

from data_pipelines.synthetic_hands.builder import SyntheticHands, SyntheticHandsConfig

__all__ = ["SyntheticHands", "SyntheticHandsConfig"]
