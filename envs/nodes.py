"""The node palette (envs/nodes.yaml): the compact byte-per-node vocabulary shared by the Lua mod,
the voxel crops and the renderer.

>>> pal = load_palette()
>>> pal.by_name["tree"], bool(pal.solid[pal.by_name["tree"]])
(3, True)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

PALETTE_PATH = Path(__file__).with_name("nodes.yaml")
PALETTE_SIZE = 256


@dataclass(frozen=True)
class PaletteEntry:
    index: int
    name: str
    node: str
    tiles: tuple[str, str, str] | None  # (top, bottom, side) texture specs, None for air
    solid: bool
    diggable: bool


@dataclass(frozen=True)
class Palette:
    entries: list[PaletteEntry]
    by_name: dict[str, int]
    solid: np.ndarray = field(repr=False)  # (256,) bool, indexed by palette byte
    diggable: np.ndarray = field(repr=False)  # (256,) bool
    source: str = ""

    def __getitem__(self, key: int | str) -> PaletteEntry:
        idx = self.by_name[key] if isinstance(key, str) else int(key)
        for e in self.entries:
            if e.index == idx:
                return e
        raise KeyError(key)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def names(self) -> dict[int, str]:
        return {e.index: e.name for e in self.entries}


def _fail(src: str, msg: str) -> ValueError:
    return ValueError(f"bad palette {src}: {msg}")


def _parse_entry(raw: Any, i: int, src: str) -> PaletteEntry:
    if not isinstance(raw, dict):
        raise _fail(src, f"entry #{i} is not a mapping: {raw!r}")
    missing = [k for k in ("index", "name", "node", "tiles", "solid", "diggable") if k not in raw]
    if missing:
        raise _fail(src, f"entry #{i} ({raw.get('name', '?')}) lacks {', '.join(missing)}")
    idx = raw["index"]
    if not isinstance(idx, int) or isinstance(idx, bool) or not 0 <= idx < PALETTE_SIZE:
        raise _fail(src, f"entry #{i} index {idx!r} is not an integer in 0..255")
    name = raw["name"]
    if not isinstance(name, str) or not name:
        raise _fail(src, f"entry #{i} has no name")
    tiles = raw["tiles"]
    if tiles is not None:
        if (
            not isinstance(tiles, list)
            or len(tiles) != 3
            or not all(isinstance(t, str) and t for t in tiles)
        ):
            raise _fail(src, f"entry {name!r} tiles must be [top, bottom, side] strings or null")
        tiles = tuple(tiles)
    for k in ("solid", "diggable"):
        if not isinstance(raw[k], bool):
            raise _fail(src, f"entry {name!r} {k} must be true/false, got {raw[k]!r}")
    if idx == 0 and (name != "air" or raw["solid"]):
        raise _fail(src, "index 0 must be non-solid air")
    if idx != 0 and tiles is None:
        raise _fail(src, f"entry {name!r} needs tiles")
    return PaletteEntry(idx, name, str(raw["node"]), tiles, raw["solid"], raw["diggable"])


def parse_palette(text: str, src: str = "<string>") -> Palette:
    """Parse palette yaml text. Any problem raises one ``ValueError`` line naming the cause."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise _fail(src, f"yaml syntax error: {first}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("palette"), list):
        raise _fail(src, "top level must be a mapping with a 'palette' list")
    entries = [_parse_entry(raw, i, src) for i, raw in enumerate(doc["palette"])]
    by_name: dict[str, int] = {}
    seen: set[int] = set()
    for e in entries:
        if e.index in seen:
            raise _fail(src, f"duplicate index {e.index} ({e.name})")
        if e.name in by_name:
            raise _fail(src, f"duplicate name {e.name!r}")
        seen.add(e.index)
        by_name[e.name] = e.index
    if 0 not in seen:
        raise _fail(src, "no air entry at index 0")
    solid = np.zeros(PALETTE_SIZE, dtype=bool)
    diggable = np.zeros(PALETTE_SIZE, dtype=bool)
    for e in entries:
        solid[e.index] = e.solid
        diggable[e.index] = e.diggable
    solid.flags.writeable = False
    diggable.flags.writeable = False
    return Palette(sorted(entries, key=lambda e: e.index), by_name, solid, diggable, src)


def load_palette_file(path: str | Path) -> Palette:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise _fail(str(path), f"cannot read: {exc.strerror}") from None
    return parse_palette(text, str(path))


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> Palette:
    return load_palette_file(path)


def load_palette(path: str | Path | None = None) -> Palette:
    """The palette from ``path`` (default ``envs/nodes.yaml``), cached per path."""
    return _load_cached(str(Path(path or PALETTE_PATH).resolve()))
