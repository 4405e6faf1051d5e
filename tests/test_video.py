"""``dmrl-eval video=true``: offscreen videos of episodes before and after adaptation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import make_maml
from dmrl import video
from dmrl.config import EVAL_RULES, validate
from dmrl.errors import ConfigError

BIN = Path(sys.executable).parent
HORIZON = 10


def _env(**extra: str) -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.pop("HYDRA_FULL_ERROR", None)
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def gl_backend() -> str:
    """The OpenGL backend dmrl will render with; skips the test where none works."""
    backend, failures = video.find_gl_backend()
    if backend is None:
        pytest.skip(video.no_gl_message(failures))
    return backend


@pytest.fixture(scope="module")
def cheetah(tmp_path_factory) -> Path:
    """A tiny cheetah_vel checkpoint trained through the CLI; returns the scratch directory."""
    tmp = tmp_path_factory.mktemp("video")
    run(["dmrl-train", "env=cheetah_vel", "iterations=1", "algo.meta_batch_size=2", "algo.fast_batch_size=2",
         f"env.horizon={HORIZON}", "logger=jsonl", "hydra.run.dir=run"], tmp, _env())
    return tmp


EVAL = ["dmrl-eval", "checkpoint=run/checkpoints/last.pt", "num_tasks=2", "adapt_steps=1", "episodes=1"]


def test_videos_before_and_after_adaptation(gl_backend, cheetah):
    proc = run([*EVAL, "video=true", "video_tasks=1", "hydra.run.dir=ev"], cheetah, _env())
    assert "warning" not in proc.stderr, proc.stderr
    ev = cheetah / "ev"
    report = json.loads((ev / "eval.json").read_text())
    videos = report["videos"]
    assert [(v["task"], v["phase"], v["adapt_steps"]) for v in videos] == [(0, "pre", 0), (0, "post", 1)]
    import imageio.v2 as iio

    for v in videos:
        path = ev / v["path"]
        assert path.suffix in (".mp4", ".gif") and path.parent.name == "videos"
        assert path.name == f"task00_{v['phase']}{path.suffix}"
        assert path.stat().st_size > 2000
        frames = iio.mimread(path, memtest=False)
        assert len(frames) == v["frames"] == HORIZON + 1  # the initial state and every step (no termination)
        assert frames[0].shape == (video.HEIGHT, video.WIDTH, 3)
        assert np.asarray(frames[-1]).std() > 5  # a scene, not a blank frame
        assert str(path) in proc.stdout  # listed in the "wrote ..." line
    # the filmed episode is the scored one (one episode per task: its return is the task's return)
    per_task = report["per_task_returns"][0]
    assert videos[0]["return"] == pytest.approx(per_task[0], rel=1e-5, abs=1e-4)
    assert videos[1]["return"] == pytest.approx(per_task[1], rel=1e-5, abs=1e-4)
    assert videos[0]["task_params"].keys() == {"velocity"}
    assert all(v["gl"] == gl_backend for v in videos)


def test_without_an_opengl_backend_the_numbers_are_still_written(cheetah):
    # MUJOCO_GL=glfw on a machine without a display: no backend works (and dmrl respects the choice)
    env = _env(MUJOCO_GL="glfw")
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    proc = run([*EVAL, "video=true", "hydra.run.dir=nogl"], cheetah, env)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "warning" in lines[0] and "libegl1" in lines[0] and "libosmesa6" in lines[0] and "MUJOCO_GL=glfw" in lines[0]
    report = json.loads((cheetah / "nogl/eval.json").read_text())
    assert report["videos"] == []
    assert not (cheetah / "nogl/videos").exists() or not list((cheetah / "nogl/videos").iterdir())
    for name in ("eval.csv", "adaptation.png"):
        assert (cheetah / "nogl" / name).stat().st_size > 0
    assert len(report["return_mean"]) == 2  # (that recording leaves the numbers alone: test_point_nav_...)


def test_no_backend_found_names_the_packages(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(video, "probe", lambda backend: f"no {backend} here")
    backend, failures = video.find_gl_backend()
    assert backend is None and list(failures) == ["egl", "osmesa"]
    message = video.no_gl_message(failures)
    assert "\n" not in message and "libegl1" in message and "libosmesa6" in message


def test_gif_when_no_ffmpeg(tmp_path):
    from PIL import Image

    frames = [np.full((32, 48, 3), 10 * k, dtype=np.uint8) for k in range(12)]
    path, n, fps, fmt = video.write_frames(iter(frames), tmp_path / "clip.mp4", fps=125.0, mp4=False)
    assert path == tmp_path / "clip.gif" and fmt == "gif"
    assert n == 4 and fps == pytest.approx(125 / 3)  # every 3rd frame: at most 50 frames per second
    with Image.open(path) as im:
        assert im.n_frames == 4


def test_point_nav_draws_trajectories(tmp_path):
    """Also: the rollouts with a recorder in place of the env give exactly the same curve."""
    maml = make_maml(meta_batch=3, episodes=2, horizon=6)
    tasks = maml.tasks.sample(3, np.random.default_rng(1))
    maml.sampler.generator.manual_seed(0)
    plain = maml.adaptation_curve(tasks, 1)
    recorder = video.Recorder(maml.sampler.env, 2)
    env, maml.sampler.env = maml.sampler.env, recorder
    maml.sampler.generator.manual_seed(0)
    try:
        curve = maml.adaptation_curve(tasks, 1)
    finally:
        maml.sampler.env = env
    np.testing.assert_array_equal(curve, plain)
    entries, messages = video.write_videos(recorder, tmp_path, post_step=1)
    assert (tmp_path / "videos/trajectories.png").stat().st_size > 1000
    assert [(e["task"], e["phase"]) for e in entries] == [(0, "pre"), (1, "pre"), (0, "post"), (1, "post")]
    assert all(e["frames"] == 7 for e in entries)
    assert len(messages) == 1 and messages[0].startswith("note: point_nav")


def test_bad_video_options_are_one_line(tmp_path):
    proc = subprocess.run(["dmrl-eval", "checkpoint=x.pt", "video=maybe"], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0 and len(lines) == 1, proc.stderr
    assert lines[0] == "dmrl-eval: error: video must be true or false, got 'maybe'"
    base = {"checkpoint": "x.pt", "video": True}
    for bad in (0, 1.5, "3"):
        with pytest.raises(ConfigError, match="video_tasks must be an integer >= 1"):
            validate(OmegaConf.create({**base, "video_tasks": bad}), EVAL_RULES)
    validate(OmegaConf.create({**base, "video_tasks": 1}), EVAL_RULES)

