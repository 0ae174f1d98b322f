"""A lean decoder forward for Llama-shaped models: the same modules, less machinery per call.

Small models on a CPU spend much of a decode step in per-call framework overhead (output capture,
config merging, mask preparation, attention dispatch) rather than in matmuls; for a one-layer draft
that overhead is most of its cost, which decides whether speculation pays. This path calls the
model's own submodules (so bitsandbytes 8-bit and 4-bit linears work unchanged) in the order the
reference implementation does, and is used only for architectures whose layer structure it knows;
anything else runs through the model's own forward. A test checks both give the same tokens.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from worker.engine.kv_cache import SlotKVCache

# model types whose decoder layer is exactly: x += o_proj(attn(rope(q, k), v)); x += mlp(post_norm(x))
SUPPORTED = frozenset({"llama"})


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaFastPath:
    def __init__(self, model: Any) -> None:
        base = model.get_decoder()
        self.embed, self.layers, self.norm, self.rotary = (
            base.embed_tokens,
            base.layers,
            base.norm,
            base.rotary_emb,
        )
        attn = self.layers[0].self_attn
        self.head_dim = attn.head_dim
        self.groups = attn.num_key_value_groups
        self.scaling = attn.scaling

    @classmethod
    def supports(cls, model: Any) -> bool:
        config = model.config
        if getattr(config, "model_type", None) not in SUPPORTED or getattr(config, "pretraining_tp", 1) != 1:
            return False
        base = model.get_decoder()
        needed = ("embed_tokens", "layers", "norm", "rotary_emb")
        if not all(hasattr(base, n) for n in needed) or not len(base.layers):
            return False
        layer = base.layers[0]
        attn_parts = ("q_proj", "k_proj", "v_proj", "o_proj", "head_dim", "num_key_value_groups", "scaling")
        return all(hasattr(layer.self_attn, n) for n in attn_parts) and all(
            hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm", "mlp")
        )

    def __call__(
        self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: SlotKVCache
    ) -> torch.Tensor:
        """tokens, positions: [B, q]; mask: [B, 1, q, kv] bool -> hidden [B, q, H] (after the final norm)."""
        b, q = tokens.shape
        x = self.embed(tokens)  # [B, q, H]
        cos, sin = self.rotary(x, positions)  # [B, q, D] each
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, q, D]
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.input_layernorm(x)
            qs = attn.q_proj(h).view(b, q, -1, self.head_dim).transpose(1, 2)  # [B, heads, q, D]
            ks = attn.k_proj(h).view(b, q, -1, self.head_dim).transpose(1, 2)  # [B, kv_heads, q, D]
            vs = attn.v_proj(h).view(b, q, -1, self.head_dim).transpose(1, 2)
            qs = qs * cos + _rotate_half(qs) * sin
            ks = ks * cos + _rotate_half(ks) * sin
            keys, values = cache.update(ks, vs, i)  # [B, kv_heads, kv, D]
            if self.groups > 1:
                keys = keys.repeat_interleave(self.groups, dim=1)
                values = values.repeat_interleave(self.groups, dim=1)
            out = F.scaled_dot_product_attention(qs, keys, values, attn_mask=mask, scale=self.scaling)
            x = x + attn.o_proj(out.transpose(1, 2).reshape(b, q, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.norm(x)  # type: ignore[no-any-return]
