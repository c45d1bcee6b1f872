"""icllib's Transformer preset is the papers' Transformer: with the same weights it computes what Garg et al.'s
`TransformerModel` computes (dtsip/in-context-learning `src/models.py`, reused by Park et al.), i.e.

    _read_in = nn.Linear(n_dims, n_embd)
    _backbone = GPT2Model(GPT2Config(n_positions=2 * n_positions, n_embd, n_layer, n_head,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0, use_cache=False))
    _read_out = nn.Linear(n_embd, 1)
    pred = _read_out(_backbone(inputs_embeds=_read_in(_combine(xs, ys))).last_hidden_state)[:, ::2, 0]

for the pairs format, at fp32 tolerance. The reference below is that code with HF's `GPT2Model`; the weight mapping
(icllib name -> HF name) is `_hf_state_dict`. HF's `Conv1D` stores weights as [in, out], the transpose of
`nn.Linear`'s [out, in]. Attention runs HF's "eager" path (explicit softmax(QKᵀ/√d_h + causal mask) V).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import Tensor, nn

from icllib.batch import Batch, IOSpec
from icllib.config import ModelConfig
from icllib.models import ICLModel, build_model, presets


def _transformers():  # imported when a test runs (~5-10 s on CPU), not when pytest collects
    import transformers  # a dev dependency: missing, the test fails rather than skipping the check

    return transformers


ATOL = RTOL = 1e-5


class GargTransformer(nn.Module):
    """Garg et al.'s `TransformerModel` (read-in, GPT2Model, read-out), eval-only, as in the official code."""

    def __init__(self, n_dims: int, n_positions: int, n_embd: int, n_layer: int, n_head: int) -> None:
        super().__init__()
        transformers = _transformers()
        config = transformers.GPT2Config(
            n_positions=2 * n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
        )
        config._attn_implementation = "eager"
        self._read_in = nn.Linear(n_dims, n_embd)
        self._backbone = transformers.GPT2Model(config)
        assert self._backbone.config._attn_implementation == "eager"  # not HF's default SDPA
        self._read_out = nn.Linear(n_embd, 1)

    @staticmethod
    def _combine(xs_b: Tensor, ys_b: Tensor) -> Tensor:
        bsize, points, dim = xs_b.shape
        ys_b_wide = torch.cat((ys_b.view(bsize, points, 1), torch.zeros(bsize, points, dim - 1)), axis=2)
        return torch.stack((xs_b, ys_b_wide), dim=2).view(bsize, 2 * points, dim)

    def forward(self, xs: Tensor, ys: Tensor) -> Tensor:
        embeds = self._read_in(self._combine(xs, ys))
        output = self._backbone(inputs_embeds=embeds).last_hidden_state
        return self._read_out(output)[:, ::2, 0]  # predict only on xs


def _hf_state_dict(model: ICLModel) -> dict[str, Tensor]:
    """icllib's weights under Garg/HF names. Linear [out, in] -> Conv1D [in, out] for the four block matrices."""
    sd = {
        "_read_in.weight": model.io.read_in.weight,
        "_read_in.bias": model.io.read_in.bias,
        "_read_out.weight": model.io.read_out.weight,
        "_read_out.bias": model.io.read_out.bias,
        "_backbone.ln_f.weight": model.backbone.norm_f.weight,
        "_backbone.ln_f.bias": model.backbone.norm_f.bias,
    }
    sd["_backbone.wpe.weight"] = model.wpe.weight  # [max_len, D]; Garg's table has 2 * n_positions rows
    for i, block in enumerate(model.backbone.blocks):
        assert block.name == "attn" and len(block.mixers) == 2  # [CausalSelfAttention, MLP]
        attn, mlp = block.mixers
        ln_1, ln_2 = block.norms
        h = f"_backbone.h.{i}."
        sd.update({
            h + "ln_1.weight": ln_1.weight, h + "ln_1.bias": ln_1.bias,
            h + "attn.c_attn.weight": attn.c_attn.weight.T, h + "attn.c_attn.bias": attn.c_attn.bias,
            h + "attn.c_proj.weight": attn.c_proj.weight.T, h + "attn.c_proj.bias": attn.c_proj.bias,
            h + "ln_2.weight": ln_2.weight, h + "ln_2.bias": ln_2.bias,
            h + "mlp.c_fc.weight": mlp.c_fc.weight.T, h + "mlp.c_fc.bias": mlp.c_fc.bias,
            h + "mlp.c_proj.weight": mlp.c_proj.weight.T, h + "mlp.c_proj.bias": mlp.c_proj.bias,
        })
    return {k: v.detach().clone().contiguous() for k, v in sd.items()}


@torch.no_grad()
def _randomize(model: nn.Module, seed: int = 7) -> None:
    """Every parameter drawn afresh, away from GPT-2's init (zero biases, unit norms, std 0.02 matrices, under which
    attention is near-uniform and GELU near-linear): matrices N(0, 4 / fan_in), norm scales 1 + N(0, 0.3²), biases
    and norm shifts N(0, 0.3²), so a mis-mapped bias, norm, head split or q/k/v order shows."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        noise = torch.randn(p.shape, generator=g)
        if p.dim() == 2:
            p.copy_(noise * 2.0 / p.shape[1] ** 0.5)
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.3 * noise)
        else:
            p.copy_(0.3 * noise)


def _pair(cfg: ModelConfig, n_dims: int, randomize: bool = False) -> tuple[ICLModel, GargTransformer]:
    """icllib's model (seeded init, or `_randomize`d) and the reference loaded with its weights."""
    ours = build_model(cfg, IOSpec("pairs", d_in=n_dims, d_out=1), seed=0).eval()
    if randomize:
        _randomize(ours)
    ref = GargTransformer(n_dims, cfg.max_len // 2, cfg.d_model, len(cfg.layers), cfg.n_heads).eval()
    sd = _hf_state_dict(ours)
    # HF GPT2Model also owns a token table `wte`; inputs_embeds bypasses it, so it is the only unmapped tensor.
    ref_params = {k for k, _ in ref.named_parameters()} - {"_backbone.wte.weight"}
    assert set(sd) == ref_params, set(sd) ^ ref_params  # the mapping covers every parameter, both ways
    missing, unexpected = ref.load_state_dict(sd, strict=False)
    assert not unexpected and set(missing) <= {"_backbone.wte.weight"}, (missing, unexpected)
    assert sum(p.numel() for p in ours.parameters()) == sum(v.numel() for v in sd.values())
    return ours, ref


def _data(n_dims: int, n_points: int, B: int = 3) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1234)
    return torch.randn(B, n_points, n_dims, generator=g), torch.randn(B, n_points, generator=g)


def _block_outputs(ref: GargTransformer, xs: Tensor, ys: Tensor) -> list[Tensor]:
    """HF's residual stream: embeddings (read-in + wpe, the input of block 0) and each block's output (pre-ln_f)."""
    outs: list[Tensor] = []
    hooks = [ref._backbone.h[0].register_forward_pre_hook(lambda m, args, kw: outs.append(
        (args[0] if args else kw["hidden_states"]).clone()), with_kwargs=True)]
    for blk in ref._backbone.h:
        hooks.append(blk.register_forward_hook(lambda m, a, out: outs.append(
            (out[0] if isinstance(out, tuple) else out).clone())))
    try:
        ref(xs, ys)
    finally:
        for hk in hooks:
            hk.remove()
    return outs


CONFIGS = {
    # tiny: 4 heads of size 8
    "tiny": (dataclasses.replace(presets.transformer("smoke"), d_model=32, n_heads=4), 5, 11),
    "smoke": (presets.transformer("smoke"), 5, 11),
    # the reduced-compute preset at the regression tasks' size (d=20, 41 points = 82 tokens)
    "paper": (presets.transformer("paper"), 20, 41),
}


@pytest.mark.parametrize("weights", ["init", "random"])
@pytest.mark.parametrize("name", list(CONFIGS))
@torch.no_grad()
def test_transformer_preset_equals_garg_gpt2(name: str, weights: str) -> None:
    cfg, n_dims, n_points = CONFIGS[name]
    assert cfg.layers == ("attn",) * len(cfg.layers) and cfg.mlp and cfg.pos_emb and cfg.dropout == 0.0
    assert cfg.norm == "layernorm"
    ours, ref = _pair(cfg, n_dims, randomize=weights == "random")
    xs, ys = _data(n_dims, n_points)
    batch = Batch(xs=xs, ys=ys, loss_mask=torch.ones(ys.shape, dtype=torch.bool))

    # the interleaving: x_i at token 2i, (y_i, 0, ..., 0) at token 2i + 1, identical to Garg's _combine
    torch.testing.assert_close(
        ours.io.embed(batch), ref._read_in(GargTransformer._combine(xs, ys)), rtol=0, atol=0
    )

    pred, hidden = ours(batch, return_hidden=True)  # pred [B, N, 1] read at the x tokens
    ref_pred = ref(xs, ys)  # [B, N]
    assert pred.shape == (*ys.shape, 1)
    torch.testing.assert_close(pred[..., 0], ref_pred, rtol=RTOL, atol=ATOL)

    # every block's residual stream, at all 2N tokens (icllib's Backbone) and at the read (x) tokens (ICLModel)
    ref_hidden = _block_outputs(ref, xs, ys)
    _, our_all = ours.backbone(ours.embed(batch), return_hidden=True)
    assert len(ref_hidden) == len(our_all) == len(hidden) == len(cfg.layers) + 1
    for i, (a, h, r) in enumerate(zip(our_all, hidden, ref_hidden, strict=True)):
        # the un-normed residual stream grows to |h| ~ 30 under random weights: atol relative to its scale
        atol = ATOL * max(1.0, r.abs().max().item())
        torch.testing.assert_close(a, r, rtol=RTOL, atol=atol, msg=lambda m, i=i: f"residual stream {i}: {m}")
        torch.testing.assert_close(h, a[:, 0::2], rtol=0, atol=0)  # ICLModel selects the x tokens (even positions)
    torch.testing.assert_close(
        ours.backbone(ours.embed(batch)), ref._backbone(inputs_embeds=ref._read_in(ref._combine(xs, ys)))
        .last_hidden_state, rtol=RTOL, atol=ATOL,
    )  # after ln_f


@torch.no_grad()
def test_equivalence_check_can_fail() -> None:
    """Negative controls: a perturbed weight, a mis-transposed matrix, swapped q/k biases or reading at the y
    tokens each break the match, so the test above can fail."""
    cfg, n_dims, n_points = CONFIGS["tiny"]
    xs, ys = _data(n_dims, n_points)
    batch = Batch(xs=xs, ys=ys, loss_mask=torch.ones(ys.shape, dtype=torch.bool))
    ours, ref = _pair(cfg, n_dims, randomize=True)
    pred = ours(batch)[..., 0]
    torch.testing.assert_close(pred, ref(xs, ys), rtol=RTOL, atol=ATOL)

    def breaks(ref_pred: Tensor) -> bool:
        return not torch.allclose(pred, ref_pred, rtol=RTOL, atol=ATOL)

    # one weight perturbed in the reference (0.01 on one entry of block 1's MLP out-projection)
    ref._backbone.h[1].mlp.c_proj.weight[3, 7] += 0.01
    assert breaks(ref(xs, ys))

    # a Linear weight copied without the Conv1D transpose (only a square one loads: attention's c_proj, [D, D])
    _, ref = _pair(cfg, n_dims, randomize=True)
    ref._backbone.h[0].attn.c_proj.weight.copy_(ours.backbone.blocks[0].mixers[0].c_proj.weight)
    assert breaks(ref(xs, ys))

    # the q and k thirds of c_attn's bias swapped
    _, ref = _pair(cfg, n_dims, randomize=True)
    b, D = ref._backbone.h[0].attn.c_attn.bias, cfg.d_model
    b.copy_(torch.cat((b[D : 2 * D], b[:D], b[2 * D :])))
    assert breaks(ref(xs, ys))

    # reading at the y tokens instead of the x tokens
    _, ref = _pair(cfg, n_dims, randomize=True)
    out = ref._backbone(inputs_embeds=ref._read_in(ref._combine(xs, ys))).last_hidden_state
    assert breaks(ref._read_out(out)[:, 1::2, 0])
