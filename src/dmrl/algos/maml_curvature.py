"""Exact products with the Hessian of MAML's post-adaptation KL, without third-order autograd.

TRPO's outer step needs ``v -> H v`` with ``H`` the Hessian, with respect to the meta-parameters
``theta``, of the mean over tasks of ``KL(pi_old_i || pi_{theta_i'})``, where
``theta_i' = U_i(theta)`` is the inner adaptation (``K`` policy-gradient steps). At the current
point the adapted policy *is* the old one, so the gradient of the KL with respect to ``theta_i'``
vanishes and the chain rule leaves only

    H = sum_i J_i^T F_i J_i,   J_i = d theta_i' / d theta = (I - a H_i^{K-1}) ... (I - a H_i^0),

``H_i^k`` the Hessian of task ``i``'s ``k``-th inner loss at its ``k``-th adapted point (``J_i = I``
for first-order MAML) and ``F_i`` the Hessian of task ``i``'s share of the mean KL at its adapted
point. For a Gaussian with a state-independent log-std, ``F_i`` is the Gauss-Newton (Fisher) form:
``J_mu^T diag(w / sigma^2) J_mu`` on the network and ``2 w`` on each (unclamped) log-std entry.

Everything is evaluated at one fixed point per TRPO step, so :func:`maml_products` runs the MLP
forward (and the inner losses' backward) once, caches activations and their derivatives, and each
product is then a handful of batched matrix products over the task axis and elementwise products:

* ``H_i^k v`` is Pearlmutter's R-op of the inner-loss gradient written out by hand (forward
  tangents ``Rz``, backward ``R delta``), with the second-derivative terms of the activations
  (``phi''``) and of the Gaussian log-likelihood;
* ``F_i v`` is the Gauss-Newton product ``J_mu^T (lam * (J_mu v))``: one forward pass of the
  tangents and one backward pass, no second derivatives;
* the cross terms between the first layer (whose input is the small observation) and the second
  one are contracted over the samples once, so the products never touch them per sample.

Cost of a product: for every hidden-to-hidden weight matrix, 4 batched matrix products of size
(samples x width x width) per second-order inner step and per direction (``J`` and ``J^T``), plus 4
for the KL; the rest is elementwise or involves only the small observation/action widths. The
setup (forward and backward passes at the fixed point) costs about two products.

Layout: per-sample arrays are kept feature-major, ``[N, features, M]`` (``M`` = steps x episodes of
a task), with a row of ones appended to the input of every linear map so that biases ride along in
the matrix products (``W~ = [W | b]``). Rows with ``mask = 0`` carry zero weight and are dropped
before anything is cached. Every tensor stays on the policy's device; a product does no host
synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dmrl.policies.gaussian_mlp import GaussianMLPPolicy
from dmrl.samplers.episodes import Episodes

# First-layer cross terms are contracted over the samples when the first layer has at most this
# many inputs (observation dims + 1 for the bias); beyond it they are computed per sample.
MAX_CONTRACTED_INPUTS = 32

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

# An activation writes ``phi(z)`` to ``out`` (``z`` is scratch, it may be overwritten) and returns
# ``phi'(z)`` and, if asked for, ``phi''(z)`` (``None`` where it vanishes identically).
Activation = Callable[[Tensor, Tensor, bool], tuple[Tensor, Tensor | None]]


# --- activations ---------------------------------------------------------------------------------
def _tanh(z: Tensor, out: Tensor, second: bool) -> tuple[Tensor, Tensor | None]:
    # tanh(z) = 2 sigmoid(2 z) - 1: equal to float32 round-off, and about twice as fast on CPU
    h = torch.sigmoid(z.mul_(2.0), out=out).mul_(2.0).sub_(1.0)
    d1 = torch.mul(h, h).neg_().add_(1.0)
    return d1, torch.mul(h, d1).mul_(-2.0) if second else None


def _relu(z: Tensor, out: Tensor, second: bool) -> tuple[Tensor, Tensor | None]:
    torch.clamp_min(z, 0.0, out=out)
    return (z > 0).to(z.dtype), None  # as autograd: relu'(0) = 0


def _elu(z: Tensor, out: Tensor, second: bool) -> tuple[Tensor, Tensor | None]:
    # at z == 0 autograd takes elu' from the exponential side (1) and elu'' from the linear one (0)
    exp = torch.exp(torch.clamp_max(z, 0.0))
    out.copy_(torch.where(z > 0, z, exp - 1.0))
    d2 = torch.where(z < 0, exp, torch.zeros_like(z)) if second else None
    return torch.where(z > 0, torch.ones_like(z), exp), d2


def _gelu(z: Tensor, out: Tensor, second: bool) -> tuple[Tensor, Tensor | None]:
    cdf = 0.5 * (1.0 + torch.erf(z * _SQRT_HALF))
    pdf = torch.exp(-0.5 * z * z) * _INV_SQRT_2PI
    torch.mul(z, cdf, out=out)
    return cdf + z * pdf, pdf * (2.0 - z * z) if second else None


_DERIVATIVES: dict[Callable, Activation] = {torch.tanh: _tanh, torch.relu: _relu, F.elu: _elu, F.gelu: _gelu}


# --- parameter-shaped per-task tensors -------------------------------------------------------
@dataclass
class _Dir:
    """A per-task parameter-shaped tensor: weights ``[N, out, in]`` and biases ``[N, out]`` of each
    linear map (the mean head last) and the log-std ``[N, act]``."""

    W: list[Tensor]
    b: list[Tensor]
    s: Tensor

    def tilde(self, l: int) -> Tensor:
        """``[W_l | b_l]``, ``[N, out, in + 1]``."""
        return torch.cat([self.W[l], self.b[l].unsqueeze(-1)], dim=-1)

    def add_scaled(self, alpha: float, other: _Dir) -> _Dir:
        return _Dir(
            [w + alpha * o for w, o in zip(self.W, other.W)],
            [b + alpha * o for b, o in zip(self.b, other.b)],
            self.s + alpha * other.s,
        )

    @staticmethod
    def from_tilde(Wt: list[Tensor], s: Tensor) -> _Dir:
        return _Dir([w[..., :-1] for w in Wt], [w[..., -1] for w in Wt], s)


class _Layout:
    """Maps the policy's flat parameter vector (``policy.parameters()`` order) to :class:`_Dir`."""

    def __init__(self, policy: GaussianMLPPolicy) -> None:
        L = len(policy.layers)
        self.w_names = [f"layers.{i}.weight" for i in range(L)] + ["mu.weight"]
        self.b_names = [f"layers.{i}.bias" for i in range(L)] + ["mu.bias"]
        named = list(policy.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = {n: p.shape for n, p in named}
        self.ok = sorted(self.names) == sorted([*self.w_names, *self.b_names, "log_std"])

    def params(self, policy: GaussianMLPPolicy, n: int) -> _Dir:
        p = dict(policy.named_parameters())
        ex = lambda t: t.detach().unsqueeze(0).expand(n, *t.shape)  # noqa: E731
        return _Dir([ex(p[k]) for k in self.w_names], [ex(p[k]) for k in self.b_names], ex(p["log_std"]))

    def unflatten(self, v: Tensor, n: int) -> _Dir:
        parts, i = {}, 0
        for name in self.names:
            shape = self.shapes[name]
            k = shape.numel()
            parts[name] = v[i : i + k].view(shape).unsqueeze(0).expand(n, *shape)
            i += k
        return _Dir([parts[k] for k in self.w_names], [parts[k] for k in self.b_names], parts["log_std"])

    def flatten_task_sum(self, d: _Dir) -> Tensor:
        parts = dict(zip(self.w_names, d.W)) | dict(zip(self.b_names, d.b)) | {"log_std": d.s}
        return torch.cat([parts[name].sum(0).reshape(-1) for name in self.names])


# --- episode rows ----------------------------------------------------------------------------
def _task_rows(mask: Tensor, *tensors: Tensor) -> tuple[Tensor, Tensor, list[Tensor]]:
    """Feature-major per-task samples ``[N, features, M]`` of ``[T, N, B, features]`` tensors,
    keeping only the rows any task needs: each task's live steps first, padded to the largest
    count with rows of zero mask.

    Returns the row mask ``[N, 1, M]``, the per-task counts clamped to >= 1 ``[N]`` and the tensors.
    """
    T, N, B = mask.shape
    m = mask.transpose(0, 1).reshape(N, T * B)
    rows = [t.transpose(0, 1).reshape(N, T * B, -1) for t in tensors]
    counts = m.sum(1)
    keep = max(int(counts.max().item()), 1)
    if keep < T * B:
        order = torch.argsort(m, dim=1, descending=True, stable=True)[:, :keep]
        m = torch.gather(m, 1, order)
        rows = [torch.gather(r, 1, order.unsqueeze(-1).expand(N, keep, r.shape[-1])) for r in rows]
    return m.unsqueeze(1), counts.clamp_min(1.0), [r.transpose(1, 2).contiguous() for r in rows]


def _with_ones(xT: Tensor) -> Tensor:
    return torch.cat([xT, torch.ones_like(xT[:, :1])], dim=1)


def _tr(x: Tensor) -> Tensor:
    return x.transpose(1, 2)


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    """``torch.bmm`` that computes a product with a narrow result (few columns, many rows) as the
    transpose of the wide one: CPU BLAS is several times slower in the narrow orientation."""
    if b.shape[2] < 16 and a.shape[1] > b.shape[2]:
        return _tr(torch.bmm(_tr(b), _tr(a)))
    return torch.bmm(a, b)


def _grad(dT: Tensor, inT: Tensor) -> Tensor:
    """Weight gradient ``dT @ inT^T`` (``[N, out, M] x [N, M, in]``, a sum over the samples), in
    the orientation BLAS runs fastest."""
    if dT.shape[1] < 16 or inT.shape[1] < 16:
        return _bmm(dT, _tr(inT))
    return _tr(torch.bmm(inT, _tr(dT)))


class _Workspace:
    """Scratch arrays reused by every product: a fresh allocation of a large array costs page faults
    on CPU (allocations beyond malloc's mmap threshold, 32 MiB at most, go back to the system when
    freed). Products run one after the other and nothing in the workspace outlives one, so arrays
    are shared by role and shape."""

    def __init__(self) -> None:
        self.arrays: dict[tuple, Tensor] = {}

    def __call__(self, role: object, like: Tensor) -> Tensor:
        key = (role, tuple(like.shape), like.dtype, like.device)
        a = self.arrays.get(key)
        if a is None:
            a = self.arrays[key] = torch.empty_like(like, memory_format=torch.contiguous_format)
        return a


class _Net:
    """Forward pass of the MLP on per-task parameters ``P`` with cached activation derivatives.

    ``inT[l]`` is the input of linear map ``l`` with a row of ones, ``[N, n + 1, M]`` (``inT[0]``
    the observations), ``d1T[l]``/``d2T[l]`` the first/second derivative ``[N, n_l, M]`` of the
    activation after map ``l < L`` (``d2T`` is ``None`` where it vanishes) and ``muT`` the mean.
    """

    def __init__(self, P: _Dir, xT: Tensor, act: Activation, keep_second: bool) -> None:
        self.L = L = len(P.W) - 1
        self.inT = [xT]
        self.d1T: list[Tensor] = []
        self.d2T: list[Tensor | None] = []
        for l in range(L):
            z = torch.bmm(P.tilde(l), self.inT[l])
            n = z.shape[1]
            hT = z.new_empty(z.shape[0], n + 1, z.shape[2])
            hT[:, n] = 1.0
            d1, d2 = act(z, hT[:, :n], keep_second)
            self.inT.append(hT)
            self.d1T.append(d1)
            self.d2T.append(d2)
        self.muT = torch.bmm(P.tilde(L), self.inT[L])  # [N, act, M]


# --- inner steps: gradient (for the adaptation) and Hessian-vector products ------------------
class _InnerStep:
    """Task-wise inner loss ``-masked_mean(log pi * adv)`` at per-task parameters ``P``: its
    gradient (``grad``) and products with its Hessian (``hvp``)."""

    lr = 0.0  # the step's size where it is an inner step (MAMLProducts sets it): the chain rule's I - lr H

    def __init__(
        self,
        P: _Dir,
        ep: Episodes,
        adv: Tensor,
        act: Activation,
        min_log_std: float,
        second_order: bool,
        ws: _Workspace,
        lvc: bool = False,
    ) -> None:
        self.ws = ws
        dtype = P.s.dtype
        mask, counts, (xT, aT, advT) = _task_rows(
            ep.mask.to(dtype), ep.obs.to(dtype), ep.actions.to(dtype), adv.to(dtype).unsqueeze(-1)
        )
        wT = mask * advT / counts[:, None, None]  # [N, 1, M]
        net = _Net(P, _with_ones(xT), act, keep_second=second_order)
        L = net.L
        s = P.s.clamp_min(min_log_std)
        m = (P.s >= min_log_std).to(dtype)  # where the clamp passes gradients
        inv_var = torch.exp(-2.0 * s).unsqueeze(-1)  # [N, act, 1]
        diffT = aT - net.muT
        gT = -wT * diffT * inv_var  # d loss / d mu  [N, act, M]
        wz2T = wT * diffT * diffT * inv_var
        gs = -m * (wz2T.sum(-1) - wT.sum(-1))  # d loss / d log_std  [N, act]

        # backward pass: delta[l] = d loss / d z_l  [N, n_l, M]  (z_L = mu)
        delta: list[Tensor] = [gT] * (L + 1)
        gamma: list[Tensor | None] = [None] * L
        for l in range(L, 0, -1):
            eps = torch.bmm(_tr(P.W[l]), delta[l])
            delta[l - 1] = eps * net.d1T[l - 1]
            if net.d2T[l - 1] is not None:
                gamma[l - 1] = eps.mul_(net.d2T[l - 1])
        self.grad = _Dir.from_tilde([_grad(delta[l], net.inT[l]) for l in range(L + 1)], gs)
        if not second_order:
            return
        delta[0] = None  # type: ignore[call-overload]  # the products need delta_l, l >= 1 only
        net.d2T = []  # now in gamma

        self.net, self.W, self.L, self.m = net, P.W, L, m
        self.gT, self.delta, self.gamma = gT, delta, gamma
        self.c1T = wT * inv_var  # R(g) = c1 R(mu) + c2 R(s)
        self.c2T = -2.0 * gT
        self.c3 = 2.0 * wz2T.sum(-1)  # R(gs) = m (sum(c2 R(mu)) + c3 R(s))
        # LVC (ProMP's low-variance curvature) adds -sum_s w_s A_s score_s score_s^T to the Hessian:
        # r_s = score_s . V from the forward tangents, then J^T of (d loss / d head) * r_s.
        self.lvc = lvc
        if lvc:
            self.wT = wT
            self.scoreT = diffT * inv_var  # d log pi / d mu  [N, act, M]
            self.z2m1T = diffT * diffT * inv_var - 1.0  # d log pi / d log_std  [N, act, M]
        n_in = xT.shape[1] + 1
        self.contract = L >= 1 and n_in <= MAX_CONTRACTED_INPUTS
        if self.contract:
            # Cross terms of layer 0 (input x~ = [x, 1]) with layer 1, summed over the samples once:
            #   C[c, k, j] = sum_s delta1[k, s] phi0'[j, s] x~[c, s]
            #   K[c, c', j] = sum_s gamma0[j, s] x~[c, s] x~[c', s]
            # stored as Cj [N, j, k, c] and Kj [N, j, c, c'] for batched products over (task, j)
            x1, d1 = net.inT[0], net.d1T[0]
            scratch = torch.empty_like(d1)
            C = [_grad(delta[1], torch.mul(d1, x1[:, c : c + 1], out=scratch)) for c in range(n_in)]
            self.Cj = torch.stack(C, -1).transpose(1, 2).contiguous()  # [N, n0, n1, c]
            if gamma[0] is not None:
                K = [_grad(torch.mul(gamma[0], x1[:, c : c + 1], out=scratch), x1) for c in range(n_in)]
                self.Kj = torch.stack(K, 2)  # [N, n0, c, c']
            else:
                self.Kj = None
            delta[1] = gamma[0] = None  # type: ignore[call-overload]  # only used through C and K

    def hvp(self, V: _Dir) -> _Dir:
        """Products with each task's Hessian of its inner loss (with respect to its own parameters)."""
        net, W, L, contract, ws = self.net, self.W, self.L, self.contract, self.ws
        Rs = self.m * V.s
        # forward tangents: RzT[l] of the pre-activations, RhT[l] of the input of linear map l
        RzT: list[Tensor | None] = [None] * L
        RhT: list[Tensor | None] = [None] * (L + 1)
        for l in range(L):
            d1 = net.d1T[l]
            z = torch.bmm(V.tilde(l), net.inT[l], out=ws(("Rz", l), d1))
            if l > 0:
                z = z.baddbmm_(W[l], RhT[l])
            if l == 0 and contract:  # R(z0) enters only through R(h0): first-layer terms are in C, K
                RhT[1] = z.mul_(d1)
            else:
                RzT[l], RhT[l + 1] = z, torch.mul(d1, z, out=ws(("Rh", l), d1))
        RmuT = torch.bmm(V.tilde(L), net.inT[L])
        if L > 0:
            RmuT = RmuT.baddbmm_(W[L], RhT[L])
        RgT = self.c1T * RmuT + self.c2T * Rs.unsqueeze(-1)
        Rgs = self.m * ((self.c2T * RmuT).sum(-1) + self.c3 * Rs)
        if self.lvc:
            rT = (self.scoreT * RmuT).sum(1, keepdim=True) + (self.z2m1T * Rs.unsqueeze(-1)).sum(1, keepdim=True)
            RgT = RgT + self.gT * rT
            Rgs = Rgs - self.m * (self.wT * self.z2m1T * rT).sum(-1)

        # backward: R(delta) layer by layer, and the R-gradient [W~] of every linear map
        out: list[Tensor] = [None] * (L + 1)  # type: ignore[list-item]
        RdT = RgT
        for l in range(L, 0, -1):
            cross = not (l == 1 and contract)
            out[l] = _grad(RdT, net.inT[l])
            d1 = net.d1T[l - 1]
            buf = ws(("Re", l), d1)
            if cross:
                out[l][..., :-1] += _bmm(self.delta[l], _tr(RhT[l]))
                if l == L:  # narrow factors: one product with both
                    ReT = torch.bmm(_tr(torch.cat([W[l], V.W[l]], 1)), torch.cat([RdT, self.delta[l]], 1), out=buf)
                else:
                    ReT = torch.bmm(_tr(W[l]), RdT, out=buf).baddbmm_(_tr(V.W[l]), self.delta[l])
            else:
                ReT = torch.bmm(_tr(W[l]), RdT, out=buf)
            RdT = ReT.mul_(d1)
            if cross and self.gamma[l - 1] is not None:
                RdT = RdT.addcmul_(self.gamma[l - 1], RzT[l - 1])
        out[0] = _grad(RdT, net.inT[0])
        if contract:
            Vt = V.tilde(0).unsqueeze(-1)  # [N, n0, c, 1]
            out[1][..., :-1] += _tr(torch.matmul(self.Cj, Vt).squeeze(-1))  # sum_c C[c,k,j] V0~[j,c]
            extra = torch.matmul(_tr(V.W[1]).unsqueeze(-2), self.Cj).squeeze(-2)  # sum_k V1[k,j] C[c,k,j]
            if self.Kj is not None:
                extra = extra + torch.matmul(self.Kj, Vt).squeeze(-1)  # sum_c' K[c,c',j] V0~[j,c']
            out[0] = out[0] + extra
        return _Dir.from_tilde(out, Rgs)


# --- the KL at the adapted point ---------------------------------------------------------------
class _KLCurvature:
    """Hessian of ``mean_i masked_mean(KL(pi_old || pi))`` at ``pi = pi_old`` for per-task params:
    ``J_mu^T diag(lam) J_mu`` on the network (``lam = w / sigma^2``, a forward pass of the tangents
    and a backward pass of ``lam * R(mu)``) and ``2 w`` on the log-std."""

    def __init__(
        self, P: _Dir, ep: Episodes, act: Activation, min_log_std: float, n_tasks: int, ws: _Workspace
    ) -> None:
        self.ws = ws
        dtype = P.s.dtype
        mask, counts, (xT,) = _task_rows(ep.mask.to(dtype), ep.obs.to(dtype))
        w = mask / counts[:, None, None] / n_tasks  # [N, 1, M]
        self.net = _Net(P, _with_ones(xT), act, keep_second=False)
        self.W, self.L = P.W, self.net.L
        s = P.s.clamp_min(min_log_std)
        self.lamT = w * torch.exp(-2.0 * s).unsqueeze(-1)  # [N, act, M]
        self.s_fac = 2.0 * (P.s >= min_log_std).to(dtype) * w.sum(-1)  # [N, act]

    def fvp(self, V: _Dir) -> _Dir:
        net, W, L, ws = self.net, self.W, self.L, self.ws
        Rh = None  # forward tangent of the input of linear map l
        for l in range(L):
            d1 = net.d1T[l]
            z = torch.bmm(V.tilde(l), net.inT[l], out=ws(("Rz", l), d1))
            if l > 0:
                z = z.baddbmm_(W[l], Rh)
            Rh = z.mul_(net.d1T[l])
        RmuT = torch.bmm(V.tilde(L), net.inT[L])
        if L > 0:
            RmuT = RmuT.baddbmm_(W[L], Rh)
        dT = self.lamT * RmuT
        out: list[Tensor] = [None] * (L + 1)  # type: ignore[list-item]
        for l in range(L, -1, -1):
            out[l] = _grad(dT, net.inT[l])
            if l > 0:
                d1 = net.d1T[l - 1]
                dT = torch.bmm(_tr(W[l]), dT, out=ws(("Re", l), d1)).mul_(d1)
        return _Dir.from_tilde(out, self.s_fac * V.s)


# --- public entry point ------------------------------------------------------------------------
def _slice_episodes(ep: Episodes, lo: int, hi: int) -> Episodes:
    return Episodes(ep.obs[:, lo:hi], ep.actions[:, lo:hi], ep.rewards[:, lo:hi], ep.mask[:, lo:hi])


def _first_episodes(ep: Episodes, k: int | None) -> Episodes:
    if k is None:
        return ep
    return Episodes(ep.obs[:, :, :k], ep.actions[:, :, :k], ep.rewards[:, :, :k], ep.mask[:, :, :k])


class MAMLProducts:
    """Everything TRPO's outer step needs from one fixed point, from one pass over the batch.

    ``fvp(v)`` is ``v -> H v`` for the Hessian ``H`` of MAML's mean post-adaptation KL at the
    current meta-parameters (see the module docstring). ``meta_gradient()`` (when built with
    ``outer_weights``) is the exact gradient of the post-adaptation surrogate
    ``-mean_i masked_mean(ratio_i * A_i)`` with respect to the meta-parameters, at the current
    point: ``sum_i J_i^T g_i`` with ``g_i`` the gradient at task ``i``'s adapted point of
    ``-masked_mean(outer_weights_i * log pi) / N`` (``outer_weights = ratio * A``, held fixed: its
    gradient is the surrogate's), and ``J_i^T`` applied as products with the full-batch inner
    Hessians, in reverse order. That replaces back-propagation through the inner step's graph
    (a second-order autograd pass over every sample) with one more Hessian-vector product.
    """

    def __init__(
        self,
        policy: GaussianMLPPolicy,
        act: Activation,
        layout: _Layout,
        train: Sequence[tuple[Episodes, Tensor]],
        valid: Episodes,
        inner_lr: float | Sequence[float],
        first_order: bool,
        chunk: int | None,
        episodes: int | None,
        lvc: bool,
        outer_weights: Tensor | None,
        with_fvp: bool = True,
    ) -> None:
        self.layout = layout
        # the size of each inner step; each _InnerStep carries its own (``lr``) for the chain rule
        lrs = [float(lr) for lr in inner_lr] if isinstance(inner_lr, Sequence) else [float(inner_lr)] * len(train)
        n = valid.mask.shape[1]
        self.dtype = dtype = policy.log_std.dtype
        chunk = chunk or n
        # per chunk of tasks: (curvature steps, KL, gradient steps, outer gradient at the adapted point, size)
        self.pipelines: list[tuple[list[_InnerStep], _KLCurvature, list[_InnerStep], _Dir | None, int]] = []
        with torch.no_grad():
            for lo in range(0, n, chunk):
                hi = min(n, lo + chunk)
                ws = _Workspace()  # shared by the chunk's steps: they run one after the other
                P = layout.params(policy, hi - lo)
                steps: list[_InnerStep] = []
                grad_steps: list[_InnerStep] = []
                for (ep, adv), lr in zip(train, lrs):
                    ep, adv = _slice_episodes(ep, lo, hi), adv[:, lo:hi]
                    subsample = episodes is not None and episodes < ep.mask.shape[2]
                    # the full batch's step: the adapted point, and the meta-gradient's J^T
                    full_second = not first_order and (not subsample or outer_weights is not None)
                    full = _InnerStep(P, ep, adv, act, policy.min_log_std, full_second, ws, lvc)
                    full.lr = lr
                    if not first_order:
                        if outer_weights is not None:
                            grad_steps.append(full)
                        if not with_fvp:  # the meta-gradient alone: no curvature steps
                            P = P.add_scaled(-lr, full.grad)
                            continue
                        # the curvature's step: the same, or from a subset at the same point
                        if subsample:
                            curv = _InnerStep(P, _first_episodes(ep, episodes), adv[:, :, :episodes], act,
                                              policy.min_log_std, True, ws, lvc)
                            curv.lr = lr
                        steps.append(full if not subsample else curv)
                    P = P.add_scaled(-lr, full.grad)
                    del full
                valid_chunk = _slice_episodes(valid, lo, hi)
                kl = _KLCurvature(P, _first_episodes(valid_chunk, episodes), act, policy.min_log_std, n, ws) \
                    if with_fvp else None
                outer = None
                if outer_weights is not None:
                    outer = _InnerStep(P, valid_chunk, outer_weights[:, lo:hi] / n, act, policy.min_log_std, False, ws,
                                       False).grad
                self.pipelines.append((steps, kl, grad_steps, outer, hi - lo))

    def _chain(self, steps, V: _Dir) -> _Dir:
        """``V`` through the inner steps' Jacobians ``I - a H``, in the order of ``steps``."""
        for step in steps:
            V = V.add_scaled(-step.lr, step.hvp(V))
        return V

    @staticmethod
    def _sum(chunks) -> Tensor:
        total = None
        for out in chunks:
            total = out if total is None else total.add_(out)
        return total

    def fvp(self, v: Tensor) -> Tensor:
        def chunk(steps: list[_InnerStep], kl: _KLCurvature, size: int) -> Tensor:
            JV = self._chain(steps, self.layout.unflatten(v.to(self.dtype), size))
            return self.layout.flatten_task_sum(self._chain(reversed(steps), kl.fvp(JV)))  # J^T F J v

        with torch.no_grad():
            return self._sum(chunk(steps, kl, size) for steps, kl, _, _, size in self.pipelines).to(v.dtype)

    def meta_gradient(self) -> Tensor:
        if any(outer is None for *_, outer, _ in self.pipelines):
            raise ValueError("meta_gradient() needs MAMLProducts built with outer_weights")
        with torch.no_grad():
            return self._sum(self.layout.flatten_task_sum(self._chain(reversed(grad_steps), outer))
                             for _, _, grad_steps, outer, _ in self.pipelines)


def maml_products(
    policy: GaussianMLPPolicy,
    train: Sequence[tuple[Episodes, Tensor]],
    valid: Episodes,
    inner_lr: float | Sequence[float],
    first_order: bool,
    chunk: int | None = None,
    episodes: int | None = None,
    lvc: bool = False,
    outer_weights: Tensor | None = None,
    with_fvp: bool = True,
    check_only: bool = False,
) -> MAMLProducts | None:
    """:class:`MAMLProducts` at the current meta-parameters, or ``None`` if the policy is not
    supported (another policy class or activation).

    ``train`` holds each inner step's episodes and advantages, ``valid`` the post-adaptation
    episodes. Tasks are independent until the final sum; ``chunk`` tasks at a time (default: all)
    bounds the memory of the cached arrays. ``episodes`` (default: all) estimates the curvature
    from only the first that many episodes of each task, of every inner step and of the
    post-adaptation batch (the subsampled Fisher of Schulman's TRPO: the metric needs no full
    batch); the adapted points and the meta-gradient still come from every episode. ``lvc``: the
    inner losses are ProMP's low-variance-curvature objective (same gradient, Hessian plus the
    advantage-weighted outer products of the scores). ``outer_weights`` ``[T, N, B]``
    (``ratio * A`` of the post-adaptation surrogate) enables :meth:`MAMLProducts.meta_gradient`;
    ``with_fvp=False`` builds only what the meta-gradient needs (an outer rule without curvature).
    """
    if not isinstance(policy, GaussianMLPPolicy):
        return None
    act = _DERIVATIVES.get(policy.activation)
    layout = _Layout(policy)
    if act is None or not layout.ok:
        return None
    if check_only:  # the policy is supported; build nothing
        return True
    return MAMLProducts(policy, act, layout, train, valid, inner_lr, first_order, chunk, episodes, lvc, outer_weights,
                        with_fvp)

