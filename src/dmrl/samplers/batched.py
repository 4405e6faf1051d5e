"""Roll out every episode of every task together on a batched environment.

One policy call and one environment step per time step advance all ``tasks x episodes``
episodes; per-task (adapted) parameters go into that same single call. The only Python loop is
over time, which is inherent to sequential decision making.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from dmrl.envs.base import BatchedEnv
from dmrl.policies.gaussian_mlp import GaussianMLPPolicy, Params
from dmrl.samplers.episodes import Episodes
from dmrl.tasks.distributions import Tasks


class SeededSampler:
    """What every sampler shares: an env and the generator of its action noise, seeded together
    from one number and saved together in checkpoints."""

    def __init__(self, env: BatchedEnv, seed: int) -> None:
        self.env = env
        self.generator = torch.Generator(device=env.device)
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Seed the action noise and the env's own randomness (initial states) from one number."""
        self.generator.manual_seed(int(seed))
        self.env.seed(int(seed) + 1)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(), "env": self.env.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.env.load_state_dict(state["env"])


class BatchedSampler(SeededSampler):
    def __init__(self, env: BatchedEnv, policy: GaussianMLPPolicy, episodes_per_task: int, seed: int) -> None:
        self.policy = policy
        self.episodes_per_task = int(episodes_per_task)
        super().__init__(env, seed)

    def rebuild_args(self) -> dict[str, int]:
        """The constructor arguments besides env, policy and seed (a Ray worker rebuilds the sampler)."""
        return {"episodes_per_task": self.episodes_per_task}

    @torch.no_grad()
    def sample(self, tasks: Tasks, params: Params | None = None, episodes: int | None = None) -> Episodes:
        """Episodes ``[T, N, B]`` of the policy with ``params`` (shared ``[*]`` or per-task ``[N, *]``)."""
        return roll_out(self.env, tasks, episodes or self.episodes_per_task,
                        lambda obs: self.policy.sample(*self.policy(obs, params), self.generator))


@torch.no_grad()
def roll_out(env: BatchedEnv, tasks: Tasks, episodes: int, act: Callable[[Tensor], Tensor]) -> Episodes:
    """``episodes`` episodes of each task, all stepped together, with ``act(obs [N, B, obs_dim])`` the
    actions: the time loop of every sampler of independent episodes. What the env's ``info`` reports
    (``success``, a sparse family's ``dense_reward``) is kept where present.  # Episodes [T, N, B]"""
    with env.rollout():
        return _roll_out(env, tasks, episodes, act)


def _roll_out(env: BatchedEnv, tasks: Tasks, episodes: int, act: Callable[[Tensor], Tensor]) -> Episodes:
    B, H = int(episodes), env.horizon
    obs = env.reset(tasks, B)  # [N, B, obs_dim]
    N = obs.shape[0]
    dev = obs.device
    all_obs = torch.zeros(H, N, B, env.obs_dim, device=dev)
    all_act = None  # [H, N, B, act_dim], or [H, N, B] integers on a discrete env: sized by the first actions
    all_rew = torch.zeros(H, N, B, device=dev)
    all_mask = torch.zeros(H, N, B, device=dev)
    all_next = torch.zeros(H, N, B, env.obs_dim, device=dev)
    all_term = torch.zeros(H, N, B, dtype=torch.bool, device=dev)
    all_trunc = torch.zeros(H, N, B, dtype=torch.bool, device=dev)
    all_success = all_dense = None
    alive = torch.ones(N, B, dtype=torch.bool, device=dev)
    T = H
    for t in range(H):
        actions = act(obs)
        if all_act is None:
            all_act = torch.zeros(H, *actions.shape, dtype=actions.dtype, device=dev)
        all_obs[t] = obs
        all_act[t] = actions
        all_mask[t] = alive
        obs, reward, terminated, truncated, info = env.step(actions)
        all_rew[t] = reward
        all_next[t] = obs
        all_term[t] = terminated & alive
        all_trunc[t] = truncated & alive
        if "success" in info:
            if all_success is None:
                all_success = torch.zeros(H, N, B, dtype=torch.bool, device=dev)
            all_success[t] = info["success"] & alive
        if "dense_reward" in info:
            if all_dense is None:
                all_dense = torch.zeros(H, N, B, device=dev)
            all_dense[t] = info["dense_reward"] * alive
        alive = alive & ~(terminated | truncated)
        if dev.type == "cpu" and not bool(alive.any()):
            T = t + 1
            break
    return Episodes(all_obs[:T], all_act[:T], all_rew[:T] * all_mask[:T], all_mask[:T], all_next[:T], all_term[:T],
                    all_trunc[:T], None if all_success is None else all_success[:T],
                    None if all_dense is None else all_dense[:T])
