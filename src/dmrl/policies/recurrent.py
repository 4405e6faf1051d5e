"""RL²'s recurrent policy (Duan et al. 2016): a GRU over (observation, previous action, previous
reward, done flag), with a categorical head for discrete action spaces and a Gaussian head with a
state-independent log-std for continuous ones, plus a value head on the same hidden state.

The hidden state is the learner's memory of the task: the sampler carries it across the episodes
of a trial and starts every trial from zeros.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dmrl.errors import ConfigError

_LOG_2PI_E = math.log(2 * math.pi * math.e)


class RecurrentPolicy(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, num_actions: int | None = None, hidden_size: int = 256,
                 init_std: float = 1.0) -> None:
        super().__init__()
        if int(hidden_size) < 1:
            raise ConfigError(f"policy.hidden_size must be an integer >= 1, got {hidden_size}")
        if init_std <= 0:
            raise ConfigError(f"policy.init_std must be > 0, got {init_std}")
        self.obs_dim, self.act_dim, self.num_actions = obs_dim, act_dim, num_actions
        self.discrete = num_actions is not None
        self.action_features = num_actions if self.discrete else act_dim
        self.input_dim = obs_dim + self.action_features + 2
        self.hidden_size = int(hidden_size)
        self.gru = nn.GRU(self.input_dim, self.hidden_size)
        self.pi = nn.Linear(self.hidden_size, self.action_features)
        self.v = nn.Linear(self.hidden_size, 1)
        # Small initial policy logits/means keep the first trials close to uniform exploration
        # (the PPO implementation details of Huang et al. 2022).
        nn.init.orthogonal_(self.pi.weight, gain=0.01)
        nn.init.zeros_(self.pi.bias)
        nn.init.orthogonal_(self.v.weight, gain=1.0)
        nn.init.zeros_(self.v.bias)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.full((act_dim,), math.log(init_std)))

    # --- inputs and recurrence ---------------------------------------------------------------
    def inputs(self, obs: Tensor, prev_action: Tensor, prev_reward: Tensor, prev_done: Tensor) -> Tensor:
        """The GRU input ``[..., input_dim]`` from ``obs [..., obs_dim]``, the previous action
        (``[...]`` integers, -1 for none yet, or ``[..., act_dim]``), reward ``[...]`` and done flag ``[...]``."""
        if self.discrete:
            none = (prev_action < 0).unsqueeze(-1)
            act = F.one_hot(prev_action.clamp_min(0), self.num_actions).to(obs.dtype).masked_fill(none, 0.0)
        else:
            act = prev_action
        return torch.cat([obs, act, prev_reward.unsqueeze(-1), prev_done.to(obs.dtype).unsqueeze(-1)], dim=-1)

    def initial_state(self, batch: int, device: torch.device) -> Tensor:
        return torch.zeros(batch, self.hidden_size, device=device)  # [M, H]

    def step(self, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One time step for ``M`` sequences: ``x [M, in]``, ``h [M, H]`` -> (head, value [M], h')."""
        out, h_new = self.gru(x.unsqueeze(0), h.unsqueeze(0))
        out = out[0]
        return self.pi(out), self.v(out).squeeze(-1), h_new[0]

    def forward(self, x: Tensor, tbptt: int | None = None) -> tuple[Tensor, Tensor]:
        """Heads and values ``[T, M]`` of whole trials ``x [T, M, in]`` from a zero hidden state.

        ``tbptt`` truncates backpropagation through time to chunks of that many steps (the hidden
        state still flows forward unchanged, so the outputs equal the untruncated ones).
        """
        if tbptt is None or tbptt >= x.shape[0]:
            out, _ = self.gru(x)
        else:
            h, outs = None, []
            for chunk in x.split(tbptt):
                o, h = self.gru(chunk, h)
                outs.append(o)
                h = h.detach()
            out = torch.cat(outs)
        return self.pi(out), self.v(out).squeeze(-1)

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
