"""The paper's cost of a stage as a function of the fraction of pixels it computes.

A leaf module: `model_zoo.flops` counts the terms from the network, bundles store them, and the
runtime's default cost model evaluates them here (a phone has no model_zoo).
"""

from __future__ import annotations


def stage_macs(fixed: float, masked: float, fill: float, computed: float = 1.0) -> float:
    """fixed + masked * p + (1 - p) * p * fill, with p the fraction of pixels computed.

    fixed: convs never masked (stage 1); masked: convs governed by the previous exit's mask;
    fill: C_out * window^2 * H * W summed over the masked convs (the RBF fill term).
    """
    if not 0.0 <= computed <= 1.0:
        raise ValueError(f"computed fraction must lie in [0, 1], got {computed}")
    p = computed
    return fixed + masked * p + (1.0 - p) * p * fill
