"""Width and resolution knobs of SVR-Hand and MVR-Hand, each written once, here.

A knob is a field, with the official value as its default and a comment on why, of
``HandNetFields`` (both networks), ``SVRFields`` or ``MVRFields``; ``SVRHand`` and ``MVRHand``
subclass these. A variant is the official values plus its row of ``VARIANT_OVERRIDES``.
``svr_config(variant)`` and ``mvr_config(variant)`` write a variant as the ml_collections
``ConfigDict`` that training configs, saved runs (config.json) and exported checkpoints
(model_config.json) carry, and ``module_kwargs`` reads such a ConfigDict back into module
arguments.

``svr_config('official')`` is the published architecture, bit for bit (docs/architecture.md#model-variants):
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

import dataclasses
from typing import Any, Sequence

import flax.linen as nn
import ml_collections
import numpy as np

# The reduced variants' knobs that differ from the official values (the fields' defaults), by
# ConfigDict name. The MVR's iff/jff widths end at the fused features' widths, base_channels and
# 8 * base_channels; its rotation head shrinks as the SVR's does.
VARIANT_OVERRIDES: dict[str, dict[str, Any]] = {
    "official": {},
    "small": dict(
        stem_channels=24, pre_channels=48, base_channels=48, latent_channels=96,
        uv_hidden=(64, 32), decoder_channels=(16, 32, 48, 96),
        attention_heads=4, attention_head_dim=64, rot_conv_channels=(128, 64),
        rot_pre_channels=(256, 128), rot_fc_channels=(64, 32, 16),
        iff_channels=(48,) * 3, jff_channels=(384,) * 3, mvr_rot_conv_channels=(128, 64),
        mvr_rot_pre_channels=(512, 256), mvr_rot_fc_channels=(256, 128, 64)),
    "tiny": dict(
        stem_channels=8, pre_channels=8, base_channels=16, hourglass_out=8, latent_channels=16,
        uv_hidden=(16, 8), decoder_channels=(8, 8, 16, 16),
        attention_heads=2, attention_head_dim=8, rot_conv_channels=(16, 8),
        rot_pre_channels=(32, 16), rot_fc_channels=(16,),
        iff_channels=(16,) * 3, jff_channels=(128,) * 3, mvr_rot_conv_channels=(16, 8),
        mvr_rot_pre_channels=(64, 32), mvr_rot_fc_channels=(32, 16, 8)),
}
VARIANTS = tuple(VARIANT_OVERRIDES)


def _config_named(name: str, default: Any) -> Any:
  """A knob whose ConfigDict entry is ``name`` rather than the field's own name."""
  return dataclasses.field(default=default, metadata={"config_name": name})


class HandNetFields(nn.Module):
  """The fields ``SVRHand`` and ``MVRHand`` share: mesh tables, backbone and shape-branch widths.

  Both networks build their ``backbone``, ``lifting``, ``decoder3d`` and ``mano_joint_reg`` from
  these fields alone, which is why one variant's SVR and MVR weights have the same shapes there.
  The mesh tables come from the topology (``build_svr``); every other field is a knob.
  """
  spirals: Sequence[np.ndarray]
  up_matrices: Sequence[np.ndarray]
  joint_regressor: np.ndarray
  input_size: int = 128
  # Backbone (DenseStack): stride-2 stem conv width, pre-layer MobileUnit width (x4 after Reorg),
  # hourglass width c (= f_i channels), hourglass output channels, cap of the SE hidden width.
  stem_channels: int = 64
  pre_channels: int = 128
  base_channels: int = 128
  hourglass_out: int = 24
  se_max_hidden: int = 256
  latent_channels: int = 256  # mid_proj / de_layer_conv: the sampled joint and vertex feature width
  uv_hidden: Sequence[int] = (128, 64)
  # The 2D-joint head on the joint heat-maps: 'regression' (official: each joint's flattened map
  # through bias-free Linear layers with Hardtanh[0, 4], widths ``uv_hidden``) or 'soft_argmax'
  # (our option: the expected pixel position under each map's softmax, integral regression; no
  # parameters, so ``uv_hidden`` is unused). See models/backbone.py for why.
  uv_head: str = "regression"
  # Spiral decoder widths, finest mesh level first (stage i writes decoder_channels[3 - i]).
  decoder_channels: Sequence[int] = (32, 64, 128, 256)
  spiral_impl: str = "plain"  # 'plain' or 'per_slot' (same maths; see models/spiral.py)
  # The official `mano_joint_reg` is a trainable parameter. False keeps it at its MANO init (the
  # parameter stays in the tree, so official weights still load): Adam moves all 778 weights of
  # a row by ~lr per step, so a joint can shift by centimetres per step, and in a short run the
  # joint losses are met by bending the regressor instead of the mesh (configs/*_synthetic.py).
  train_joint_regressor: bool = True
  # Activation dtype: 'float32', or 'bfloat16' for mixed precision on accelerators (parameters,
  # BatchNorm statistics, losses and the rotation stay float32). On a CPU bfloat16 is slower
  # (docs/architecture.md#performance-notes), so every config keeps float32.
  compute_dtype: str = "float32"
  # The official orientation branch reads detached backbone features (f_i and the joint latent;
  # docs/architecture.md#where-gradients-stop), so the rotation loss trains only the orientation head and
  # the backbone learns from the 2D and mesh losses alone. False (our option, for experiments)
  # lets the rotation loss train the backbone too. Tried once on the quickstart (tiny MVR,
  # 128 px): it did not help (validation PA-VPE 32.9 mm after 200 steps, the mean mesh's level;
  # BENCHMARKS.md, "Learning at CPU budgets, continued"), so every config keeps the detaches.
  detach_orientation_inputs: bool = True


class SVRFields(HandNetFields):
  """The SVR's own knobs: its orientation head."""
  # Orientation head: attention over the 8c-wide tokens, then the MLP regressor.
  attention_heads: int = 8
  attention_head_dim: int = 512
  attention_dropout: float = 0.1
  rot_conv_channels: Sequence[int] = (512, 256)
  rot_pre_channels: Sequence[int] = (2048, 1024)
  rot_fc_channels: Sequence[int] = (512, 256, 128, 64, 32, 16)


class MVRFields(HandNetFields):
  """The MVR's own knobs (docs/architecture.md#mvr-hand).

  The MVR has no attention blocks, so an ``mvr_config``'s ``attention_*`` and ``rot_*`` entries
  (the SVR's head) are unused by it; its own orientation head is H2ONet's regressor, whose
  fields read the ``mvr_rot_*`` entries.
  """
  num_views: int = 8
  # IFF g_i: 1x1 conv (num_views * c -> iff_channels[0]) + BN + ReLU, then the rest; JFF g_j:
  # 1x1 conv (3 * 8c -> jff_channels[0]) + BN + ReLU, then the rest. All convs with bias. Both
  # end at the fused feature's width (base_channels and 8 * base_channels): their output is
  # added to it.
  iff_channels: Sequence[int] = (128, 128, 128)
  jff_channels: Sequence[int] = (1024, 1024, 1024)
  # H2ONet's rotation regressor on the fused f_j^M + f_o^M tokens: k=1 convs, channel-major
  # flatten, pre block, fc block, then a Linear to 6 (ReLU between all). Official: 8c -> 4c -> 2c,
  # 4096 -> 2048 -> 1024, 1024 -> 1024 -> 512 -> 256 -> 6.
  rot_conv_channels: Sequence[int] = _config_named("mvr_rot_conv_channels", (512, 256))
  rot_pre_channels: Sequence[int] = _config_named("mvr_rot_pre_channels", (2048, 1024))
  rot_fc_channels: Sequence[int] = _config_named("mvr_rot_fc_channels", (1024, 512, 256))


def knob_fields(cls: type[HandNetFields]) -> list[dataclasses.Field]:
  """The knob fields of a ``HandNetFields`` subclass, in declaration order: those with a default,
  bar linen's own ``parent`` and ``name``."""
  return [f for f in dataclasses.fields(cls)
          if f.default is not dataclasses.MISSING and f.name not in ("parent", "name")]


def config_name(field: dataclasses.Field) -> str:
  """The ConfigDict entry of a knob field."""
  return field.metadata.get("config_name", field.name)


def variant_values(cls: type[HandNetFields], variant: str) -> dict[str, Any]:
  """The knobs of ``cls`` in one variant, by ConfigDict name.

  Raises:
    ValueError: for an unknown variant.
  """
  if variant not in VARIANT_OVERRIDES:
    raise ValueError(f"unknown SVR variant {variant!r}; expected one of {VARIANTS}")
  overrides = VARIANT_OVERRIDES[variant]
  return {config_name(f): overrides.get(config_name(f), f.default) for f in knob_fields(cls)}


def _coerce(default: Any, value: Any) -> Any:
  """A ConfigDict value in the type of the field's default (JSON gives lists, ints for floats)."""
  if isinstance(default, tuple):
    return tuple(type(default[0])(x) for x in value)
  return type(default)(value)


def module_kwargs(cls: type[HandNetFields], model_config: ml_collections.ConfigDict
                  ) -> dict[str, Any]:
  """The knob arguments of ``cls`` read from a model ConfigDict, by field name.

  A knob the ConfigDict lacks (a run saved before the knob existed, an ``svr_config`` given to
  ``build_mvr``, a ``use_ofe`` never set) takes its value in the config's variant.

  Raises:
    ValueError: for an unknown variant.
  """
  defaults = variant_values(cls, model_config.get("variant", "official"))
  return {f.name: _coerce(f.default, model_config.get(config_name(f), defaults[config_name(f)]))
          for f in knob_fields(cls)}


def _config(cls: type[HandNetFields], variant: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict({"variant": variant, **variant_values(cls, variant)})


def svr_config(variant: str = "official") -> ml_collections.ConfigDict:
  """The SVR model config of one variant.

  Args:
    variant: ``official``, ``small`` or ``tiny``.

  Returns:
    A ConfigDict: ``variant`` and the knobs of ``SVRFields``; ``build_svr`` consumes it.

  Raises:
    ValueError: for an unknown variant.
  """
  return _config(SVRFields, variant)


def mvr_config(variant: str = "official") -> ml_collections.ConfigDict:
  """The MVR model config of one variant: ``svr_config(variant)`` plus the knobs of ``MVRFields``.

  Args:
    variant: ``official``, ``small`` or ``tiny``.

  Returns:
    A ConfigDict; ``simajax.models.mvr.build_mvr`` consumes it.

  Raises:
    ValueError: for an unknown variant.
  """
  c = svr_config(variant)
  c.update(variant_values(MVRFields, variant))
  return c
