"""Env versions: what a registered id resolves to, and a fingerprint of its defaults.

The rule (README, "Environments"): a change of any observation, reward or dynamics default of
an id needs a new id version (``-v1`` -> ``-v2``); the old id keeps its behaviour. Two pieces
make the rule checkable:

* :func:`resolve` turns ``(env_id, env_kwargs)`` into the complete variant, every default
  filled in (env options, the task or scenario class and all its parameters, the episode
  limit), without starting a server. Checkpoints store it (``meta["env_resolved"]``) and
  readers compare it with what the same id and kwargs resolve to today
  (:func:`variant_mismatch`).
* :func:`fingerprint` hashes the resolved defaults of an id (plus the node palette, which
  fixes the colours the agent sees). ``envs/versions.json`` records the fingerprint of every
  registered id; ``tests/test_versions.py`` fails when one changes, so a default cannot change
  without a bump. Add a new id's fingerprint with
  ``python -m mtsandbox.envs.versions --write``; never edit an existing entry.

Operational settings (ports, timeouts, where the renderer runs, run directories) are not part
of a variant: they do not change what the agent sees, does or is paid.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import sys
from pathlib import Path
from typing import Any

VERSIONS_FILE = Path(__file__).with_name("versions.json")
PALETTE_FILE = Path(__file__).with_name("nodes.yaml")

# Options that do not define the variant (how it runs, not what it is).
OPERATIONAL = frozenset({
    "on_server_death", "reply_timeout_s", "render_device", "client_options",
    "step_interval", "yield_ms", "sync_every_step", "controller_timeout_s", "frame_timeout_s",
    "bind_address",
    "startup_timeout_s", "keep_run_dir", "run_root", "extra_conf", "client_password", "label",
})
# Gymnasium's make() keywords that wrap the env instead of configuring it.
MAKE_KEYS = ("max_episode_steps", "disable_env_checker", "order_enforce", "autoreset",
             "apply_api_compatibility")


def _jsonable(v: Any) -> Any:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        v = dataclasses.asdict(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in sorted(v.items(), key=lambda kv: str(kv[0]))}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def _on(v: Any) -> bool:
    """Values that do something: an option left off (False, None, 0, empty) is left out, so
    a new option whose default is off does not change an id's fingerprint, while changing a
    default to or from off still does (the key appears or disappears)."""
    return not (v is None or v is False or (isinstance(v, (int, float)) and v == 0)
                or (isinstance(v, (str, list, tuple, dict)) and len(v) == 0))


def task_state(task: Any) -> dict[str, Any]:
    """A task's parameters as constructed (its public attributes before any episode, the ones
    that are on): what its defaults, including those set inside ``__init__``, resolved to."""
    return {k: v for k, v in vars(task).items() if not k.startswith("_") and _on(v)}


def _env_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    from mtsandbox.envs.core import EnvConfig

    cfg = EnvConfig.from_kwargs(**kwargs)  # rejects unknown options with one clear line
    opts = {k: v for k, v in dataclasses.asdict(cfg).items()
            if k not in OPERATIONAL and (_on(v) or k == "server")}
    opts["server"] = {k: v for k, v in opts["server"].items()
                      if k not in OPERATIONAL and _on(v)}
    return opts


def resolve(env_id: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The complete variant ``gym.make(env_id, **env_kwargs)`` builds, as JSON-able data."""
    import gymnasium as gym

    import mtsandbox.envs  # noqa: F401  (registers the ids)

    try:
        spec = gym.spec(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown env id {env_id!r} ({e})") from None
    kw = {**spec.kwargs, **(env_kwargs or {})}
    out: dict[str, Any] = {"env_id": env_id, "version": spec.version,
                           "max_episode_steps": kw.pop("max_episode_steps",
                                                       spec.max_episode_steps)}
    for k in MAKE_KEYS:
        kw.pop(k, None)
    kw.pop("render_mode", None)
    task: Any
    if "scenario" in kw:
        from mtsandbox.envs.scenarios import _make_task, scenario_env_defaults

        scenario = kw.pop("scenario")
        task = _make_task(scenario, {**(kw.pop("scenario_defaults", None) or {}),
                                     **(kw.pop("scenario_kwargs", None) or {})})
        out["env"] = _env_options({**scenario_env_defaults(scenario), **kw})
    else:
        from mtsandbox.envs.tasks import TreePunch

        names = inspect.signature(TreePunch.__init__).parameters
        task = TreePunch(**{k: kw.pop(k) for k in list(kw) if k in names and k != "self"})
        out["env"] = _env_options(kw)
    out["task"] = type(task).__name__
    out["task_params"] = task_state(task)
    return _jsonable(out)


def fingerprint(env_id: str) -> str:
    """sha256 (16 hex digits) of the resolved defaults of ``env_id`` and the node palette."""
    h = hashlib.sha256(json.dumps(resolve(env_id), sort_keys=True).encode())
    h.update(PALETTE_FILE.read_bytes())
    return h.hexdigest()[:16]


def recorded() -> dict[str, str]:
    return json.loads(VERSIONS_FILE.read_text()) if VERSIONS_FILE.exists() else {}


def _diff(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k, "off"), b.get(k, "off"), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path}: {a!r} -> {b!r}"]


def variant_mismatch(meta: dict[str, Any]) -> str | None:
    """One line saying how the variant a checkpoint was trained on differs from what its
    ``env_id`` and ``env_kwargs`` build today (None when they agree or the checkpoint predates
    the record)."""
    stored = meta.get("env_resolved")
    env_id = meta.get("env_id")
    if not isinstance(stored, dict) or not env_id:
        return None
    try:
        now = resolve(env_id, meta.get("env_kwargs") or {})
    except (ValueError, TypeError) as e:
        return f"{env_id} cannot be built as recorded: {e}"
    diffs = _diff(stored, now)
    if not diffs:
        return None
    more = f" (+{len(diffs) - 4} more)" if len(diffs) > 4 else ""
    return f"{env_id} now builds a different variant than it was trained on: " \
           f"{'; '.join(diffs[:4])}{more}"


def main(argv: list[str] | None = None) -> int:
    import mtsandbox.envs

    ids = mtsandbox.envs.ALL_IDS
    rec = recorded()
    if argv and "--write" in argv:
        new = {i: fingerprint(i) for i in ids if i not in rec}
        VERSIONS_FILE.write_text(json.dumps({**rec, **new}, indent=2, sort_keys=True) + "\n")
        print(f"added {sorted(new) or 'nothing'}; existing entries are never rewritten")
        return 0
    bad = 0
    for i in ids:
        fp = fingerprint(i)
        state = "ok" if rec.get(i) == fp else ("new" if i not in rec else "CHANGED")
        bad += state != "ok"
        print(f"{i:45s} {fp} {state}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
