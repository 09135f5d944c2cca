"""2D-to-3D feature lifting (MobRecon; docs/architecture.md#lifting).

The joint-level map ``latent`` goes through ``de_layer_conv`` (plain 1x1 conv); it is sampled at
the predicted 2D joints (grid_sample, align_corners=True) and the [J, C] joint features are
lifted to the coarsest mesh level by a learnable [N_L, J] matrix ``upsample`` shared by all
samples: f_v = upsample @ x_j. The multi-view model lifts every view with this same module.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from simajax.models import layers

Array = jax.Array


class Lifting(nn.Module):
  """latent map + raw 2D joints -> vertex-level feature f_v [B, N_L, C]."""
  num_vertices: int = 49
  lifting_init: float = 0.01  # the official constant init of ``upsample``

  @nn.compact
  def __call__(self, latent: Array, uv: Array) -> tuple[Array, dict[str, Array]]:
    """Lifts joint features to the coarse mesh.

    Args:
      latent: [B, h, w, C] joint-level map (``mid_proj`` output).
      uv: [B, J, 2] raw 2D joints, (x, y), 0..1 spans the crop.

    Returns:
      (f_v [B, N_L, C], intermediates ``de_layer_conv``, ``uv_sample_grid``,
      ``sampled_joint_features``).
    """
    feature = layers.ConvBN(latent.shape[-1], 1, use_bn=False, relu=False,
                            name="de_layer_conv")(latent, False)
    # The clamp keeps every sample inside the map (and zeroes the uv gradient outside the crop).
    grid = jnp.clip((uv - 0.5) * 2.0, -1.0, 1.0)
    sampled = layers.grid_sample_align_corners(feature, grid)
    lifting = self.param("upsample", nn.initializers.constant(self.lifting_init),
                         (self.num_vertices, uv.shape[1]))
    f_v = jnp.einsum("vj,bjc->bvc", lifting.astype(sampled.dtype), sampled)
    mids = {"de_layer_conv": feature, "uv_sample_grid": grid,
            "sampled_joint_features": sampled, "lifted_vertex_feature_f_v": f_v}
    return f_v, mids
