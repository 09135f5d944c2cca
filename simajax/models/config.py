"""Width and resolution knobs of SVR-Hand and MVR-Hand, as ml_collections ``ConfigDict``s.

``svr_config('official')`` is the published architecture, bit for bit (docs/ARCHITECTURE.md §1-2):
it is the only variant that official PyTorch weights load into. The smaller variants shrink the
channel widths but keep the mesh (778 ... 49 vertices, spiral length 9, from the topology) and the
21 joints, so losses, metrics and data are shared by every variant:

* ``small``: the CPU training default, about 10x fewer multiply-adds than ``official``.
* ``tiny``: for tests only; a forward+backward takes well under a second on a CPU.

``mvr_config(variant)`` is ``svr_config(variant)`` plus the multi-view teacher's fields (the
MVR reuses the SVR's backbone, lifting, decoder and orientation encoder at the same widths, so a
teacher and a student of one variant distil features of the same shapes).

Derived sizes are not knobs: the hourglass bottleneck (and so the attention model width) is
``8 * base_channels``, the 2D-head input is the (input_size / 8)^2 heat-map, and the rotation
head sees (input_size / 32)^2 tokens.
"""

from __future__ import annotations

import ml_collections

VARIANTS = ("official", "small", "tiny")


def svr_config(variant: str = "official") -> ml_collections.ConfigDict:
  """The SVR model config of one variant.

  Args:
    variant: ``official``, ``small`` or ``tiny``.

  Returns:
    A ConfigDict with the fields listed in the body; ``build_svr`` consumes it.

  Raises:
    ValueError: for an unknown variant.
  """
  if variant not in VARIANTS:
    raise ValueError(f"unknown SVR variant {variant!r}; expected one of {VARIANTS}")
  c = ml_collections.ConfigDict()
  c.variant = variant
  c.input_size = 128
  # Backbone (DenseStack): stride-2 stem conv width, pre-layer MobileUnit width (x4 after Reorg),
  # hourglass width c (= f_i channels), hourglass output channels, cap of the SE hidden width.
  c.stem_channels = 64
  c.pre_channels = 128
  c.base_channels = 128
  c.hourglass_out = 24
  c.se_max_hidden = 256
  c.latent_channels = 256  # mid_proj / de_layer_conv: the sampled joint and vertex feature width
  c.uv_hidden = (128, 64)
  # Spiral decoder widths, finest mesh level first (stage i writes decoder_channels[3 - i]).
  c.decoder_channels = (32, 64, 128, 256)
  c.spiral_impl = "plain"  # 'plain' or 'per_slot' (same maths; see models/spiral.py)
  # The official `mano_joint_reg` is a trainable parameter. False keeps it at its MANO init (the
  # parameter stays in the tree, so official weights still load): Adam moves all 778 weights of
  # a row by ~lr per step, so a joint can shift by centimetres per step, and in a short run the
  # joint losses are met by bending the regressor instead of the mesh (configs/*_synthetic.py).
  c.train_joint_regressor = True
  # Activation dtype: 'float32', or 'bfloat16' for mixed precision on accelerators (parameters,
  # BatchNorm statistics, losses and the rotation stay float32). On a CPU bfloat16 is slower
  # (docs/PERFORMANCE.md), so every config keeps float32.
  c.compute_dtype = "float32"
  # The official orientation branch reads detached backbone features (f_i and the joint latent;
  # docs/ARCHITECTURE.md, "Detaches"), so the rotation loss trains only the orientation head and
  # the backbone learns from the 2D and mesh losses alone. False (our option, for experiments)
  # lets the rotation loss train the backbone too. Tried once on the quickstart (tiny MVR,
  # 128 px): it did not help (validation PA-VPE 32.9 mm after 200 steps, the mean mesh's level;
  # BENCHMARKS.md, "Learning at CPU budgets, continued"), so every config keeps the detaches.
  c.detach_orientation_inputs = True
  # Orientation head: attention over the 8c-wide tokens, then the MLP regressor.
  c.attention_heads = 8
  c.attention_head_dim = 512
  c.attention_dropout = 0.1
  c.rot_conv_channels = (512, 256)
  c.rot_pre_channels = (2048, 1024)
  c.rot_fc_channels = (512, 256, 128, 64, 32, 16)

  if variant == "small":
    c.stem_channels = 24
    c.pre_channels = 48
    c.base_channels = 48
    c.hourglass_out = 24
    c.latent_channels = 96
    c.uv_hidden = (64, 32)
    c.decoder_channels = (16, 32, 48, 96)
    c.attention_heads = 4
    c.attention_head_dim = 64
    c.rot_conv_channels = (128, 64)
    c.rot_pre_channels = (256, 128)
    c.rot_fc_channels = (64, 32, 16)
  elif variant == "tiny":
    c.stem_channels = 8
    c.pre_channels = 8
    c.base_channels = 16
    c.hourglass_out = 8
    c.latent_channels = 16
    c.uv_hidden = (16, 8)
    c.decoder_channels = (8, 8, 16, 16)
    c.attention_heads = 2
    c.attention_head_dim = 8
    c.rot_conv_channels = (16, 8)
    c.rot_pre_channels = (32, 16)
    c.rot_fc_channels = (16,)
  return c


def mvr_config(variant: str = "official") -> ml_collections.ConfigDict:
  """The MVR model config of one variant: ``svr_config(variant)`` plus the MVR fields.

  The MVR (docs/ARCHITECTURE.md §6) has no attention blocks, so the ``attention_*`` and
  ``rot_*`` fields (the SVR's head) are unused by it; its own orientation head is H2ONet's
  regressor, ``mvr_rot_*``. The ``iff``/``jff`` fusion MLPs end at the fused feature's width
  (``base_channels`` and ``8 * base_channels``), because their output is added to it.

  Args:
    variant: ``official``, ``small`` or ``tiny``.

  Returns:
    A ConfigDict; ``simajax.models.mvr.build_mvr`` consumes it.

  Raises:
    ValueError: for an unknown variant.
  """
  c = svr_config(variant)
  c.num_views = 8
  # IFF g_i: 1x1 conv (num_views * c -> iff_channels[0]) + BN + ReLU, then the rest; JFF g_j:
  # 1x1 conv (3 * 8c -> jff_channels[0]) + BN + ReLU, then the rest. All convs with bias.
  width = c.base_channels
  c.iff_channels = (width,) * 3
  c.jff_channels = (8 * width,) * 3
  # H2ONet's rotation regressor on the fused f_j^M + f_o^M tokens: k=1 convs, channel-major
  # flatten, pre block, fc block, then a Linear to 6 (ReLU between all). Official: 8c -> 4c -> 2c,
  # 4096 -> 2048 -> 1024, 1024 -> 1024 -> 512 -> 256 -> 6; the reduced variants shrink it as the
  # SVR's head shrinks.
  if variant == "official":
    c.mvr_rot_conv_channels = (512, 256)
    c.mvr_rot_pre_channels = (2048, 1024)
    c.mvr_rot_fc_channels = (1024, 512, 256)
  elif variant == "small":
    c.mvr_rot_conv_channels = (128, 64)
    c.mvr_rot_pre_channels = (512, 256)
    c.mvr_rot_fc_channels = (256, 128, 64)
  else:
    c.mvr_rot_conv_channels = (16, 8)
    c.mvr_rot_pre_channels = (64, 32)
    c.mvr_rot_fc_channels = (32, 16, 8)
  return c
