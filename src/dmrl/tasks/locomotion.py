"""Task distributions of the MuJoCo locomotion families (shared/REFERENCES.md).

Target velocities use :class:`~dmrl.tasks.distributions.UniformBox`; the others are here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from dmrl.keys import NAME, NON_NEGATIVE, NUMBER, POSITIVE, list_of, one_of
from dmrl.tasks.distributions import Tasks, TaskStream


class Directions(TaskStream):
    """``task[key]`` drawn uniformly from ``values``, shape ``[n, 1]`` (MAML's forward/backward: ±1)."""

    KEYS = {"key": NAME, "values": list_of(NUMBER, "a non-empty list of numbers", min_len=1)}  # dmrl.keys

    def __init__(self, key: str = "direction", values: Sequence[float] = (-1.0, 1.0)) -> None:
        self.key, self.values = key, np.asarray(list(values), dtype=np.float32)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        return {self.key: rng.choice(self.values, size=(n, 1))}


class Disk(TaskStream):
    """``task[key]`` uniform on the disk of ``radius`` around the origin, shape ``[n, 2]`` (PEARL's ant goals).

    Uniform in area: angle ``~ U[0, 2 pi)``, radius ``= R sqrt(U[0, 1])``.
    """

    KEYS = {"key": NAME, "radius": NON_NEGATIVE}  # dmrl.keys

    def __init__(self, key: str = "goal", radius: float = 3.0) -> None:
        self.key, self.radius = key, float(radius)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        r = self.radius * np.sqrt(rng.uniform(0.0, 1.0, size=n))
        return {self.key: np.stack([r * np.cos(angle), r * np.sin(angle)], axis=1).astype(np.float32)}


class DynamicsScales(TaskStream):
    """Per-task scale factors ``base ** u``, ``u ~ U[-log_scale_limit, log_scale_limit]`` per entry.

    The "rand params" tasks of ProMP and PEARL (rand_param_envs): each entry of each listed model
    field (body masses ``[nbody]``, inertias ``[nbody, 3]``, dof damping ``[nv]``, geom friction
    ``[ngeom, 3]``) gets its own factor; ``sample`` returns ``{field: [n, *field_shape]}`` of
    factors, which the env multiplies into its own copy of the model for each task. The shapes
    are read from gymnasium's ``xml`` model, which must be the env's.
    """

    FIELDS = ("body_mass", "body_inertia", "dof_damping", "geom_friction")
    # Its config keys (dmrl.keys); whether xml is one of gymnasium's models, loading it says
    KEYS = {
        "xml": NAME,
        "fields": list_of(one_of(FIELDS), f"a non-empty subset of {list(FIELDS)}", min_len=1),
        "base": POSITIVE,
        "log_scale_limit": NON_NEGATIVE,
    }

    def __init__(self, xml: str, fields: Sequence[str] = FIELDS, base: float = 1.5, log_scale_limit: float = 3.0) -> None:
        fields = list(fields)
        from dmrl.envs.mujoco_base import load_model  # mujoco only when this distribution is used

        model = load_model(xml)
        self.xml, self.base, self.log_scale_limit = xml, float(base), float(log_scale_limit)
        self.shapes = {f: tuple(getattr(model, f).shape) for f in fields}

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        limit = self.log_scale_limit
        return {f: self.base ** rng.uniform(-limit, limit, size=(n, *shape)) for f, shape in self.shapes.items()}
