"""Attention-based deep MIL (Ilse, Tomczak & Welling, ICML 2018).

Each tile embedding ``h_n`` gets an attention logit; softmax over the tiles of a bag gives the
weights ``α`` and the bag is represented by ``Σ α_n h_n``:

* plain:  ``a_n = wᵀ tanh(V h_n)``
* gated:  ``a_n = wᵀ (tanh(V h_n) ⊙ sigmoid(U h_n))``  — the sigmoid gate lets the model switch
  off the near-linear regime of ``tanh`` for small activations, which the paper found helps.

The paper learns the instance embedding from pixels; with frozen patch features the embedding
is one ``Linear → ReLU → Dropout`` layer as in CLAM (``embed_dim 512``, ``attn_dim 256``).
"""

from __future__ import annotations

from torch import Tensor, nn

from slidestream.mil.models.base import MILModel, MILOutput, masked_softmax
from slidestream.mil.models.registry import register


class AttentionNet(nn.Module):
    """Tile embeddings ``(B, N, L)`` → attention logits ``(B, K, N)`` with ``K`` branches."""

    def __init__(
        self, dim: int, attn_dim: int, n_branches: int = 1, gated: bool = True, dropout: float = 0.0
    ):
        super().__init__()
        self.tanh_branch = nn.Sequential(nn.Linear(dim, attn_dim), nn.Tanh(), nn.Dropout(dropout))
        self.gate = (
            nn.Sequential(nn.Linear(dim, attn_dim), nn.Sigmoid(), nn.Dropout(dropout))
            if gated
            else None
        )
        self.w = nn.Linear(attn_dim, n_branches)

    def forward(self, h: Tensor) -> Tensor:
        a = self.tanh_branch(h)
        if self.gate is not None:
            a = a * self.gate(h)
        return self.w(a).transpose(1, 2)


@register("abmil")
class ABMIL(MILModel):
    """Attention pooling over tile embeddings, one bag classifier on the pooled vector."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        embed_dim: int = 512,
        attn_dim: int = 256,
        dropout: float = 0.25,
        gated: bool = False,
    ):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention = AttentionNet(embed_dim, attn_dim, 1, gated=gated, dropout=dropout)
        self.classifier = nn.Linear(embed_dim, n_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None, coords: Tensor | None = None):
        h = self.embed(x)  # (B, N, E)
        raw = self.attention(h)  # (B, 1, N)
        attn = masked_softmax(raw, mask)
        bag = (attn @ h).squeeze(1)  # (B, E)
        return MILOutput(self.classifier(bag), attn[:, 0], {"attention_logits": raw[:, 0]})


@register("abmil_gated")
class GatedABMIL(ABMIL):
    """ABMIL with the gated attention branch (the variant CLAM and most follow-ups use)."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int,
        embed_dim: int = 512,
        attn_dim: int = 256,
        dropout: float = 0.25,
    ):
        super().__init__(in_dim, n_classes, embed_dim, attn_dim, dropout, gated=True)
