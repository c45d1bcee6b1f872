"""Models: one `ICLModel` (icl.py) around a `Backbone` of registered mixers (backbone.py), and presets.

    cfg = presets.mambaformer(scale="paper")                  # a ModelConfig: the architecture as data
    model = build_model(cfg, task.io(), seed=0)               # reproducible init, parameter count logged
    pred = model(batch)                                       # shapes per task format (icl.py)

Importing this package registers every mixer: "attn", "mamba", "mamba_s4", "s4d", "rwkv" (`MIXERS`).
"""

from __future__ import annotations

import logging

import torch

from icllib.batch import IOSpec
from icllib.config import ModelConfig
from icllib.models import attention, mamba, presets, rwkv, s4  # noqa: F401  (importing registers the mixers)
from icllib.models.backbone import MIXERS, Backbone, Block
from icllib.models.icl import ICLModel
from icllib.repro import INIT_SEED_OFFSET

log = logging.getLogger(__name__)

__all__ = ["MIXERS", "Backbone", "Block", "ICLModel", "build_model", "presets"]


def build_model(cfg: ModelConfig, io: IOSpec, *, seed: int) -> ICLModel:
    """An `ICLModel` initialised from `seed` alone, on CPU, in fp32.

    Initialisation draws from the global torch RNG inside `torch.random.fork_rng`, seeded with the init seed range
    (`repro.INIT_SEED_OFFSET + seed`), so the caller's RNG state is untouched and the same seed always gives the same
    weights. Logs the parameter count.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(INIT_SEED_OFFSET + seed)
        model = ICLModel(cfg, io)
    log.info(
        "model %s d_model=%d io=%s: %s parameters",
        "-".join(cfg.layers), cfg.d_model, io.format, f"{model.num_params():,}",
    )
    return model
