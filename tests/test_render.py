"""Renderer, palette and texture tests (fast: a few seconds after numba's cache is warm)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtsandbox.envs.nodes import load_palette, parse_palette
from mtsandbox.envs.render import (
    BODY_SEMANTIC_BASE,
    EYE_HEIGHT,
    VoxelRenderer,
    demo_scene,
    third_person_camera,
)
from mtsandbox.envs.textures import build_atlas, build_render_atlas, load_texture

PAL = load_palette()
TREE = PAL.by_name["tree"]
GRASS = PAL.by_name["grass"]


@pytest.fixture(scope="module")
def renderer() -> VoxelRenderer:
    return VoxelRenderer(PAL, 64, 64)


def flat_crop(size=(32, 16, 32)):
    """Flat ground: grass at world y = 0, dirt below; origin puts x = z = 0 at the centre."""
    vox = np.zeros(size, dtype=np.uint8)
    origin = (-(size[0] // 2), -4, -(size[2] // 2))
    vox[:, :4, :] = PAL.by_name["dirt"]
    vox[:, 4, :] = GRASS
    return vox, origin


def put(vox, origin, x, y, z, idx):
    vox[x - origin[0], y - origin[1], z - origin[2]] = idx


EYE = (0.0, 0.5 + EYE_HEIGHT, 0.0)  # standing on the grass at the origin


# ---- palette ----------------------------------------------------------------------------------
def test_palette_loads():
    assert PAL.by_name["air"] == 0
    assert TREE == 3 and GRASS == 1
    assert PAL.solid.shape == (256,) and PAL.solid.dtype == bool
    assert PAL.solid[TREE] and not PAL.solid[0]
    assert PAL.diggable[TREE] and not PAL.diggable[GRASS]
    assert PAL.entries[0].tiles is None and PAL[TREE].tiles[2] == "default_tree.png"
    assert load_palette() is PAL  # cached


@pytest.mark.parametrize(
    "text",
    [
        "palette: [{index: 0, name: air",  # yaml syntax
        "nodes: []",  # no palette list
        "palette:\n  - {index: 0, name: air, node: air, tiles: null, solid: false}",  # missing key
        "palette:\n  - {index: 300, name: x, node: x, tiles: null, solid: false, diggable: false}",
        "palette:\n  - {index: 0, name: air, node: air, tiles: null, solid: false, diggable: false}"
        "\n  - {index: 0, name: b, node: b, tiles: [a, a, a], solid: true, diggable: true}",
    ],
)
def test_bad_palette_is_one_line_value_error(text):
    with pytest.raises(ValueError) as err:
        parse_palette(text, "test.yaml")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("bad palette test.yaml")


# ---- textures ---------------------------------------------------------------------------------
def test_atlas_shape_and_shading():
    atlas = build_atlas(PAL)
    assert atlas.shape == (256, 3, 16, 16, 3) and atlas.dtype == np.uint8
    ratlas = build_render_atlas(PAL)
    assert ratlas.shape == (256, 4, 16, 16, 3)
    top, bottom = atlas[PAL.by_name["stone"], 0].mean(), atlas[PAL.by_name["stone"], 1].mean()
    assert bottom < 0.6 * top  # bottom faces darker, Minetest-like
    assert ratlas[TREE, 2].mean() < ratlas[TREE, 3].mean()  # X sides darker than Z sides


def test_overlay_and_project_textures():
    side = load_texture("default_dirt.png^default_grass_side.png")
    assert side.shape == (16, 16, 4) and (side[..., 3] == 255).all()
    assert side[0, :, 1].mean() > side[15, :, 1].mean()  # green grass fringe on top
    for name in ("button", "switch", "lever"):
        top = load_texture(f"mtsandbox_{name}_top.png")
        assert top.shape == (16, 16, 4)
    leaves = build_atlas(PAL)[PAL.by_name["leaves"], 0].astype(int)
    assert leaves[..., 1].mean() > leaves[..., 0].mean()  # opaque green


# ---- renderer -----------------------------------------------------------------------------------
def test_trunk_straight_ahead(renderer):
    vox, origin = flat_crop()
    for y in range(1, 6):
        put(vox, origin, 0, y, 4, TREE)  # 4 nodes north (+Z) of the camera
    out = renderer.render(vox, origin, EYE, 0.0, 0.0)
    assert out.rgb.shape == (64, 64, 3) and out.rgb.dtype == np.uint8
    assert out.semantic.shape == (64, 64) and out.depth.dtype == np.float32
    c = out.semantic[28:36, 28:36]
    assert (c == TREE).all()
    rgb = out.rgb[28:36, 28:36].reshape(-1, 3).astype(float).mean(0)
    assert rgb[0] > rgb[2] and rgb[0] < 120  # brownish bark
    d = out.depth[32, 32]
    assert 3.4 < d < 3.6  # face of the node at z = 4 is at z = 3.5


def test_sky_up_grass_down(renderer):
    vox, origin = flat_crop()
    up = renderer.render(vox, origin, EYE, 0.3, 1.2)
    assert (up.semantic == 0).all()
    b = up.rgb.reshape(-1, 3).astype(int)
    assert (b[:, 2] > b[:, 0]).all()  # blue sky
    down = renderer.render(vox, origin, EYE, 0.3, -1.2)
    assert (down.semantic == GRASS).all()
    g = down.rgb.reshape(-1, 3).astype(float).mean(0)
    assert g[1] > g[0] and g[1] > g[2]  # green
    # the horizon: ground below, sky above, even far outside the crop
    level = renderer.render(vox, origin, EYE, 0.0, 0.0)
    assert (level.semantic[-1] == GRASS).all() and (level.semantic[0] == 0).all()


def test_ground_outside_crop(renderer):
    vox, origin = flat_crop((8, 8, 8))
    out = renderer.render(vox, origin, (0.0, 1.97, 0.0), 0.0, -0.2)
    assert (out.semantic[40:] == GRASS).all()
    assert out.depth[out.semantic == GRASS].max() > 10  # hits well beyond the 8x8 crop


def test_body_in_front(renderer):
    vox, origin = flat_crop()
    bodies = np.array([[0.0, 0.5, 3.0, math.pi], [0.0, 0.5, 0.0, 0.0]], dtype=np.float32)
    out = renderer.render(vox, origin, EYE, 0.0, -0.1, bodies=bodies, exclude_body=1)
    assert (out.semantic[32, 30:34] == BODY_SEMANTIC_BASE).all()
    assert not (out.semantic == BODY_SEMANTIC_BASE + 1).any()  # own body skipped
    # without excluding it the camera sits inside body 1's box: the box is not drawn from inside
    out2 = renderer.render(vox, origin, EYE, 0.0, -0.1, bodies=bodies[:1])
    assert (out2.semantic == BODY_SEMANTIC_BASE).sum() == (out.semantic == 64).sum()


def test_left_right(renderer):
    vox, origin = flat_crop()
    yaw = 0.7
    fwd = np.array([-math.sin(yaw), 0.0, math.cos(yaw)])
    right = np.array([math.cos(yaw), 0.0, math.sin(yaw)])
    p = 6 * fwd + 3 * right
    x, z = round(p[0]), round(p[2])
    for y in range(1, 6):
        put(vox, origin, x, y, z, TREE)
    out = renderer.render(vox, origin, EYE, yaw, 0.0)
    cols = np.nonzero((out.semantic == TREE).any(axis=0))[0]
    assert len(cols) > 0 and cols.min() > 32


def test_demo_scene_and_determinism(renderer):
    vox, origin = demo_scene(seed=3)
    a = renderer.render(vox, origin, EYE, 0.4, -0.15)
    b = renderer.render(vox, origin, EYE, 0.4, -0.15)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.semantic, b.semantic)
    assert np.array_equal(a.depth, b.depth)
    assert {0, GRASS, TREE, PAL.by_name["leaves"]} <= set(np.unique(a.semantic).tolist())


def test_third_person_camera_shows_body():
    r = VoxelRenderer(PAL, 96, 96)
    vox, origin = flat_crop()
    cam, yaw, pitch = third_person_camera(0.0, 0.5, 0.0, 0.3, 0.0)
    bodies = np.array([[0.0, 0.5, 0.0, 0.3]], dtype=np.float32)
    out = r.render(vox, origin, cam, yaw, pitch, bodies=bodies)
    assert (out.semantic == BODY_SEMANTIC_BASE).sum() > 50


def test_torch_agrees_with_numba(renderer):
    torch = pytest.importorskip("torch")
    vox, origin = demo_scene(seed=1)
    cams = [
        ((0.0, 1.97, 0.0), 0.3, -0.15),
        ((0.0, 1.97, 0.0), 2.0, 0.2),
        ((5.2, 3.5, -7.1), -1.0, -0.5),
        ((-30.0, 10.0, -30.0), -2.4, -0.3),  # outside the crop
        ((0.0, 30.0, 0.0), 0.0, -1.5),  # above the crop
    ]
    bodies = np.array([[1.0, 0.5, 4.0, 2.5], [-2.0, 0.5, 3.0, 0.7]], dtype=np.float32)
    ref = [renderer.render(vox, origin, c, y, p, bodies=bodies) for c, y, p in cams]
    out = renderer.render_torch(
        torch.as_tensor(vox),
        origin,
        np.array([c for c, _, _ in cams]),
        np.array([y for _, y, _ in cams]),
        np.array([p for _, _, p in cams]),
        bodies=bodies,
    )
    assert out.rgb.shape == (len(cams), 64, 64, 3)
    for k, a in enumerate(ref):
        sem = out.semantic[k].numpy()
        assert (sem == a.semantic).mean() >= 0.99
        close = np.abs(out.rgb[k].numpy().astype(int) - a.rgb.astype(int)).max(-1) <= 3
        assert close.mean() >= 0.98
