"""Task distributions of the MuJoCo locomotion families (shared/REFERENCES.md).

Target velocities use :class:`~dmrl.tasks.distributions.UniformBox`; the others are here.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from dmrl.errors import ConfigError
from dmrl.tasks.distributions import Tasks, TaskStream


class Directions(TaskStream):
    """``task[key]`` drawn uniformly from ``values``, shape ``[n, 1]`` (MAML's forward/backward: ±1)."""

    def __init__(self, key: str = "direction", values: Sequence[float] = (-1.0, 1.0)) -> None:
        values = list(values)
        if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in values):
            raise ConfigError(f"tasks.values must be a non-empty list of numbers, got {values!r}")
        self.key, self.values = key, np.asarray(values, dtype=np.float32)

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        return {self.key: rng.choice(self.values, size=(n, 1))}


class Disk(TaskStream):
    """``task[key]`` uniform on the disk of ``radius`` around the origin, shape ``[n, 2]`` (PEARL's ant goals).

    Uniform in area: angle ``~ U[0, 2 pi)``, radius ``= R sqrt(U[0, 1])``.
    """

    def __init__(self, key: str = "goal", radius: float = 3.0) -> None:
        if isinstance(radius, bool) or not isinstance(radius, numbers.Real) or not radius >= 0:
            raise ConfigError(f"tasks.radius must be a number >= 0, got {radius!r}")
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

    def __init__(self, xml: str, fields: Sequence[str] = FIELDS, base: float = 1.5, log_scale_limit: float = 3.0) -> None:
        fields = list(fields)
        unknown = [f for f in fields if f not in self.FIELDS]
        if not fields or unknown:
            raise ConfigError(f"tasks.fields must be a non-empty subset of {list(self.FIELDS)}, got {fields!r}")
        if isinstance(base, bool) or not isinstance(base, numbers.Real) or not base > 0:
            raise ConfigError(f"tasks.base must be a number > 0, got {base!r}")
        if isinstance(log_scale_limit, bool) or not isinstance(log_scale_limit, numbers.Real) or not log_scale_limit >= 0:
            raise ConfigError(f"tasks.log_scale_limit must be a number >= 0, got {log_scale_limit!r}")
        from dmrl.envs.mujoco_base import load_model  # mujoco only when this distribution is used

        model = load_model(xml)
        self.xml, self.base, self.log_scale_limit = xml, float(base), float(log_scale_limit)
        self.shapes = {f: tuple(getattr(model, f).shape) for f in fields}

    def draw(self, n: int, rng: np.random.Generator) -> Tasks:
        limit = self.log_scale_limit
        return {f: self.base ** rng.uniform(-limit, limit, size=(n, *shape)) for f, shape in self.shapes.items()}
