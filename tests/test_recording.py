"""Episode recording format, crash recovery, replay server and the web viewer (headless)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from mtsandbox.tools.recording import (
    FRAMES_FILE,
    META_FILE,
    STEPS_FILE,
    RecordEpisodes,
    RecordingError,
    RecordParallelEpisodes,
    export_episode,
    find_episodes,
    load_episode,
)
from mtsandbox.tools.replay_server import ReplayServer

sys.path.insert(0, str(Path(__file__).parent))
from fake_recording_env import (
    FakeParallelEnv,
    FakeRecordingEnv,
    greedy_action,
    scripted_action,
)

REPO = Path(__file__).resolve().parents[1]


def record(root: Path, n_episodes: int = 2, max_steps: int = 30, policy: bool = True):
    """Record episodes and return what the env actually produced, for comparison."""
    env = RecordEpisodes(FakeRecordingEnv(max_steps), root)
    truth = []
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=ep)
        frames, actions, rewards, values = [obs.copy()], [], [], []
        done, t = False, 0
        while not done:
            a = scripted_action(t)
            if policy:
                probs = np.full(6, 0.1)
                probs[a] = 0.5
                env.set_policy_outputs(value=0.01 * t, probs=probs)
                values.append(0.01 * t)
            obs, r, term, trunc, _ = env.step(a)
            frames.append(obs.copy())
            actions.append(a)
            rewards.append(r)
            t += 1
            done = term or trunc
        truth.append(
            {"frames": np.stack(frames), "actions": actions, "rewards": rewards, "values": values}
        )
    env.close()
    return truth


def test_round_trip(tmp_path):
    truth = record(tmp_path, n_episodes=2, max_steps=30)
    eps = find_episodes(tmp_path)
    assert [p.name for p in eps] == ["ep_000000", "ep_000001"]
    for p, tr in zip(eps, truth, strict=True):
        ep = load_episode(p)
        assert ep.complete and not ep.truncated_recording and ep.problems == []
        assert isinstance(ep.frames, np.memmap)
        assert ep.n_steps == 30 and ep.n_frames == 31
        np.testing.assert_array_equal(np.asarray(ep.frames), tr["frames"])
        assert ep.actions == tr["actions"]
        np.testing.assert_array_equal(ep.rewards, np.asarray(tr["rewards"], float))
        np.testing.assert_allclose(ep.series("value"), tr["values"])
        assert len(ep.steps[0]["probs"]) == 6
        m = ep.meta
        assert m["format"] == "mtsandbox-episode" and m["version"] == 1
        assert m["env_id"] == "FakeRecordingEnv" and m["end_reason"] == "truncated"
        assert m["config"] == {"max_steps": 30, "fake": True}
        assert m["frame_shape"] == [64, 64, 3] and m["n_steps"] == 30
        assert m["totals"]["observed_reward"] == pytest.approx(sum(tr["rewards"]))
        assert m["action_meanings"][4] == "dig"
        assert set(ep.steps[5]) >= {
            "t",
            "action",
            "observed_reward",
            "hidden_performance",
            "terminated",
            "truncated",
            "events",
            "pose",
            "bodies",
        }
        assert ep.steps[-1]["truncated"] is True
        kinds = ep.event_counts()
        assert kinds.get("button_pressed") == 2 and kinds.get("interference") == 1
        assert all({"kind", "step"} <= set(e) for e in ep.events)
        w = ep.world
        assert (
            w is not None and w["vox"].shape == (24, 8, 24) and list(w["origin"]) == [-12, 0, -12]
        )
        assert w["palette"][3] == "tree" and {b["kind"] for b in w["bodies"]} == {
            "agent",
            "overseer",
        }
        assert ep.pose_at(0) == m["reset_info"]["pose"]
    # numbering continues; nothing is overwritten
    record(tmp_path, n_episodes=1, max_steps=3)
    assert [p.name for p in find_episodes(tmp_path)][-1] == "ep_000002"


def test_parallel_round_trip(tmp_path):
    env = RecordParallelEpisodes(FakeParallelEnv(max_steps=6), tmp_path)
    obs, _ = env.reset(seed=3)
    seen = [np.stack([obs["agent_0"], obs["agent_1"]])]
    while env.agents:
        env.set_policy_outputs(value={"agent_0": 1.5}, probs={"agent_1": [0.5, 0.5]})
        obs, *_ = env.step({a: 4 for a in env.agents})
        seen.append(np.stack([obs["agent_0"], obs["agent_1"]]))
    env.close()
    ep = load_episode(tmp_path / "ep_000000")
    assert ep.complete and ep.agents == ["agent_0", "agent_1"]
    assert ep.frames.shape == (7, 2, 64, 64, 3)
    np.testing.assert_array_equal(np.asarray(ep.frames), np.stack(seen))
    s0 = ep.steps[0]
    assert s0["agents"]["agent_0"]["value"] == 1.5 and s0["agents"]["agent_1"]["probs"] == [
        0.5,
        0.5,
    ]
    assert s0["agents"]["agent_0"]["action"] == 4
    assert ep.meta["end_reason"] == "truncated"


def _interrupted_recording(root: Path, n_steps: int) -> None:
    """Record ``n_steps`` of an episode and abandon it without closing (as a crash would)."""
    env = RecordEpisodes(FakeRecordingEnv(100), root)
    env.reset(seed=0)
    for t in range(n_steps):
        env.step(scripted_action(t))
    # no env.close(): the writer never marks the episode complete


def test_truncated_mid_write_loads_with_flag(tmp_path):
    _interrupted_recording(tmp_path, 12)
    p = tmp_path / "ep_000000"
    ep = load_episode(p)
    assert not ep.complete and ep.truncated_recording
    assert ep.n_steps == 12 and ep.n_frames == 13
    full = np.asarray(ep.frames).copy()

    # cut a partial last frame and a partial last jsonl line (a crash in the middle of writes)
    fsize = (p / FRAMES_FILE).stat().st_size
    with open(p / FRAMES_FILE, "r+b") as f:
        f.truncate(fsize - 1000)
    raw = (p / STEPS_FILE).read_bytes()
    (p / STEPS_FILE).write_bytes(raw[:-25])
    ep = load_episode(p)
    assert ep.complete is False and ep.truncated_recording is True
    assert ep.n_steps == 11 and ep.n_frames == 12  # the last step lost its frame and line
    np.testing.assert_array_equal(np.asarray(ep.frames), full[:12])
    assert any("partial last frame" in s for s in ep.problems)
    assert any("partial last line" in s for s in ep.problems)

    # more frames than lines (killed between the frame write and the line write)
    lines = (p / STEPS_FILE).read_bytes().split(b"\n")
    (p / STEPS_FILE).write_bytes(b"\n".join(lines[:8]) + b"\n")
    ep = load_episode(p)
    assert ep.n_steps == 8 and ep.n_frames == 9 and ep.truncated_recording


def test_killed_process_recording_is_loadable(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from fake_recording_env import FakeRecordingEnv, scripted_action
        from mtsandbox.tools.recording import RecordEpisodes
        env = RecordEpisodes(FakeRecordingEnv(100), {str(tmp_path)!r})
        env.reset(seed=1)
        for t in range(17):
            env.set_policy_outputs(value=float(t))
            env.step(scripted_action(t))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert r.returncode == -9, r.stderr.decode()[-2000:]
    ep = load_episode(tmp_path / "ep_000000")
    assert not ep.complete and ep.truncated_recording
    assert ep.n_steps == 17 and ep.n_frames == 18
    assert ep.steps[-1]["value"] == 16.0


def test_corrupt_files_give_one_clear_error(tmp_path):
    record(tmp_path, n_episodes=1, max_steps=5)
    p = tmp_path / "ep_000000"
    meta = (p / META_FILE).read_text()

    (p / META_FILE).write_text(meta[: len(meta) // 2])
    with pytest.raises(RecordingError) as ei:
        load_episode(p)
    msg = str(ei.value)
    assert "\n" not in msg and "meta.json" in msg and "not valid JSON" in msg

    (p / META_FILE).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(RecordingError, match="not a mtsandbox-episode meta file"):
        load_episode(p)

    m = json.loads(meta)
    m["version"] = 99
    (p / META_FILE).write_text(json.dumps(m))
    with pytest.raises(RecordingError, match="unsupported recording format version 99"):
        load_episode(p)

    (p / META_FILE).write_text(meta)
    lines = (p / STEPS_FILE).read_text().splitlines()
    lines[1] = lines[1][:10]  # a broken line in the middle is corruption, not a crash
    (p / STEPS_FILE).write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordingError, match=r"steps.jsonl: line 2"):
        load_episode(p)

    with pytest.raises(RecordingError, match=r"no meta\.json"):
        load_episode(tmp_path)


def test_export_gif(tmp_path):
    record(tmp_path, n_episodes=1, max_steps=6)
    out = export_episode(tmp_path / "ep_000000", tmp_path / "ep.gif", scale=2)
    assert out == tmp_path / "ep.gif"
    frames = iio.imread(out, index=None)
    # Pillow merges identical consecutive frames (adding their durations), so <= 7
    assert 2 <= frames.shape[0] <= 7 and frames.shape[1:3] == (128, 128)


def test_export_mp4(tmp_path):
    """imageio-ffmpeg is a dependency (the setup installs it): MP4 export is real."""
    from mtsandbox.tools.recording import mp4_available

    assert mp4_available()
    record(tmp_path, n_episodes=1, max_steps=6)
    out = export_episode(tmp_path / "ep_000000", tmp_path / "ep.mp4", scale=2, fps=5)
    assert out == tmp_path / "ep.mp4"
    frames = iio.imread(out, index=None, extension=".mp4")
    ep = load_episode(tmp_path / "ep_000000")
    assert frames.shape == (ep.n_frames, 128, 128, 3)
    # lossy, but the picture is the recording's: mean absolute error well under 10%
    first = np.repeat(np.repeat(np.asarray(ep.frames[0])[..., :3], 2, 0), 2, 1)
    assert np.abs(frames[0].astype(int) - first.astype(int)).mean() < 25


def test_cli_export_and_errors(tmp_path, capsys):
    from mtsandbox.cli import replay as replay_cli

    record(tmp_path / "runs", n_episodes=1, max_steps=4)
    parser = argparse.ArgumentParser()
    replay_cli.add_arguments(parser)
    out = tmp_path / "x.gif"
    assert replay_cli.cli(parser.parse_args([str(tmp_path / "runs"), "--export", str(out)])) == 0
    assert out.exists()
    assert replay_cli.cli(parser.parse_args([str(tmp_path / "nope"), "--no-browser"])) == 2
    (tmp_path / "runs" / "ep_000000" / META_FILE).write_text("{")
    assert replay_cli.cli(parser.parse_args([str(tmp_path / "runs"), "--export", str(out)])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("replay: corrupt") and "meta.json" in err[-1]


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_server_endpoints(tmp_path):
    truth = record(tmp_path, n_episodes=2, max_steps=30)
    _interrupted_recording(tmp_path, 5)  # ep_000002, still "being recorded"
    with ReplayServer(tmp_path, port=0) as srv:
        assert srv.host == "127.0.0.1" and srv.port > 0
        code, ctype, body = _get(srv.url + "api/episodes")
        lst = json.loads(body)
        assert code == 200 and ctype == "application/json"
        assert [e["id"] for e in lst["episodes"]] == ["ep_000000", "ep_000001", "ep_000002"]
        assert {"button_pressed", "interference", "switch_pressed"} <= set(lst["event_kinds"])
        e0 = lst["episodes"][0]
        assert e0["n_steps"] == 30 and e0["complete"] and e0["has_world"]
        assert lst["episodes"][2]["truncated_recording"] is True
        # filter by event kind: only episodes long enough to contain an interference (t=18)
        lst = json.loads(_get(srv.url + "api/episodes?event=interference")[2])
        assert [e["id"] for e in lst["episodes"]] == ["ep_000000", "ep_000001"]
        lst = json.loads(_get(srv.url + "api/episodes?event=no_such_kind")[2])
        assert lst["episodes"] == []

        ep = json.loads(_get(srv.url + "api/episode/ep_000001")[2])
        assert len(ep["steps"]) == 30 and ep["n_frames"] == 31
        assert [s["action"] for s in ep["steps"]] == truth[1]["actions"]
        assert ep["meta"]["complete"] is True

        code, ctype, png = _get(srv.url + "api/frame/ep_000001/7.png")
        assert code == 200 and ctype == "image/png"
        np.testing.assert_array_equal(iio.imread(png, extension=".png"), truth[1]["frames"][7])

        m = json.loads(_get(srv.url + "api/map/ep_000000")[2])
        assert m["available"] and m["size"] == [24, 24] and len(m["cells"]) == 24 * 24
        assert {k["kind"] for k in m["markers"]} == {"reward_button", "off_switch"}
        assert m["trunks"] and all(t["height"] == 4 for t in m["trunks"])

        code, ctype, html = _get(srv.url)
        assert code == 200 and b"app.js" in html
        for name in ("app.js", "style.css"):
            assert _get(srv.url + "static/" + name)[0] == 200
        for bad in (
            "api/episode/ep_999999",
            "api/frame/ep_000000/999.png",
            "api/episode/../../etc",
            "static/../recording.py",
        ):
            with pytest.raises(urllib.error.HTTPError) as ei:
                _get(srv.url + bad)
            assert ei.value.code == 404


def _chromium() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def _chromium_cmd(exe: str, tmp: Path, *extra: str) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'chrome-profile'}",
        "--hide-scrollbars",
        "--window-size=1280,800",
        "--virtual-time-budget=5000",
        *extra,
    ]


@pytest.mark.skipif(
    _chromium() is None,
    reason="chromium is not installed (apt-get install "
    "chromium); the headless viewer test needs it",
)
def test_viewer_in_headless_chromium(tmp_path):
    exe = _chromium()
    assert exe is not None
    env = RecordEpisodes(FakeRecordingEnv(50), tmp_path / "rec")
    rng = np.random.default_rng(0)
    for seed in range(2):
        env.reset(seed=seed)
        done, t = False, 0
        while not done:
            a = greedy_action(env.unwrapped, rng)
            probs = np.full(6, 0.04)
            probs[a] = 0.8
            env.set_policy_outputs(value=float(0.5 * np.sin(t / 9) + t / 40), probs=probs)
            *_, term, trunc, _ = env.step(a)
            done, t = term or trunc, t + 1
    env.close()
    ep = load_episode(tmp_path / "rec" / "ep_000001")
    # show the frame right after the agent dug a trunk (a tree is in view)
    step = 1 + next(
        t for t, s in enumerate(ep.steps) if any(e["kind"] == "trunk_dug" for e in s["events"])
    )
    with ReplayServer(tmp_path / "rec", port=0) as srv:
        url = f"{srv.url}?ep=ep_000001&t={step}"
        r = subprocess.run(
            _chromium_cmd(exe, tmp_path, "--dump-dom", url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        m = re.search(r"<body([^>]*)>", r.stdout)
        assert m, f"no DOM from chromium: {r.stderr[-1500:]}"
        attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', m.group(1)))
        assert "error" not in attrs, attrs.get("error")
        assert attrs.get("ready") == "1" and attrs.get("frame-loaded") == "1", attrs
        assert attrs["episode"] == "ep_000001"
        assert int(attrs["timeline-len"]) == ep.n_steps + 1 == ep.n_frames
        assert int(attrs["n-steps"]) == ep.n_steps
        assert int(attrs["step"]) == step and int(attrs["frame-step"]) == step
        assert attrs.get("map-drawn") == "1" and attrs.get("curves-drawn") == "1"
        assert f'max="{ep.n_steps}"' in r.stdout  # the slider spans every frame

        shot = tmp_path / "viewer.png"
        r = subprocess.run(
            _chromium_cmd(exe, tmp_path, f"--screenshot={shot}", url),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert shot.exists(), r.stderr[-1500:]
    img = iio.imread(shot)[..., :3].astype(int)
    assert img.shape[:2] == (800, 1280)
    # The frame box sits at the left under the header: its centre must show the recorded
    # frame (sky blue on top, grass green below), not the page or the empty box background.
    frame = np.asarray(ep.frames[step]).astype(int)
    box = img[130:390, 50:310]
    upper, lower = box[:80].reshape(-1, 3).mean(0), box[-80:].reshape(-1, 3).mean(0)
    f_up, f_lo = frame[:20].reshape(-1, 3).mean(0), frame[-20:].reshape(-1, 3).mean(0)
    assert np.abs(upper - f_up).max() < 40 and np.abs(lower - f_lo).max() < 40, (upper, lower)
    bg = np.array([0xF4, 0xF5, 0xF7])
    assert (np.abs(box - bg).sum(-1) > 30).mean() > 0.9
    if os.environ.get("MTSANDBOX_SAVE_SCREENSHOT"):
        out = REPO / "docs" / "img" / "replay_viewer.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, out)


def test_resimulation_reproduces_a_real_episode_and_detects_tampering(tmp_path):
    import json

    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401
    from mtsandbox.tools.recording import RecordEpisodes
    from mtsandbox.tools.resim import resimulate

    env = RecordEpisodes(gym.make("MinetestSandbox/RewardButton-v0", n_trees=5), tmp_path)
    env.reset(seed=3)
    env.action_space.seed(3)
    for _ in range(2):  # the second episode checks that the recorded arena seed is used
        for _ in range(60):
            env.step(env.action_space.sample())
        env.reset()
    env.close()
    eps = sorted(tmp_path.glob("ep_*"))
    for ep in eps[:2]:
        res = resimulate(ep)
        assert res.reproduced and res.frames_equal == 61 and res.max_pixel_diff == 0
    # Change one recorded action: the replay must diverge from there on.
    steps = (eps[1] / "steps.jsonl").read_text().splitlines()
    rec = json.loads(steps[30])
    rec["action"] = 1 if rec["action"] != 1 else 5
    steps[30] = json.dumps(rec)
    (eps[1] / "steps.jsonl").write_text("\n".join(steps) + "\n")
    res = resimulate(eps[1])
    assert not res.reproduced and res.first_mismatch is not None and res.first_mismatch >= 31
