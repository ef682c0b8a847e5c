"""Node textures: find Minetest PNGs, apply "a^b" overlays, and bake the renderer's atlas.

Search order for a texture file: ``envs/mod/mtsandbox/textures`` (the project's own), then the
``textures`` folder of every mod of minetest_game (Debian's ``minetest-data`` puts it under
``/usr/share/games/minetest/games/minetest_game``; ``MTSANDBOX_MINETEST_GAME`` overrides).
A texture that cannot be found is replaced by a flat placeholder colour (with one warning), so
the renderer still works on a machine without minetest-data.

Face shading follows Minetest's ``applyFacesShading``: +Y 1.0, -Y 0.447, +-X 0.671, +-Z 0.837.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from .nodes import PALETTE_SIZE, Palette, load_palette

TEX = 16
PROJECT_TEXTURES = Path(__file__).parent / "mod" / "mtsandbox" / "textures"
_GAME_DIRS = (
    "/usr/share/games/minetest/games/minetest_game",
    "/usr/share/minetest/games/minetest_game",
    "/usr/local/share/minetest/games/minetest_game",
    "~/.minetest/games/minetest_game",
    "~/.local/share/minetest/games/minetest_game",
)
CHARACTER_PNG = "character.png"

# Minetest's applyFacesShading factors.
SHADE_TOP = 1.0
SHADE_BOTTOM = 0.447213
SHADE_X = 0.670820
SHADE_Z = 0.836660
# Colour behind transparent texels (simple/opaque leaves): a dark leaf green.
LEAF_BACKING = np.array([22, 46, 16], dtype=np.float32)

# Atlas face slots. `build_atlas` returns (256, 3, ...) [top, bottom, side]; the renderer's
# `build_render_atlas` returns (256, 4, ...) with the side split into X-facing and Z-facing.
FACE_TOP, FACE_BOTTOM, FACE_SIDE = 0, 1, 2
RFACE_TOP, RFACE_BOTTOM, RFACE_SIDE_X, RFACE_SIDE_Z = 0, 1, 2, 3


def minetest_game_dir() -> Path | None:
    env = os.environ.get("MTSANDBOX_MINETEST_GAME")
    cands = ([env] if env else []) + list(_GAME_DIRS)
    for c in cands:
        p = Path(c).expanduser()
        if (p / "mods").is_dir():
            return p
    return None


@functools.lru_cache(maxsize=1)
def texture_dirs() -> tuple[Path, ...]:
    """Directories searched for texture files, in priority order."""
    dirs = [PROJECT_TEXTURES]
    game = minetest_game_dir()
    if game is not None:
        mods = sorted((game / "mods").iterdir())
        for mod in mods:
            for sub in ("textures", "models"):
                if (mod / sub).is_dir():
                    dirs.append(mod / sub)
    return tuple(dirs)


def find_texture(name: str) -> Path | None:
    for d in texture_dirs():
        p = d / name
        if p.is_file():
            return p
    return None


def _placeholder(name: str) -> np.ndarray:
    h = hashlib.sha1(name.encode()).digest()
    img = np.empty((TEX, TEX, 4), dtype=np.uint8)
    img[..., :3] = np.array([h[0], h[1], h[2]], dtype=np.uint8)
    img[..., 3] = 255
    img[::2, ::2, :3] //= 2
    return img


_warned: set[str] = set()


def resize_nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    sh, sw = img.shape[:2]
    if sh % h == 0 and sw % w == 0:  # integer downscale: box filter
        fh, fw = sh // h, sw // w
        f = img.astype(np.float32).reshape(h, fh, w, fw, -1).mean(axis=(1, 3))
        return np.round(f).astype(np.uint8)
    ys = (np.arange(h) * sh) // h
    xs = (np.arange(w) * sw) // w
    return img[ys][:, xs]


@functools.lru_cache(maxsize=256)
def load_png_rgba(name: str) -> np.ndarray:
    """One texture file as (h, w, 4) uint8 RGBA (placeholder colour if it is missing)."""
    path = find_texture(name)
    if path is None:
        if name not in _warned:
            _warned.add(name)
            warnings.warn(f"texture {name!r} not found; using a placeholder colour", stacklevel=2)
        return _placeholder(name)
    img = iio.imread(path, mode="RGBA")  # mode=RGBA keeps tRNS transparency of paletted PNGs
    img = np.ascontiguousarray(img[..., :4]).astype(np.uint8)
    img.flags.writeable = False
    return img


def alpha_over(dst: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Composite RGBA ``src`` over RGBA ``dst`` (same size), straight alpha, uint8 in/out."""
    d = dst.astype(np.float32) / 255.0
    s = src.astype(np.float32) / 255.0
    sa, da = s[..., 3:4], d[..., 3:4]
    oa = sa + da * (1.0 - sa)
    rgb = (s[..., :3] * sa + d[..., :3] * da * (1.0 - sa)) / np.maximum(oa, 1e-6)
    out = np.concatenate([rgb, oa], axis=-1)
    return np.round(np.clip(out, 0.0, 1.0) * 255.0).astype(np.uint8)


@functools.lru_cache(maxsize=256)
def load_texture(spec: str, size: int = TEX) -> np.ndarray:
    """A texture spec (``"a.png"`` or ``"a.png^b.png^..."``) as (size, size, 4) RGBA uint8."""
    parts = [p.strip() for p in spec.split("^") if p.strip()]
    if not parts:
        raise ValueError(f"empty texture spec {spec!r}")
    out = resize_nearest(load_png_rgba(parts[0]), size, size)
    for p in parts[1:]:
        out = alpha_over(out, resize_nearest(load_png_rgba(p), size, size))
    out = np.ascontiguousarray(out)
    out.flags.writeable = False
    return out


def opaque_rgb(rgba: np.ndarray, backing: np.ndarray = LEAF_BACKING) -> np.ndarray:
    """Fill transparent texels with ``backing`` (Minetest's opaque/simple leaves) -> RGB uint8."""
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32) * a + backing * (1.0 - a)
    return np.round(rgb).astype(np.uint8)


def _shade(rgb: np.ndarray, f: float) -> np.ndarray:
    return np.round(rgb.astype(np.float32) * f).clip(0, 255).astype(np.uint8)


def base_textures(palette: Palette | None = None) -> np.ndarray:
    """Unshaded opaque RGB per palette entry and face: (256, 3 [top, bottom, side], 16, 16, 3)."""
    palette = palette or load_palette()
    out = np.zeros((PALETTE_SIZE, 3, TEX, TEX, 3), dtype=np.uint8)
    out[:] = (255, 0, 255)  # unused indices: magenta, easy to spot
    out[0] = 0
    for e in palette.entries:
        if e.tiles is None:
            continue
        for f, spec in enumerate(e.tiles):
            out[e.index, f] = opaque_rgb(load_texture(spec))
    return out


def build_atlas(palette: Palette | None = None) -> np.ndarray:
    """(256, 3 [top, bottom, side], 16, 16, 3) uint8 with Minetest face shading baked in
    (top 1.0, bottom 0.447, side with the Z-face factor 0.837; X faces use 0.671, see
    `build_render_atlas`)."""
    base = base_textures(palette)
    out = np.empty_like(base)
    out[:, 0] = _shade(base[:, 0], SHADE_TOP)
    out[:, 1] = _shade(base[:, 1], SHADE_BOTTOM)
    out[:, 2] = _shade(base[:, 2], SHADE_Z)
    return out


def build_render_atlas(palette: Palette | None = None) -> np.ndarray:
    """Renderer atlas (256, 4 [top, bottom, side_x, side_z], 16, 16, 3) uint8, shading baked."""
    base = base_textures(palette)
    out = np.empty((PALETTE_SIZE, 4, TEX, TEX, 3), dtype=np.uint8)
    out[:, RFACE_TOP] = _shade(base[:, 0], SHADE_TOP)
    out[:, RFACE_BOTTOM] = _shade(base[:, 1], SHADE_BOTTOM)
    out[:, RFACE_SIDE_X] = _shade(base[:, 2], SHADE_X)
    out[:, RFACE_SIDE_Z] = _shade(base[:, 2], SHADE_Z)
    return out


# ----------------------------------------------------------------------------------------------
# Player body texture (character.png, Minecraft-style 64x32 skin)
# ----------------------------------------------------------------------------------------------
BODY_W, BODY_H = 16, 32  # texels across a body face, texels from feet (row 31) to top (row 0)
# body face slots: 0 front (+look dir), 1 back, 2 right, 3 left, 4 top, 5 bottom
BODY_FRONT, BODY_BACK, BODY_RIGHT, BODY_LEFT, BODY_TOP, BODY_BOTTOM = range(6)


def _skin_region(skin: np.ndarray, x: int, y: int, w: int, h: int) -> np.ndarray:
    return skin[y : y + h, x : x + w]


def _stretch(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * img.shape[0]) // h
    xs = (np.arange(w) * img.shape[1]) // w
    return img[ys][:, xs]


def _load_skin() -> np.ndarray:
    skin = np.array(load_png_rgba(CHARACTER_PNG))
    if skin.shape[:2] != (32, 64):
        skin = _stretch(skin, 32, 64) if skin.shape[1] == 2 * skin.shape[0] else skin
    if skin.shape[:2] != (32, 64):  # placeholder or odd skin: plain figure
        skin = np.zeros((32, 64, 4), dtype=np.uint8)
        skin[..., 3] = 255
        skin[0:16, :, :3] = (200, 150, 110)
        skin[16:20, :, :3] = (40, 40, 140)
        skin[20:32, 16:56, :3] = (60, 140, 50)
        skin[20:32, 0:16, :3] = (40, 40, 140)
    return skin


def build_body_texture() -> np.ndarray:
    """(6 faces [front, back, right, left, top, bottom], 32, 16, 3) uint8, unshaded.

    Each side face of the 0.6 x 1.77 x 0.6 box is 16 texels wide and 32 high: head (8 rows),
    shirt (12 rows: arm | body | arm on the front/back), legs (12 rows). Image columns run
    left to right as seen by a viewer facing that face."""
    skin = _load_skin()

    def head(x: int) -> np.ndarray:  # 8x8 head face + hat overlay (hat layer is +32 px in x)
        base = _skin_region(skin, x, 8, 8, 8).copy()
        base[..., 3] = 255
        return alpha_over(base, _skin_region(skin, x + 32, 8, 8, 8))

    faces = np.zeros((6, BODY_H, BODY_W, 4), dtype=np.uint8)
    # front: head front, arm|body|arm front, leg|leg front
    faces[BODY_FRONT, 0:8] = _stretch(head(8), 8, 16)
    faces[BODY_FRONT, 8:20, 0:4] = _skin_region(skin, 44, 20, 4, 12)
    faces[BODY_FRONT, 8:20, 4:12] = _skin_region(skin, 20, 20, 8, 12)
    faces[BODY_FRONT, 8:20, 12:16] = _skin_region(skin, 44, 20, 4, 12)[:, ::-1]
    leg_f = _skin_region(skin, 4, 20, 4, 12)
    faces[BODY_FRONT, 20:32] = np.concatenate(
        [_stretch(leg_f, 12, 8), _stretch(leg_f[:, ::-1], 12, 8)], axis=1
    )
    # back
    faces[BODY_BACK, 0:8] = _stretch(head(24), 8, 16)
    faces[BODY_BACK, 8:20, 0:4] = _skin_region(skin, 52, 20, 4, 12)
    faces[BODY_BACK, 8:20, 4:12] = _skin_region(skin, 32, 20, 8, 12)
    faces[BODY_BACK, 8:20, 12:16] = _skin_region(skin, 52, 20, 4, 12)[:, ::-1]
    leg_b = _skin_region(skin, 12, 20, 4, 12)
    faces[BODY_BACK, 20:32] = np.concatenate(
        [_stretch(leg_b, 12, 8), _stretch(leg_b[:, ::-1], 12, 8)], axis=1
    )
    # right side (the body's own right): head right, arm outer side, leg outer side
    faces[BODY_RIGHT, 0:8] = _stretch(head(0), 8, 16)
    faces[BODY_RIGHT, 8:20] = _stretch(_skin_region(skin, 40, 20, 4, 12), 12, 16)
    faces[BODY_RIGHT, 20:32] = _stretch(_skin_region(skin, 0, 20, 4, 12), 12, 16)
    faces[BODY_LEFT, 0:8] = _stretch(head(16), 8, 16)
    faces[BODY_LEFT, 8:20] = _stretch(_skin_region(skin, 40, 20, 4, 12)[:, ::-1], 12, 16)
    faces[BODY_LEFT, 20:32] = _stretch(_skin_region(skin, 0, 20, 4, 12)[:, ::-1], 12, 16)
    top = _skin_region(skin, 8, 0, 8, 8).copy()
    top[..., 3] = 255
    top = alpha_over(top, _skin_region(skin, 40, 0, 8, 8))
    faces[BODY_TOP] = _stretch(top, 32, 16)
    faces[BODY_BOTTOM] = _stretch(_skin_region(skin, 8, 16, 4, 4), 32, 16)
    faces[..., 3] = 255
    # any leftover transparency (odd skins): dark grey
    return opaque_rgb(faces, np.array([40, 40, 40], dtype=np.float32))


# ----------------------------------------------------------------------------------------------
# The project's own node textures (drawn here so they are reproducible)
# ----------------------------------------------------------------------------------------------
def _stone_base(rng: np.random.Generator) -> np.ndarray:
    stone = find_texture("default_stone.png")
    if stone is not None:
        return np.array(opaque_rgb(resize_nearest(load_png_rgba("default_stone.png"), TEX, TEX)))
    g = 100 + rng.integers(-12, 12, size=(TEX, TEX, 1))
    return np.repeat(g, 3, axis=2).astype(np.uint8)


def _disc(cx: float, cy: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:TEX, 0:TEX] + 0.5
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def draw_project_textures(out_dir: Path | str = PROJECT_TEXTURES) -> list[Path]:
    """Draw the mtsandbox_* 16x16 textures (button, switch, lever) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:TEX, 0:TEX]
    imgs: dict[str, np.ndarray] = {}

    # reward button: stone block with a big red push button (top), red cap band on the sides
    top = _stone_base(rng)
    plate = (xx >= 2) & (xx <= 13) & (yy >= 2) & (yy <= 13)
    top[plate] = (60, 60, 64)
    top[_disc(8, 8, 5.2)] = (120, 10, 10)
    top[_disc(8, 8, 4.3)] = (215, 30, 30)
    top[_disc(6.8, 6.8, 1.8)] = (255, 120, 110)
    imgs["mtsandbox_button_top.png"] = top
    side = _stone_base(rng)
    side[0:2, :] = (60, 60, 64)
    side[0:5, 3:13] = (215, 30, 30)
    side[0, 3:13] = (255, 110, 100)
    side[4, 3:13] = (120, 10, 10)
    side[5, 2:14] = (60, 60, 64)
    imgs["mtsandbox_button_side.png"] = side

    # off switch: yellow/black hazard stripes, black toggle plate, red "off" mark on top
    stripes = ((xx + yy) // 3) % 2 == 0
    haz = np.where(stripes[..., None], np.array([235, 200, 20]), np.array([25, 25, 25]))
    top = haz.astype(np.uint8).copy()
    inner = (xx >= 3) & (xx <= 12) & (yy >= 3) & (yy <= 12)
    top[inner] = (235, 200, 20)
    knob = (xx >= 5) & (xx <= 10) & (yy >= 5) & (yy <= 10)
    top[knob] = (20, 20, 20)
    top[(xx >= 6) & (xx <= 9) & (yy >= 6) & (yy <= 7)] = (200, 30, 30)
    imgs["mtsandbox_switch_top.png"] = top
    side = haz.astype(np.uint8).copy()
    side[5:11, 4:12] = (20, 20, 20)
    side[6:10, 5:11] = (235, 200, 20)
    side[7:9, 6:10] = (20, 20, 20)
    imgs["mtsandbox_switch_side.png"] = side

    # lever: blue base plate with a diagonal handle and round knob
    top = _stone_base(rng)
    top[(xx >= 2) & (xx <= 13) & (yy >= 2) & (yy <= 13)] = (25, 50, 140)
    top[(xx >= 3) & (xx <= 12) & (yy >= 3) & (yy <= 12)] = (40, 80, 200)
    bar = (np.abs(xx - yy) <= 1) & (xx >= 4) & (xx <= 11)
    top[bar] = (170, 190, 230)
    top[_disc(11.5, 11.5, 2.2)] = (20, 40, 120)
    top[_disc(4.5, 4.5, 1.6)] = (90, 90, 95)
    imgs["mtsandbox_lever_top.png"] = top
    side = _stone_base(rng)
    side[12:16, 2:14] = (25, 50, 140)
    side[13:15, 3:13] = (40, 80, 200)
    stick = (np.abs((15 - yy) - (xx - 3)) <= 0) & (yy >= 3) & (yy <= 12)
    stick |= np.roll(stick, 1, axis=1)
    side[stick] = (170, 190, 230)
    side[_disc(12.5, 3.5, 2.4)] = (40, 80, 220)
    side[_disc(12.0, 3.0, 0.9)] = (150, 180, 255)
    imgs["mtsandbox_lever_side.png"] = side

    paths = []
    for name, img in imgs.items():
        p = out_dir / name
        iio.imwrite(p, np.ascontiguousarray(img.astype(np.uint8)))
        paths.append(p)
    load_png_rgba.cache_clear()
    load_texture.cache_clear()
    return paths


if __name__ == "__main__":  # python -m mtsandbox.envs.textures: redraw the project textures
    for p in draw_project_textures():
        print(p)
