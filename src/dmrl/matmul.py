"""Which library computes float32 matrix products on the CPU: torch's BLAS or oneDNN (``matmul=``).

torch sends float32 products to its BLAS (MKL in the pip wheels). MKL picks its kernels by CPU
vendor: on an AMD CPU with AVX-512 it runs its AVX2 kernels, while oneDNN, which picks by
instruction set, runs about twice as fast on large products there (``scripts/benchmark.py --case
blas`` measures both on the machine at hand). torch's one switch that routes float32 products
(``mm``, ``bmm``, ``addmm``, ``linear``) to oneDNN is ``torch.backends.mkldnn.matmul.fp32_precision
= "bf16"``, which also *allows* oneDNN to compute them in bfloat16 where the CPU multiplies
bfloat16 natively (AMX). ``matmul=onednn`` therefore sets it only after a probe product has
float32 accuracy on this CPU, and refuses in one line otherwise, before any work.

The choice is part of what a run computes (the products' round-off differs between the libraries),
so it is a training key stored with the checkpoint: a resume and ``dmrl-eval`` use the run's own.
It applies to the process that builds the learner (``dmrl.build.build``); Ray's sampler workers
keep torch's BLAS.
"""

from __future__ import annotations

import torch

from dmrl.config import MATMUL_CHOICES as CHOICES
from dmrl.errors import ConfigError

# float32 round-off of the probe's 512-term dot products is ~5e-7-1e-6 relative; bfloat16 inputs give ~4e-3
MAX_RELATIVE_ERROR = 1e-5
_SWITCH_ON, _SWITCH_OFF = "bf16", "none"


def torch_switch():
    """torch's oneDNN float32 matmul switch (``None`` where this torch has none)."""
    matmul = getattr(getattr(torch.backends, "mkldnn", None), "matmul", None)
    return matmul if matmul is not None and hasattr(matmul, "fp32_precision") else None


def probe_error() -> float:
    """Largest error, relative to the largest entry, of float32 products against float64 (with the
    switch as it is now): a layer's (``linear``: addmm) and a batched one (``bmm``: MAML's curvature)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(256, 512, generator=g), torch.randn(512, 256, generator=g)
    x, y = torch.randn(4, 128, 512, generator=g), torch.randn(4, 512, 128, generator=g)
    worst = 0.0
    for out, ref in ((torch.nn.functional.linear(a, b.t()), a.double() @ b.double()),
                     (torch.bmm(x, y), torch.bmm(x.double(), y.double()))):
        worst = max(worst, float((out.double() - ref).abs().max() / ref.abs().max()))
    return worst


def use(choice: str) -> None:
    """Route this process's float32 CPU products as ``choice`` says (``CHOICES``)."""
    switch = torch_switch()
    if choice == "blas":
        if switch is not None:
            switch.fp32_precision = _SWITCH_OFF
        return
    if choice != "onednn":
        raise ConfigError(f"matmul must be one of {', '.join(CHOICES)}, got {choice!r}")
    if switch is None:
        raise ConfigError(f"matmul=onednn: torch {torch.__version__} has no oneDNN float32 matmul switch "
                          "(torch.backends.mkldnn.matmul.fp32_precision); use matmul=blas")
    switch.fp32_precision = _SWITCH_ON
    err = probe_error()
    if not err <= MAX_RELATIVE_ERROR:
        switch.fp32_precision = _SWITCH_OFF
        raise ConfigError(f"matmul=onednn: oneDNN computes float32 products in lower precision on this CPU (relative "
                          f"error {err:.1e} against float64, float32 allows {MAX_RELATIVE_ERROR:.0e}: bfloat16); use "
                          "matmul=blas")


def current() -> str:
    """``onednn`` where the switch routes float32 products to oneDNN now, else ``blas``."""
    switch = torch_switch()
    return "onednn" if switch is not None and switch.fp32_precision == _SWITCH_ON else "blas"
