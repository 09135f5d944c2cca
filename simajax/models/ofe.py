"""SiMA's orientation-feature enhancement (OFE; the attention of the official ``SIMA_GlobRotReg``).

The joint-feature tokens f_j and the orientation tokens f_o each attend to themselves
(``self_attn_1`` gives h_j, ``self_attn_2`` gives h_o); then the joint tokens query the
orientation tokens (``crs_attn``: query h_j, key and value h_o), giving the enhanced orientation
tokens f̂_o. The rotation regressor (``orientation.RotationRegressor``) reads f̂_o, and SiMA's
L_OE distils it towards the teacher's fused orientation tokens (``simajax.training.distill``).

In the official network these blocks are parameters of the rotation regressor
(``rot_reg.self_attn_1.w_qs.weight``, ...), and official weights are imported by those paths, so
``OrientationFeatureEnhancement.attach`` builds the module in its parent's scope: its blocks sit
directly under ``rot_reg``, with no level of their own.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from simajax.models.attention import MultiHeadAttention

Array = jax.Array


class OrientationFeatureEnhancement(nn.Module):
  """(f_j tokens, f_o tokens) [B, T, D] -> (f̂_o [B, T, D], intermediates).

  Children: ``self_attn_1``, ``self_attn_2`` and ``crs_attn`` (``MultiHeadAttention``). Build it
  inside a parent's compact method with ``attach`` to keep the official parameter paths.
  """
  num_heads: int = 8
  head_dim: int = 512
  dropout: float = 0.1

  @classmethod
  def attach(cls, parent: nn.Module, **fields) -> OrientationFeatureEnhancement:
    """The module, sharing ``parent``'s scope: its children become ``parent``'s children.

    Args:
      parent: the bound module whose compact method is running (``RotationRegressor``).
      **fields: ``num_heads``, ``head_dim``, ``dropout``.
    """
    module = cls(**fields, name="ofe")  # the name is reserved in parent but holds no variables
    nn.share_scope(parent, module)
    return module

  @nn.compact
  def __call__(self, f_j: Array, f_o: Array, train: bool) -> tuple[Array, dict[str, Array]]:
    """Enhances the orientation tokens; dropout (rng 'dropout') is active when ``train``."""

    def attention(name):
      return MultiHeadAttention(self.num_heads, self.head_dim, self.dropout, name=name)

    h_j = attention("self_attn_1")(f_j, f_j, f_j, train)
    h_o = attention("self_attn_2")(f_o, f_o, f_o, train)
    f_o_hat = attention("crs_attn")(h_j, h_o, h_o, train)
    return f_o_hat, {"attn_self_j_tokens": h_j, "attn_self_o_tokens": h_o}
