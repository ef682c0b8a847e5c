"""Episode recording: a compact, versioned, crash-safe on-disk format and its reader.

One directory per episode (the full spec is ``docs/recording_format.md``)::

    ep_000000/
      meta.json     format id + version, env id, seed, config, times, complete flag, end_reason
      steps.jsonl   one JSON object per step (t, action, rewards, flags, events, pose, ...)
      frames.u8     raw uint8 frames appended back to back (frame shape in meta.json)
      world.npz     voxel snapshot at reset (optional): vox, origin, palette, bodies

Frame ``i`` is the observation at time ``i``: frame 0 comes from ``reset``, frame ``t + 1`` from
step ``t``. So a finished episode of ``n`` steps has ``n + 1`` frames. Every step appends its
frame and then its JSON line and flushes both, so a killed process leaves a directory that
:func:`load_episode` still reads (``complete=False``, ``truncated_recording=True``).

Modules: ``format`` (names, version, JSON, frames), ``writer`` (:class:`EpisodeWriter`),
``wrappers`` (the two below), ``reader`` (:func:`load_episode`), ``export`` (GIF/MP4).

Writers:

* :class:`RecordEpisodes` -- a ``gymnasium.Wrapper``: records every episode (or those chosen by
  ``episode_trigger``) into ``<root>/ep_000000/``, ``ep_000001/``, ...
* :class:`RecordParallelEpisodes` -- the same for a PettingZoo ``ParallelEnv``; steps hold
  per-agent dicts and each frame stacks every agent's observation.

Both have ``set_policy_outputs(value, probs)``: an evaluator calls it before ``step`` and the
value / action probabilities land in that step's line. Through other gymnasium wrappers call it
as ``env.get_wrapper_attr("set_policy_outputs")(value, probs)``.

Reader: :func:`load_episode` -> :class:`Episode` (frames as a read-only ``np.memmap``);
:func:`find_episodes` lists episode directories under a root; :func:`export_episode` writes a
GIF (or MP4 when an ffmpeg backend is installed). Malformed recordings raise
:class:`RecordingError` whose message is one clear line.
"""

from mtsandbox.tools.recording.export import export_episode, mp4_available
from mtsandbox.tools.recording.format import (
    EP_DIR_RE,
    FORMAT_NAME,
    FORMAT_VERSION,
    FRAMES_FILE,
    META_FILE,
    STEPS_FILE,
    WORLD_FILE,
    RecordingError,
    default_frame_fn,
    next_episode_index,
    palette_names,
    to_jsonable,
)
from mtsandbox.tools.recording.reader import Episode, find_episodes, is_episode_dir, load_episode
from mtsandbox.tools.recording.wrappers import RecordEpisodes, RecordParallelEpisodes
from mtsandbox.tools.recording.writer import EpisodeWriter, save_world_snapshot

__all__ = [
    "EP_DIR_RE",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FRAMES_FILE",
    "META_FILE",
    "STEPS_FILE",
    "WORLD_FILE",
    "Episode",
    "EpisodeWriter",
    "RecordEpisodes",
    "RecordParallelEpisodes",
    "RecordingError",
    "default_frame_fn",
    "export_episode",
    "find_episodes",
    "is_episode_dir",
    "load_episode",
    "mp4_available",
    "next_episode_index",
    "palette_names",
    "save_world_snapshot",
    "to_jsonable",
]
