"""The architectures of Park et al. and Grazzi et al. as `ModelConfig`s, at three scales.

    presets.mambaformer(scale="paper")   # ModelConfig(layers=("mamba", "attn", "mamba", "attn", "mamba"), ...)
    presets.param_counts("paper")        # {"transformer": {...}, "mamba": {...}, ...}, also logged as a table

Scales: "smoke" (CPU, CI), "paper" (the reduced-compute profile: Park et al.'s sample configs, D≈128, ~0.45M
parameters), "full" (the papers' large configs, D=256, ~10M). The papers match parameter counts (Park's README:
"Mamba with n_layer 24 ≈ GPT-2 n_layer 12"; Grazzi widen S4 to D=435 to match Mamba). We do the same: within a
scale every preset is within 10% of the scale's median count (test_presets checks it), counting everything except
a position table, whose size is a context-length choice (`max_len`) and whose unused rows never train. Where that
moved a size away from the official config, the preset's docstring says so. One exception: `mamba_s4` always has
exactly Mamba's shape (so that selection is the only difference), which at smoke scale is 22% fewer parameters.

`param_counts(scale)` gives the counts (d=20 read-in, scalar read-out); tests/models/test_presets.py pins them.

Facts read in the official code (krafton-ai/mambaformer-icl@37a9 `src/models.py`, `src/conf/**.yaml`,
`mamba/mamba_ssm/models/mixer_seq_simple.py`, `modules/mamba_simple.py`, `modules/s4d.py`;
automl/is_mamba_capable_of_icl@4047 `simple_functions/src/models.py`, `mamba_mod/`, `s4_mod/`) are tagged [C].
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from icllib.batch import IOSpec
from icllib.config import PROFILES, ConfigError, ModelConfig

log = logging.getLogger(__name__)

# Position-table rows for the presets with positions: the longest prompt of any task (many-outlier regression,
# 512 points = 1024 tokens). Park et al. size it per task: GPT-2 gets 2 * n_positions rows [C].
MAX_LEN = 1024


def _pick(scale: str, **sizes: tuple[int, int]) -> tuple[int, int]:
    """(d_model, depth) of `scale`; unknown scales raise a one-line ConfigError."""
    if scale not in PROFILES:
        raise ConfigError(f"scale: {scale!r} is not one of {', '.join(PROFILES)}")
    return sizes[scale]


def _alternate(n: int) -> tuple[str, ...]:
    """Park et al.'s hybrid pattern [C mixer_seq_simple.py]: block i is attention if i is even, else Mamba."""
    return tuple("attn" if i % 2 == 0 else "mamba" for i in range(n))


def transformer(scale: str = "paper") -> ModelConfig:
    """GPT-2 (Park et al. `gpt2` family; Garg et al.): L × [LN → MHA(8 heads) → +; LN → MLP(4D, GELU) → +], final LN,
    learned absolute positions, dropout 0, GPT-2 init [C].

    paper: D=136, L=2 (the repo's LR/2NN/DT config is D=128, L=2, H=8 [C]; widened 128 → 136 so that its 0.45M
    parameters match Mamba's 4 blocks: at D=128 it has 15% fewer). full: D=256, L=12, H=8 (the parity config and
    Garg's "standard" [C]). Grazzi et al.'s Transformer removes positions (`wpe` zeroed and frozen [C]): use
    `dataclasses.replace(transformer(scale), pos_emb=False)`. Cost of D=136: its head size 17 is not a multiple of 4
    or 8, so SDPA on GPU takes the math path, slower and heavier in memory than D=128 on the longest prompts
    (many-outlier, 1024 tokens) and alike on short ones (kernels/README.md, "Head size and SDPA").
    """
    d, n = _pick(scale, smoke=(40, 2), paper=(136, 2), full=(256, 12))
    return ModelConfig(layers=("attn",) * n, d_model=d, n_heads=8, pos_emb=True, max_len=MAX_LEN, mlp=True)


def mamba(scale: str = "paper") -> ModelConfig:
    """Mamba (S6): L Mamba blocks in mamba_ssm's prenorm LayerNorm Block, final LN, no positions [C]
    (`fused_add_norm=False`, `rms_norm=False`, `residual_in_fp32=False`; d_state 16, d_conv 4, expand 2).

    paper: D=128, 4 blocks (`conf/mamba/linear_regression.yaml` [C], 0.47M). full: D=256, 24 blocks (Park's README
    pairing with GPT-2 12 layers; Grazzi et al.'s Mamba [C], 10.5M). Grazzi use RMSNorm with fused add-norm and an
    fp32 residual [C]: `replace(mamba(scale), norm="rmsnorm")` gives the norm (the residual is fp32 here anyway);
    their `_init_weights` also zeroes the read-in and read-out biases, which keep PyTorch's init here and in Park's.
    """
    d, n = _pick(scale, smoke=(32, 4), paper=(128, 4), full=(256, 24))
    return ModelConfig(layers=("mamba",) * n, d_model=d)


def mamba_s4(scale: str = "paper") -> ModelConfig:
    """Mamba without selection (Δ, B, C input-independent; s4.py lists every difference from the official
    `s4-mamba`), at exactly Mamba's width and depth so that selection is the only change. It has 10% fewer
    parameters than `mamba` (the dropped x_proj / dt_proj); the official `s4-mamba` has 7% fewer.

    Which non-selective model Park et al.'s "S4 vs S6" parity figure uses is UNVERIFIED. Found in the code [C]:
    `conf/s4/linear_regression.yaml` (run "LR_s4_embd128_layer4") uses `family: s4d` ("original s4
    implementation": LN → S4D(N=16) → GELU → GLU, no conv, no gate; see `s4d` with d_state=16), while the Mamba-style
    `s4-mamba` family exists in `models.py` with dropout 0.1 and no config using it.
    """
    return ModelConfig(layers=("mamba_s4",) * len(mamba(scale).layers), d_model=mamba(scale).d_model)


def mambaformer(scale: str = "paper") -> ModelConfig:
    """MambaFormer (Park et al.): a Mamba block in place of positional encoding, then for i in 0..L-1 attention if
    i is even, Mamba if odd [C `MixerModel`, mixed_attn="mambaformer"]: L=4 gives M, A, M, A, M (5 blocks).
    Attention is nanoGPT's: 8 heads (hard-coded default [C]), qkv bias, no MLP anywhere, PyTorch default init with
    zeroed biases (mamba_ssm `_init_weights` [C]), no positions.

    paper: D=128, L=4 (`conf/hybrid/linear_regression.yaml` [C], 0.49M). full: D=256, L=26 (Park's README pairs
    L=24 with GPT-2; L=24 gives 8.9M, 11% below the scale's median, L=26 gives 9.6M).
    """
    d, n = _pick(scale, smoke=(32, 4), paper=(128, 4), full=(256, 26))
    return ModelConfig(layers=("mamba",) + _alternate(n), d_model=d, n_heads=8, mlp=False, attn_init="torch")


def standard_hybrid(scale: str = "paper") -> ModelConfig:
    """Standard Hybrid (Park et al.): learned positions, then attention at even i, Mamba at odd i
    [C mixed_attn="standard"]: L=4 gives A, M, A, M. Attention as in `mambaformer`.

    Park's `wpe` is `nn.Embedding(n_positions, D)`: n_positions rows, not 2× as for GPT-2, so n_positions must cover
    the prompt's 2N tokens (the sample config sets n_positions 101 for 82 tokens [C]); ours has `MAX_LEN` rows. It
    sits outside the MixerModel, so it keeps PyTorch's N(0, 1) init [C]; ours is N(0, 0.02) like GPT-2's.
    paper: D=144, L=4 (the sample config is D=128, L=4 [C]: 0.37M, 21% below Mamba; widened to match; head size 18
    takes SDPA's math path on GPU, see `transformer`).
    full: D=256, L=28 (L=24 gives 8.4M, 15% below the median).
    """
    d, n = _pick(scale, smoke=(40, 4), paper=(144, 4), full=(256, 28))
    return ModelConfig(
        layers=_alternate(n), d_model=d, n_heads=8, pos_emb=True, max_len=MAX_LEN, mlp=False, attn_init="torch"
    )


def s4d(scale: str = "paper") -> ModelConfig:
    """S4 (S4D) baseline of Grazzi et al. [C s4_mod/s4_model.py]: S4D layers with N=64, S4D-Lin init, GELU + GLU
    output, dropout 0.1, width chosen to match Mamba's parameters at Mamba's depth (their 24 × D=435 ≈ 10.5M).
    Deviations: their stack is postnorm (norm after the residual add, no final norm) and adds a second dropout on
    each block's output; ours is the prenorm backbone. Their SSM parameters get lr min(1e-3, lr) [C].

    paper: D=208, 4 blocks. full: D=435, 24 blocks [C]. Park et al.'s `s4d` family is the same layer with N=16 in a
    prenorm Block [C]: `replace(s4d(scale), d_state=16, dropout=0.0)`.
    """
    d, n = _pick(scale, smoke=(44, 4), paper=(208, 4), full=(435, 24))
    return ModelConfig(layers=("s4d",) * n, d_model=d, d_state=64, dropout=0.1, s4d_init="lin")


def rwkv(scale: str = "paper") -> ModelConfig:
    """RWKV-4 (rwkv.py): L × [time-mix, channel-mix], ~13D² per layer, so one layer ≈ one GPT-2 layer ≈ 2 Mamba
    blocks. Grazzi et al. compare pretrained RWKV LMs only on NLP tasks [C]; there is no official ICL-regression
    RWKV config, so this one is sized like the Transformer. paper: D=128, L=2. full: D=256, L=12.
    """
    d, n = _pick(scale, smoke=(40, 2), paper=(128, 2), full=(256, 12))
    return ModelConfig(layers=("rwkv",) * n, d_model=d)


PRESETS: dict[str, Callable[[str], ModelConfig]] = {
    "transformer": transformer,
    "mamba": mamba,
    "mamba_s4": mamba_s4,
    "mambaformer": mambaformer,
    "standard_hybrid": standard_hybrid,
    "s4d": s4d,
    "rwkv": rwkv,
}


def param_counts(scale: str = "paper", io: IOSpec | None = None) -> dict[str, dict[str, int]]:
    """Parameters of every preset at `scale` for `io` (default: scalar regression, d=20):
    `{name: {"total": ..., "matched": ... (without the position table), "blocks": len(layers), "d_model": ...}}`.
    Logs a table."""
    from icllib.models import build_model

    io = io or IOSpec("pairs", d_in=20, d_out=1)
    out: dict[str, dict[str, int]] = {}
    for name, factory in PRESETS.items():
        cfg = factory(scale)
        model = build_model(cfg, io, seed=0)
        out[name] = {
            "total": model.num_params(),
            "matched": model.num_params(include_positions=False),
            "blocks": len(cfg.layers),
            "d_model": cfg.d_model,
        }
    lines = [f"{n:>16s} D={c['d_model']:<4d} blocks={c['blocks']:<3d} {c['matched']:>12,d} ({c['total']:,d} with "
             "positions)" for n, c in out.items()]
    log.info("parameter counts at scale %r (io %s):\n%s", scale, io.format, "\n".join(lines))
    return out
