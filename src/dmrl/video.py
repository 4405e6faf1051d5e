"""Videos of evaluation episodes (``dmrl-eval checkpoint=PATH video=true``).

Recording. During the ordinary batched evaluation rollouts a :class:`Recorder` stands in for the
sampler's environment (it forwards every call) and keeps the state after ``reset`` and after
every ``step`` of episode 0 of the first ``video_tasks`` held-out tasks. Nothing else changes, so
a video shows exactly an episode that was scored, and with ``video=false`` no recorder exists
(no cost). A video covers the episode until it ends (termination or horizon): ``length + 1``
frames, the initial state included, at ``1 / env.dt`` frames per second (real time).

Which episodes: the rollout before adaptation (``pre``, 0 inner steps) and the one after the last
of the ``adapt_steps`` inner steps (``post``, the policy whose return is the last point of the
adaptation curve). With ``adapt_steps=0`` there is no ``post`` video.

Rendering. The recorded ``qpos``/``qvel`` are replayed into one ``mujoco.MjData`` of the task's own
model (``mj_forward``, then ``mujoco.Renderer``; camera: the model's ``track`` camera, which every
gymnasium locomotion model has, else a free camera tracking body 1). Rendering runs in a child
process (``python -m dmrl.video``) because MuJoCo picks its OpenGL backend from ``MUJOCO_GL`` when
``mujoco`` is first imported, long before evaluation knows it will render. On a software
rasterizer (Mesa llvmpipe, no GPU) shadows and reflections are turned off, which makes a frame
about 4x cheaper (~15 ms at 480x320 instead of ~60 ms). The backend: the
user's ``MUJOCO_GL`` when set, else ``egl`` and then ``osmesa``, each tried by creating a
``Renderer`` in a short-lived child (``PYOPENGL_PLATFORM`` set to match). Debian 12 packages:
``libegl1 libopengl0 libgl1-mesa-dri`` (EGL with Mesa's software or GPU drivers), or ``libosmesa6``.
With no working backend evaluation still writes its numbers and prints one warning line.

Files: ``videos/taskNN_pre.mp4`` and ``videos/taskNN_post.mp4`` (H.264 via imageio's ffmpeg
plugin; ``imageio-ffmpeg`` ships the ffmpeg binary), or ``.gif`` (Pillow) where no ffmpeg is
available. point_nav has no MuJoCo scene: its episodes are drawn with matplotlib into
``videos/trajectories.png``.

This module imports only the standard library and numpy at the top, so the rendering child
starts quickly (no torch).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

GL_BACKENDS = ("egl", "osmesa")  # tried in this order when MUJOCO_GL is not set
# Debian 12 packages that make each backend work (found from the libraries a rendering process maps):
# EGL needs the GLVND loader (libegl1, which pulls Mesa's EGL), a GL entry library for PyOpenGL
# (libopengl0) and Mesa's drivers, llvmpipe included (libgl1-mesa-dri, not pulled by libegl1).
DEBIAN_PACKAGES = {"egl": "libegl1 libopengl0 libgl1-mesa-dri", "osmesa": "libosmesa6"}
WIDTH, HEIGHT = 480, 320  # multiples of 16 (H.264 macro blocks); within the models' offscreen buffer
GIF_MAX_FPS = 50  # browsers slow GIF frames shorter than 20 ms down to 100 ms
PROBE_TIMEOUT_S = 60
EXIT_NO_GL = 3  # the child could not create an OpenGL context with the backend it was given


# --- recording ---------------------------------------------------------------------------------


@dataclass
class Rollout:
    """Episode 0 of each recorded task in one batched rollout."""

    tasks: dict[str, np.ndarray]  # the recorded tasks' parameters, [m, ...]
    states: list[np.ndarray] = field(default_factory=list)  # per state (reset, then each step): [m, state_dim]
    rewards: list[np.ndarray] = field(default_factory=list)  # per step: [m]
    done: list[np.ndarray] = field(default_factory=list)  # per step: [m] bool

    def episode(self, i: int) -> tuple[np.ndarray, float]:
        """States ``[length + 1, state_dim]`` of task ``i``'s episode and its return."""
        done = np.array([d[i] for d in self.done], dtype=bool)
        length = int(np.argmax(done)) + 1 if done.any() else len(done)
        ret = float(sum(float(r[i]) for r in self.rewards[:length]))
        return np.stack([s[i] for s in self.states[: length + 1]]), ret


class Recorder:
    """Stands in for a batched env: forwards every call and records episode 0 of the first tasks.

    ``kind`` is ``"mujoco"`` (state ``[qpos, qvel]``), ``"planar"`` (point_nav: the 2-D position) or
    ``None`` (nothing to record for this env).
    """

    def __init__(self, env: Any, num_tasks: int) -> None:
        self.env = env
        self.num_tasks = int(num_tasks)
        self.rollouts: list[Rollout] = []
        if hasattr(env, "get_state") and hasattr(env, "model"):
            self.kind: str | None = "mujoco"
        elif hasattr(env, "pos") and hasattr(env, "goal"):
            self.kind = "planar"
        else:
            self.kind = None

    def __getattr__(self, name: str) -> Any:  # horizon, obs_dim, act_dim, device, ...
        if name == "env":  # not set yet (e.g. during copy): no recursion
            raise AttributeError(name)
        return getattr(self.env, name)

    def _state(self, m: int) -> np.ndarray:
        if self.kind == "mujoco":
            qpos, qvel = self.env.get_state()
            return np.concatenate([qpos[:m, 0], qvel[:m, 0]], axis=1)
        return self.env.pos[:m, 0].detach().cpu().double().numpy()

    def reset(self, tasks, episodes):
        obs = self.env.reset(tasks, episodes)
        if self.kind is not None:
            m = min(self.num_tasks, int(obs.shape[0]))
            rollout = Rollout(tasks={k: np.asarray(v)[:m].copy() for k, v in tasks.items()})
            rollout.states.append(self._state(m))
            self.rollouts.append(rollout)
        return obs

    def step(self, actions):
        obs, reward, done, truncated, info = self.env.step(actions)  # done: terminated (a trajectory's end)
        if self.kind is not None:
            r = self.rollouts[-1]
            m = len(r.states[0])
            r.states.append(self._state(m))
            r.rewards.append(reward[:m, 0].detach().cpu().double().numpy())
            r.done.append(done[:m, 0].detach().cpu().numpy().astype(bool))
        return obs, reward, done, truncated, info


# --- OpenGL backend ----------------------------------------------------------------------------


def gl_env(backend: str) -> dict[str, str]:
    """This process's environment with ``MUJOCO_GL=backend`` and a matching ``PYOPENGL_PLATFORM``."""
    env = dict(os.environ)
    env["MUJOCO_GL"] = backend
    if backend in ("egl", "osmesa"):
        env["PYOPENGL_PLATFORM"] = backend
    return env


def _child(args: list[str], env: dict[str, str], timeout: float | None) -> tuple[int, str, str]:
    try:
        p = subprocess.run([sys.executable, "-m", "dmrl.video", *args], env=env, capture_output=True, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return -1, "", f"no answer within {timeout} s"
    return p.returncode, p.stdout, p.stderr


def _last_line(text: str, limit: int = 160) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    line = lines[-1] if lines else "failed without a message"
    return line if len(line) <= limit else line[: limit - 3] + "..."


def probe(backend: str) -> str | None:
    """``None`` when a ``mujoco.Renderer`` can be created with ``backend``, else why not."""
    code, _, err = _child(["probe"], gl_env(backend), PROBE_TIMEOUT_S)
    return None if code == 0 else _last_line(err)


def find_gl_backend() -> tuple[str | None, dict[str, str]]:
    """The first working backend (the user's ``MUJOCO_GL``, else egl, osmesa) and why the others failed."""
    user = os.environ.get("MUJOCO_GL", "").strip().lower()
    failures: dict[str, str] = {}
    for backend in [user] if user else GL_BACKENDS:
        why = probe(backend)
        if why is None:
            return backend, failures
        failures[backend] = why
    return None, failures


def no_gl_message(failures: dict[str, str]) -> str:
    tried = "; ".join(f"MUJOCO_GL={b}: {why}" for b, why in failures.items())
    hint = (f"install the Debian package libegl1 for EGL (apt-get install {DEBIAN_PACKAGES['egl']}) "
            f"or {DEBIAN_PACKAGES['osmesa']} for OSMesa")
    if os.environ.get("MUJOCO_GL", "").strip():
        hint += ", or unset MUJOCO_GL to let dmrl try egl and osmesa"
    return f"video=true but no offscreen OpenGL backend works here ({tried}); {hint}"


# --- writing -----------------------------------------------------------------------------------


def _task_params(tasks: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    """Small task parameters (e.g. a target velocity) for eval.json; large ones (dynamics scales) left out."""
    out = {}
    for k, v in tasks.items():
        x = np.asarray(v[i], dtype=np.float64)
        if x.size <= 4:
            out[k] = float(x.reshape(-1)[0]) if x.size == 1 else x.reshape(-1).tolist()
    return out


def _phases(recorder: Recorder, post_step: int) -> list[tuple[str, int, Rollout]]:
    rolls = recorder.rollouts
    if not rolls:
        return []
    phases = [("pre", 0, rolls[0])]
    if post_step > 0:
        if len(rolls) <= post_step:
            raise RuntimeError(f"recorded {len(rolls)} rollouts, expected at least {post_step + 1}")
        phases.append(("post", post_step, rolls[post_step]))
    return phases


def write_videos(recorder: Recorder, out_dir: Path, post_step: int) -> tuple[list[dict], list[str]]:
    """Write the recorded episodes under ``out_dir/videos``.

    Returns the entries for eval.json (paths relative to ``out_dir``) and one-line messages for
    the user, each starting with ``"note: "`` or ``"warning: "``. Never raises for a missing
    OpenGL backend or a failed render: the numbers are written either way.
    """
    out_dir = Path(out_dir)
    phases = _phases(recorder, post_step)
    if recorder.kind is None or not phases:
        return [], [f"warning: video is for the MuJoCo families (and point_nav trajectories); "
                    f"{type(recorder.env).__name__} has nothing to render, no videos written"]
    if recorder.kind == "planar":
        return _plot_planar(phases, out_dir)
    return _render_mujoco(recorder, phases, out_dir)


def _render_mujoco(recorder: Recorder, phases, out_dir: Path) -> tuple[list[dict], list[str]]:
    import mujoco

    backend, failures = find_gl_backend()
    if backend is None:
        return [], ["warning: " + no_gl_message(failures) + "; wrote the numbers without videos"]
    env = recorder.env
    nq = int(env.model.nq)
    fps = 1.0 / float(env.dt)
    video_dir = out_dir / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    entries, items = [], []
    with tempfile.TemporaryDirectory(prefix="dmrl-video-") as tmp:
        tmp_dir = Path(tmp)
        m = len(phases[0][2].states[0])
        models = env.task_models(phases[0][2].tasks, m) or [env.model] * m
        for i in range(m):
            model_path = tmp_dir / f"task{i:02d}.mjb"
            mujoco.mj_saveModel(models[i], str(model_path))
            for phase, step, rollout in phases:
                states, ret = rollout.episode(i)
                state_path = tmp_dir / f"task{i:02d}_{phase}.npy"
                np.save(state_path, states)
                path = video_dir / f"task{i:02d}_{phase}.mp4"
                items.append({"model": str(model_path), "states": str(state_path), "nq": nq, "path": str(path),
                              "fps": fps})
                entries.append({"task": i, "phase": phase, "adapt_steps": step, "return": ret,
                                "task_params": _task_params(rollout.tasks, i)})
        job = tmp_dir / "job.json"
        job.write_text(json.dumps({"width": WIDTH, "height": HEIGHT, "videos": items}))
        code, out, err = _child(["render", str(job)], gl_env(backend), None)
    if code != 0:
        if not any(video_dir.iterdir()):
            video_dir.rmdir()
        return [], [f"warning: rendering the videos failed with MUJOCO_GL={backend} ({_last_line(err)}); "
                    f"wrote the numbers without videos"]
    written = json.loads(out.strip().splitlines()[-1])
    entries = [{"path": Path(w["path"]).relative_to(out_dir).as_posix(), **e, "frames": w["frames"], "fps": w["fps"],
                "format": w["format"], "gl": backend, "gl_renderer": w["gl_renderer"]} for e, w in zip(entries, written)]
    notes = []
    if any(w["format"] == "gif" for w in written):
        notes.append("warning: no ffmpeg for mp4 (pip install imageio-ffmpeg); wrote GIF videos instead")
    return entries, notes


def _plot_planar(phases, out_dir: Path) -> tuple[list[dict], list[str]]:
    video_dir = out_dir / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    path = video_dir / "trajectories.png"
    plot_planar(phases, path)
    entries = []
    for phase, step, rollout in phases:
        for i in range(len(rollout.tasks["goal"])):
            states, ret = rollout.episode(i)
            entries.append({"path": path.relative_to(out_dir).as_posix(), "task": i, "phase": phase,
                            "adapt_steps": step, "return": ret, "frames": len(states), "format": "png",
                            "task_params": _task_params(rollout.tasks, i)})
    return entries, [f"note: point_nav has no MuJoCo scene to film; drew the episodes into {path}"]


def plot_planar(phases, path: Path, env: str = "point_nav", learner: str = "MAML"):
    """One panel per phase (before / after adapting), each with episode 0 of every recorded task,
    all panels on the same square x/y limits so positions compare across panels. Returns the
    figure (saved and closed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    episodes = [[rollout.episode(i) for i in range(len(rollout.tasks["goal"]))] for _, _, rollout in phases]
    points = [np.asarray(r.tasks["goal"], dtype=np.float64)[:, :2] for _, _, r in phases]
    points += [states[:, :2] for eps in episodes for states, _ in eps]
    pts = np.concatenate(points) if points else np.zeros((1, 2))
    center = (pts.min(0) + pts.max(0)) / 2
    half = max(float((pts.max(0) - pts.min(0)).max()) / 2, 1e-3) * 1.08
    fig, axes = plt.subplots(1, len(phases), figsize=(4.6 * len(phases), 5.6), dpi=110, squeeze=False,
                             layout="constrained")
    for ax, (phase, step, rollout), eps in zip(axes[0], phases, episodes):
        goals = np.asarray(rollout.tasks["goal"], dtype=np.float64)
        for i, (states, ret) in enumerate(eps):
            color = f"C{i % 10}"
            ax.plot(states[:, 0], states[:, 1], "-", color=color, lw=1.2, label=f"task {i}: return {ret:.2f}")
            ax.plot(states[0, 0], states[0, 1], "o", color=color, ms=4)
            ax.plot(goals[i, 0], goals[i, 1], "*", color=color, ms=12, mec="k")
        ax.set_title(f"{'before' if step == 0 else 'after'} adapting ({step} inner step{'s' if step != 1 else ''})",
                     fontsize=10)
        ax.set_xlim(center[0] - half, center[0] + half)
        ax.set_ylim(center[1] - half, center[1] + half)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel("x position")
        ax.set_ylabel("y position")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncols=2, frameon=False)
    fig.suptitle(f"{env} · {learner}: episode 0 of {len(episodes[0]) if episodes else 0} held-out tasks "
                 f"(dots: start, stars: goals)\none episode per task, no interval", fontsize=10)
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return fig


# --- the rendering child -----------------------------------------------------------------------


def _camera(mujoco, model):
    if model.ncam:
        names = [model.camera(i).name for i in range(model.ncam)]
        return "track" if "track" in names else 0
    cam = mujoco.MjvCamera()
    mujoco.mjv_defaultFreeCamera(model, cam)
    cam.type = mujoco.mjtCamera.mjCAMERA_TRACKING
    cam.trackbodyid = 1 if model.nbody > 1 else 0
    cam.distance = 3.0 * float(model.stat.extent)
    cam.elevation = -20.0
    return cam


def _ffmpeg_available() -> bool:
    try:
        import imageio.v2  # noqa: F401
        import imageio_ffmpeg

        return Path(imageio_ffmpeg.get_ffmpeg_exe()).exists()
    except Exception:
        return False


def write_frames(frames, path: Path, fps: float, mp4: bool | None = None) -> tuple[Path, int, float, str]:
    """Write an iterable of ``[H, W, 3]`` uint8 frames as mp4 (or GIF without ffmpeg).

    Returns ``(path written, frames written, fps, format)``; a GIF keeps at most ``GIF_MAX_FPS``
    frames per second (every ``k``-th frame), so that it plays in real time.
    """
    path = Path(path)
    if mp4 is None:
        mp4 = _ffmpeg_available()
    if mp4:
        import imageio.v2 as iio

        n = 0
        with iio.get_writer(path.with_suffix(".mp4"), format="FFMPEG", mode="I", fps=fps, codec="libx264",
                            pixelformat="yuv420p", macro_block_size=16, ffmpeg_log_level="error") as w:
            for frame in frames:
                w.append_data(frame)
                n += 1
        return path.with_suffix(".mp4"), n, fps, "mp4"
    from PIL import Image

    stride = max(1, math.ceil(fps / GIF_MAX_FPS))
    images = [Image.fromarray(f) for k, f in enumerate(frames) if k % stride == 0]
    gif_fps = fps / stride
    gif = path.with_suffix(".gif")
    images[0].save(gif, save_all=True, append_images=images[1:], duration=round(1000 / gif_fps), loop=0)
    return gif, len(images), gif_fps, "gif"


def _renderer(mujoco, model, width: int, height: int):
    try:
        return mujoco.Renderer(model, height=height, width=width)
    except Exception as e:  # no usable OpenGL context with this MUJOCO_GL
        print(f"{type(e).__name__}: {e}".replace("\n", " "), file=sys.stderr)
        sys.exit(EXIT_NO_GL)


def _probe_main() -> None:
    import mujoco

    model = mujoco.MjModel.from_xml_string("<mujoco><worldbody><geom type='sphere' size='0.1'/></worldbody></mujoco>")
    r = _renderer(mujoco, model, 32, 32)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    r.update_scene(data)
    r.render()
    r.close()


SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "software")


def _gl_renderer() -> str:
    """The current OpenGL context's renderer string, e.g. ``llvmpipe (LLVM 15.0.6, 256 bits)``."""
    try:
        from OpenGL import GL

        return GL.glGetString(GL.GL_RENDERER).decode(errors="replace")
    except Exception:
        return "unknown"


def _render_main(job_path: str) -> None:
    import mujoco

    job = json.loads(Path(job_path).read_text())
    mp4 = _ffmpeg_available()
    written = []
    for item in job["videos"]:
        model = mujoco.MjModel.from_binary_path(item["model"])
        states = np.load(item["states"])
        nq = item["nq"]
        renderer = _renderer(mujoco, model, job["width"], job["height"])
        gl_renderer = _gl_renderer()
        if any(s in gl_renderer.lower() for s in SOFTWARE_GL):
            # a CPU rasterizer spends most of each frame on shadows (about 4x) and reflections
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
        data = mujoco.MjData(model)
        camera = _camera(mujoco, model)

        def frames():
            for s in states:
                data.qpos[:] = s[:nq]
                data.qvel[:] = s[nq:]
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, camera=camera)
                yield renderer.render()

        path, n, fps, fmt = write_frames(frames(), Path(item["path"]), item["fps"], mp4)
        renderer.close()
        written.append({"path": str(path), "frames": n, "fps": fps, "format": fmt, "gl_renderer": gl_renderer})
    print(json.dumps(written))


def main(argv: list[str]) -> None:
    if argv[:1] == ["probe"]:
        _probe_main()
    elif argv[:1] == ["render"] and len(argv) == 2:
        _render_main(argv[1])
    else:
        sys.exit("usage: python -m dmrl.video probe | render JOB.json")


if __name__ == "__main__":
    main(sys.argv[1:])
