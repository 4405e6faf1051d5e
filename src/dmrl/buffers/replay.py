"""Per-task replay buffers stored as one block of tensors (PEARL's RL and encoder buffers).

Each task ``i`` of a fixed pool has a ring buffer of at most ``capacity`` transitions; the block is
``[tasks, allocated, dim]`` per field and grows by doubling up to ``capacity``, so a buffer that is
never filled never holds its full size. ``sample`` draws a batch for many tasks at once with one
gather (no Python loop over tasks or transitions). Its checkpoint state is tensors only (the
filled part, the write positions and sizes), so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import torch
from torch import Tensor

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


class TaskReplay:
    def __init__(self, tasks: int, capacity: int, obs_dim: int, act_dim: int, device: str | torch.device = "cpu",
                 initial: int = 1024) -> None:
        self.tasks, self.capacity = int(tasks), int(capacity)
        self.dims = {"obs": obs_dim, "actions": act_dim, "rewards": 1, "next_obs": obs_dim, "terminated": 1}
        self.device = torch.device(device)
        self.allocated = min(int(initial), self.capacity)
        self.data = {k: torch.zeros(self.tasks, self.allocated, d, device=self.device) for k, d in self.dims.items()}
        self.size = torch.zeros(self.tasks, dtype=torch.long)  # transitions held per task
        self.pos = torch.zeros(self.tasks, dtype=torch.long)  # next write slot per task (a ring once full)

    def _grow(self, needed: int) -> None:
        if needed <= self.allocated or self.allocated >= self.capacity:
            return
        new = min(self.capacity, max(needed, 2 * self.allocated))
        for k, x in self.data.items():
            bigger = torch.zeros(self.tasks, new, x.shape[-1], device=self.device)
            bigger[:, : self.allocated] = x
            self.data[k] = bigger
        self.allocated = new

    def add(self, task: int, transitions: dict[str, Tensor]) -> None:
        """Append ``[m, dim]`` transitions (``rewards``/``terminated`` may be ``[m]``) to task ``task``."""
        m = int(transitions["obs"].shape[0])
        if m == 0:
            return
        if m > self.capacity:  # only the newest capacity fit
            transitions = {k: v[-self.capacity:] for k, v in transitions.items()}
            m = self.capacity
        self._grow(int(self.size[task]) + m)
        # until the block reaches capacity, writes append (pos == size); then they wrap around the ring
        slots = ((self.pos[task] + torch.arange(m)) % self.allocated).to(self.device)
        for k in FIELDS:
            self.data[k][task, slots] = transitions[k].reshape(m, -1).to(self.data[k].dtype).to(self.device)
        self.size[task] = min(self.capacity, int(self.size[task]) + m)
        self.pos[task] = (int(self.pos[task]) + m) % self.capacity

    def clear(self, tasks) -> None:
        """Forget the transitions of ``tasks`` (PEARL's encoder buffers, before a new collection)."""
        idx = torch.as_tensor(tasks, dtype=torch.long)
        self.size[idx] = 0
        self.pos[idx] = 0

    def sample(self, tasks: Tensor, batch: int, generator: torch.Generator) -> dict[str, Tensor]:
        """``batch`` transitions of each of ``tasks`` ``[M]``, uniformly with replacement from what
        each holds: ``{field: [M, batch, dim]}``."""
        tasks = torch.as_tensor(tasks, dtype=torch.long)
        sizes = self.size[tasks]
        if bool((sizes == 0).any()):
            raise ValueError(f"tasks {tasks[sizes == 0].tolist()} hold no transitions to sample")
        u = torch.rand(len(tasks), batch, generator=generator)
        idx = (u * sizes[:, None]).long().clamp_(max=self.allocated - 1)  # [M, batch]
        t_dev, i_dev = tasks.to(self.device)[:, None], idx.to(self.device)
        return {k: x[t_dev, i_dev] for k, x in self.data.items()}

    def recent(self, task: int, n: int) -> dict[str, Tensor]:
        """The newest ``n`` transitions of ``task`` in order (PEARL's context right after collecting)."""
        n = min(n, int(self.size[task]))
        end = int(self.pos[task])  # the next write slot: the newest transition is just before it
        idx = (torch.arange(end - n, end) % self.allocated).to(self.device)
        return {k: x[task, idx] for k, x in self.data.items()}

    @property
    def nbytes(self) -> int:
        return sum(x.element_size() * x.nelement() for x in self.data.values())

    def state_dict(self) -> dict:
        """The filled transitions of every task (tensors only), their sizes and write positions."""
        held = int(self.size.max()) if len(self.size) else 0
        return {"capacity": torch.tensor(self.capacity), "size": self.size.clone(), "pos": self.pos.clone(),
                "allocated": torch.tensor(self.allocated),
                "data": {k: x[:, :held].detach().cpu().clone() for k, x in self.data.items()}}

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity or tuple(state["size"].shape) != (self.tasks,):
            raise ValueError(f"the stored buffer holds {tuple(state['size'].shape)} tasks of capacity "
                             f"{int(state['capacity'])}, the config's {self.tasks} of capacity {self.capacity}")
        allocated = int(state["allocated"])
        self.data = {k: torch.zeros(self.tasks, allocated, d, device=self.device) for k, d in self.dims.items()}
        self.allocated = allocated
        for k, x in state["data"].items():
            if k not in self.data or x.shape[-1] != self.dims[k]:
                raise ValueError(f"the stored buffer's field {k} does not fit the config's")
            self.data[k][:, : x.shape[1]] = x.to(self.device)
        self.size, self.pos = state["size"].clone(), state["pos"].clone()
