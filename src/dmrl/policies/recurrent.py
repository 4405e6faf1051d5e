"""RL²'s recurrent policy (Duan et al. 2016): a GRU over (observation, previous action, previous
reward, done flag), with a categorical head for discrete action spaces and a Gaussian head with a
state-independent log-std for continuous ones, plus a value head on the same hidden state.

The hidden state is the learner's memory of the task: the sampler carries it across the episodes
of a trial and starts every trial from zeros. Options beyond the paper's network: a separate GRU
for the value (``critic="separate"``), a positive initial update-gate bias (``update_gate_bias``)
and the previous observation as one more input (``prev_obs``, which changes RL²'s input).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmrl.keys import BOOL, NUMBER, POSITIVE, int_at_least, one_of

_LOG_2PI_E = math.log(2 * math.pi * math.e)
CRITICS = ("shared", "separate")


class RecurrentPolicy(nn.Module):
    # Its config keys (dmrl.keys); obs_dim, act_dim and num_actions are the env's, given by RL2.build
    KEYS = {
        "hidden_size": int_at_least(1),
        "init_std": POSITIVE,
        "critic": one_of(CRITICS),
        "update_gate_bias": NUMBER,
        "prev_obs": BOOL,
    }

    def __init__(self, obs_dim: int, act_dim: int, num_actions: int | None = None, hidden_size: int = 256,
                 init_std: float = 1.0, critic: str = "shared", update_gate_bias: float = 0.0,
                 prev_obs: bool = False) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.num_actions = obs_dim, act_dim, num_actions
        self.discrete = num_actions is not None
        self.action_features = num_actions if self.discrete else act_dim
        # prev_obs: the observation the previous action was taken in also enters, so the whole
        # previous transition (s, a, r) is in one input rather than split across two steps.
        self.prev_obs = bool(prev_obs)
        self.input_dim = obs_dim * (2 if self.prev_obs else 1) + self.action_features + 2
        self.hidden_size = int(hidden_size)
        self.critic = critic
        self.gru = nn.GRU(self.input_dim, self.hidden_size)
        # A separate critic reads the same inputs with a GRU of its own, so the value loss shapes
        # none of the policy's memory; its hidden state is stored after the policy's.
        self.critic_gru = nn.GRU(self.input_dim, self.hidden_size) if critic == "separate" else None
        self.state_size = self.hidden_size * (2 if self.critic_gru is not None else 1)
        for gru in (self.gru, self.critic_gru):
            if gru is not None and update_gate_bias:
                # GRU update: h' = (1 - z) n + z h, gates ordered (r, z, n). A positive bias on z
                # starts every unit closer to keeping its state over the 100-step trials (as the
                # LSTM forget-gate bias of Jozefowicz et al. 2015).
                with torch.no_grad():
                    gru.bias_hh_l0[self.hidden_size : 2 * self.hidden_size] += float(update_gate_bias)
        # Small initial policy logits/means keep the first trials close to uniform exploration
        # (the PPO implementation details of Huang et al. 2022).
        self.pi = nn.Linear(self.hidden_size, self.action_features)
        self.v = nn.Linear(self.hidden_size, 1)
        nn.init.orthogonal_(self.pi.weight, gain=0.01)
        nn.init.zeros_(self.pi.bias)
        nn.init.orthogonal_(self.v.weight, gain=1.0)
        nn.init.zeros_(self.v.bias)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    # --- inputs and recurrence ---------------------------------------------------------------
    def inputs(self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, prev_done: Tensor,
               prev_obs: Tensor | None = None) -> Tensor:
        """The GRU input ``[..., input_dim]`` from ``obs [..., obs_dim]``, the previous action
        (``[...]`` integers, -1 for none yet, or ``[..., act_dim]``), reward ``[...]`` and done flag ``[...]``
        (and with ``prev_obs=True`` the previous step's observation ``[..., obs_dim]``, zeros for none)."""
        if self.discrete:
            none = (prev_action < 0).unsqueeze(-1)
            act = F.one_hot(prev_action.clamp_min(0), self.num_actions).to(obs.dtype).masked_fill(none, 0.0)
        else:
            act = prev_action
        parts = [obs, act, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1)]
        if self.prev_obs:
            parts.append(torch.zeros_like(obs) if prev_obs is None else prev_obs)
        return torch.cat(parts, dim=-1)

    def initial_state(self, batch: int, device: torch.device) -> Tensor:
        return torch.zeros(batch, self.state_size, device=device)  # [M, H] or [M, 2H] with a separate critic

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One time step for ``M`` sequences: ``x [M, in]``, ``h [M, state_size]`` -> (head, value [M], h')."""
        H = self.hidden_size
        out, h_new = self.gru(x.unsqueeze(0), h[:, :H].unsqueeze(0))
        out, h_new = out[0], h_new[0]
        if self.critic_gru is None:
            return self.pi(out), self.v(out).squeeze(-1), h_new
        c_out, c_new = self.critic_gru(x.unsqueeze(0), h[:, H:].unsqueeze(0))
        return self.pi(out), self.v(c_out[0]).squeeze(-1), torch.cat([h_new, c_new[0]], dim=-1)

    def forward(self, x: Tensor, tbptt: int | None = None) -> tuple[Tensor, Tensor]:
        """Heads and values ``[T, M]`` of whole trials ``x [T, M, in]`` from a zero hidden state.

        ``tbptt`` truncates backpropagation through time to chunks of that many steps (the hidden
        state still flows forward unchanged, so the outputs equal the untruncated ones).
        """
        out = _run(self.gru, x, tbptt)
        critic_out = out if self.critic_gru is None else _run(self.critic_gru, x, tbptt)
        return self.pi(out), self.v(critic_out).squeeze(-1)

    # --- the action distribution -------------------------------------------------------------
    def sample(self, head: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Actions and their log-probabilities.  # [M] (discrete) or [M, act_dim]; [M]"""
        u = torch.rand(head.shape, generator=generator, device=head.device, dtype=head.dtype)
        if self.discrete:
            logp_all = head.log_softmax(-1)
            # Gumbel-max: argmax(log p + Gumbel noise) is a sample of the categorical.
            a = (logp_all - torch.log(-torch.log(u.clamp_min(1e-20)))).argmax(-1)
            return a, logp_all.gather(-1, a.unsqueeze(-1)).squeeze(-1)
        noise = torch.randn(head.shape, generator=generator, device=head.device, dtype=head.dtype)
        a = head + self.log_std.exp() * noise
        return a, self.log_prob(head, a)

    def log_prob(self, head: Tensor, actions: Tensor) -> Tensor:
        if self.discrete:
            return head.log_softmax(-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        z = (actions - head) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, head: Tensor) -> Tensor:
        if self.discrete:
            logp = head.log_softmax(-1)
            return -(logp.exp() * logp).sum(-1)
        return (self.log_std + 0.5 * _LOG_2PI_E).sum().expand(head.shape[:-1])


def _run(gru: nn.GRU, x: Tensor, tbptt: int | None) -> Tensor:
    """Outputs ``[T, M, H]`` of ``gru`` over ``x`` from a zero state, gradients truncated every ``tbptt`` steps."""
    if tbptt is None or tbptt >= x.shape[0]:
        return gru(x)[0]
    h, outs = None, []
    for chunk in x.split(tbptt):
        o, h = gru(chunk, h)
        outs.append(o)
        h = h.detach()
    return torch.cat(outs)
