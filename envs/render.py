"""Fast first-person renderer: ray-casts a voxel crop into what a Minetest client would show.

Conventions (docs/ARCHITECTURE.md): a node at integer p fills [p-0.5, p+0.5]; ``vox[x, y, z]``
holds palette indices with ``origin`` the world position of ``vox[0, 0, 0]``; outside the crop the
world is ``grass`` at ``y <= ground_y`` and air above. ``yaw`` 0 looks toward +Z and grows
counter-clockwise seen from above, ``pitch > 0`` looks up; look direction
``(-sin(yaw) cos(pitch), sin(pitch), cos(yaw) cos(pitch))`` and image right ``(cos(yaw), 0,
sin(yaw))``. ``fov_deg`` is the vertical field of view (Minetest's ``fov``).

Outputs (`RenderResult`):
- ``rgb`` (H, W, 3) uint8: textured nodes with Minetest's face shading (+Y 1.0, -Y 0.447,
  +-X 0.671, +-Z 0.837), distance fog toward the horizon colour (Minetest's ``fog_start`` 0.4 of
  the view range, here ``max_distance``), a day sky gradient (Minetest's default day sky
  ``#61b5f5`` over horizon ``#90d3f6``), and bodies textured from ``character.png``.
- ``semantic`` (H, W) uint8: 0 sky, else the palette index hit, or ``64 + i`` for body ``i``.
- ``depth`` (H, W) float32: distance along the pixel's ray to the hit (nodes = metres);
  ``max_distance`` where the ray sees sky.

The CPU path (`VoxelRenderer.render`) is a single-threaded numba kernel: a 2-D DDA over the
crop's columns with a per-column height bound (exactly equivalent to a 3-D Amanatides-Woo DDA,
but vertical steps cost nothing and columns a ray passes above are skipped), plus analytic
ground-plane hits outside the crop. `VoxelRenderer.render_torch` is a batched torch version (a
3-D DDA with a fixed number of masked iterations) for GPUs; both give the same pixels up to
floating-point ties on cell edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import numpy as np
from numba import njit

from .shared import BODY_DRAWN_HEIGHT, BODY_HALF_WIDTH, EYE_HEIGHT
from .nodes import Palette, load_palette
from .textures import BODY_H, BODY_W, TEX, build_body_texture, build_render_atlas

BODY_HALF, BODY_HEIGHT = BODY_HALF_WIDTH, BODY_DRAWN_HEIGHT  # short names for the kernels
BODY_SEMANTIC_BASE = 64
SKY_COLOR = (97, 181, 245)  # Minetest day_sky #61b5f5
HORIZON_COLOR = (144, 211, 246)  # Minetest day_horizon #90d3f6
FOG_START = 0.4  # Minetest's fog_start setting (fraction of the view range)

_BIG = 1e30
_EPS = 1e-9

# face codes: normal of the face that was hit
F_TOP, F_BOTTOM, F_PX, F_NX, F_PZ, F_NZ = 0, 1, 2, 3, 4, 5


@dataclass
class RenderResult:
    rgb: np.ndarray  # (H, W, 3) uint8
    semantic: np.ndarray  # (H, W) uint8
    depth: np.ndarray  # (H, W) float32


def look_dir(yaw: float, pitch: float) -> np.ndarray:
    cp = math.cos(pitch)
    return np.array([-math.sin(yaw) * cp, math.sin(pitch), math.cos(yaw) * cp])


def third_person_camera(
    x: float, y: float, z: float, yaw: float, pitch: float, distance: float = 4.0
) -> tuple[np.ndarray, float, float]:
    """Camera behind and above a body with feet at (x, y, z) looking (yaw, pitch).

    Returns ``(cam_pos, cam_yaw, cam_pitch)``: the camera looks at the body's eye point from
    ``distance`` nodes back, tilted 0.35 rad further down than the body so it sees the body and
    the ground in front of it (like Minetest's third-person view, without wall collision)."""
    cam_pitch = float(np.clip(pitch - 0.35, -1.45, 1.45))
    eye = np.array([x, y + EYE_HEIGHT, z], dtype=np.float64)
    cam = eye - distance * look_dir(yaw, cam_pitch)
    return cam, float(yaw), cam_pitch


# ----------------------------------------------------------------------------------------------
# numba CPU kernel
# ----------------------------------------------------------------------------------------------
@njit(cache=True, fastmath=True)
def _column_tops(vox, g_top, hmax, dist):
    """hmax[x, z] = highest local y of a non-air cell in the (virtual, infinite) column;
    dist[x, z] = Chebyshev distance (in columns) to the nearest column taller than the outside
    ground (hmax > g_top - 1), 0 for such columns (the outside counts as flat). Returns the
    highest solid y anywhere (crop or outside ground)."""
    SX, SY, SZ = vox.shape
    base = min(g_top, 0) - 1  # below the crop: grass for y < g_top
    if g_top > SY:
        base = g_top - 1
    for x in range(SX):
        for z in range(SZ):
            hmax[x, z] = base
        for y in range(SY):
            for z in range(SZ):
                if vox[x, y, z] != 0 and y > hmax[x, z]:
                    hmax[x, z] = y
    m = g_top - 1
    far = SX + SZ + 2
    for x in range(SX):
        for z in range(SZ):
            h = hmax[x, z]
            if h > m:
                m = h
            dist[x, z] = 0 if h > g_top - 1 else far
    # two-pass chamfer transform with unit 8-neighbour weights = exact Chebyshev distance
    for x in range(SX):
        for z in range(SZ):
            d = dist[x, z]
            if d == 0:
                continue
            if x > 0:
                d = min(d, dist[x - 1, z] + 1)
                if z > 0:
                    d = min(d, dist[x - 1, z - 1] + 1)
                if z < SZ - 1:
                    d = min(d, dist[x - 1, z + 1] + 1)
            if z > 0:
                d = min(d, dist[x, z - 1] + 1)
            dist[x, z] = d
    for x in range(SX - 1, -1, -1):
        for z in range(SZ - 1, -1, -1):
            d = dist[x, z]
            if d == 0:
                continue
            if x < SX - 1:
                d = min(d, dist[x + 1, z] + 1)
                if z > 0:
                    d = min(d, dist[x + 1, z - 1] + 1)
                if z < SZ - 1:
                    d = min(d, dist[x + 1, z + 1] + 1)
            if z < SZ - 1:
                d = min(d, dist[x, z + 1] + 1)
            dist[x, z] = d
    return m


@njit(cache=True, fastmath=True)
def _ground(oy, dy, ta, tb, g_top, entry_face):
    """First hit of the flat outside ground (solid for local y < g_top) on [ta, tb]:
    (t, face), face -1 if none."""
    ya = oy + ta * dy
    if ya < g_top:
        return ta, entry_face
    if dy < 0.0:
        th = (g_top - oy) / dy
        if th <= tb:
            return th, F_TOP
    return _BIG, -1


@njit(cache=True, fastmath=True)
def _texel(face, px, py, pz):
    """(atlas face slot, row, col) of a node face hit at crop-local point p (side textures
    upright, not mirrored seen from outside; top textures with north up)."""
    fx = px - math.floor(px)
    fy = py - math.floor(py)
    fz = pz - math.floor(pz)
    if face == F_TOP:
        slot = 0
        u = fx
        v = 1.0 - fz
    elif face == F_BOTTOM:
        slot = 1
        u = fx
        v = fz
    elif face == F_PX:
        slot = 2
        u = fz
        v = 1.0 - fy
    elif face == F_NX:
        slot = 2
        u = 1.0 - fz
        v = 1.0 - fy
    elif face == F_PZ:
        slot = 3
        u = 1.0 - fx
        v = 1.0 - fy
    else:
        slot = 3
        u = fx
        v = 1.0 - fy
    col = min(max(int(u * TEX), 0), TEX - 1)
    row = min(max(int(v * TEX), 0), TEX - 1)
    return slot, row, col


@njit(cache=True, fastmath=True)
def _body_one(bx, by, bz, yaw, cx, cy, cz, dx, dy, dz):
    """Ray vs one body box [-0.3, 0.3] x [0, BODY_HEIGHT] x [-0.3, 0.3] turned by the body's yaw.
    Returns (t, face, u, v); t = BIG if missed. Faces: 0 front, 1 back, 2 right, 3 left,
    4 top, 5 bottom; (u, v) run left-to-right / top-to-bottom as seen by a viewer."""
    s = math.sin(yaw)
    c = math.cos(yaw)
    # body frame: x' along its right (c, 0, s), z' along its look (-s, 0, c)
    rx = cx - bx
    ry = cy - by
    rz = cz - bz
    lox = rx * c + rz * s
    loz = -rx * s + rz * c
    ldx = dx * c + dz * s
    ldz = -dx * s + dz * c
    if abs(ldx) < _EPS:
        ldx = _EPS if ldx >= 0.0 else -_EPS
    if abs(dy) < _EPS:
        dy = _EPS if dy >= 0.0 else -_EPS
    if abs(ldz) < _EPS:
        ldz = _EPS if ldz >= 0.0 else -_EPS
    a = (-BODY_HALF - lox) / ldx
    b = (BODY_HALF - lox) / ldx
    t0 = min(a, b)
    t1 = max(a, b)
    fa = 0
    a = (0.0 - ry) / dy
    b = (BODY_HEIGHT - ry) / dy
    if min(a, b) > t0:
        t0 = min(a, b)
        fa = 1
    t1 = min(t1, max(a, b))
    a = (-BODY_HALF - loz) / ldz
    b = (BODY_HALF - loz) / ldz
    if min(a, b) > t0:
        t0 = min(a, b)
        fa = 2
    t1 = min(t1, max(a, b))
    if t0 > t1 or t0 <= 0.0:
        return _BIG, 0, 0.0, 0.0
    hx = lox + t0 * ldx
    hy = ry + t0 * dy
    hz = loz + t0 * ldz
    if fa == 0:
        if ldx < 0.0:  # +x' face: the body's right side; viewer's right is +z'
            f = 2
            u = (hz + BODY_HALF) / (2 * BODY_HALF)
        else:
            f = 3
            u = (BODY_HALF - hz) / (2 * BODY_HALF)
        v = (BODY_HEIGHT - hy) / BODY_HEIGHT
    elif fa == 2:
        if ldz < 0.0:  # front face; viewer's right is -x'
            f = 0
            u = (BODY_HALF - hx) / (2 * BODY_HALF)
        else:
            f = 1
            u = (hx + BODY_HALF) / (2 * BODY_HALF)
        v = (BODY_HEIGHT - hy) / BODY_HEIGHT
    else:
        f = 4 if dy < 0.0 else 5
        u = (hx + BODY_HALF) / (2 * BODY_HALF)
        v = (BODY_HALF - hz) / (2 * BODY_HALF)
    return t0, f, u, v


@njit(cache=True, fastmath=True)
def _body_shade(face, yaw):
    if face == 4:
        return 1.0
    if face == 5:
        return 0.447213
    if face <= 1:  # front/back normal along (-sin yaw, 0, cos yaw)
        nx = math.sin(yaw)
        nz = math.cos(yaw)
    else:  # right/left normal along (cos yaw, 0, sin yaw)
        nx = math.cos(yaw)
        nz = math.sin(yaw)
    return 0.670820 * nx * nx + 0.836660 * nz * nz


@njit(cache=True, fastmath=True, inline="always")
def _cell(vox, cx, y, cz, SY, g_top, grass):
    """Palette index of column (cx, cz) at height y: the crop inside it, grass below the
    ground's top outside it (below the crop), air above."""
    if 0 <= y < SY:
        return vox[cx, y, cz]
    if y < g_top:
        return grass
    return 0


@njit(cache=True, fastmath=True)
def _render_kernel(
    vox, hmax, dist, ghmax, g_top, grass, ox, oy, oz, cam_w, yaw, pitch, tan_y, max_d,
    fog_start, atlas, sky_top, sky_hor, bodies, exclude, body_tex, out_rgb, out_sem, out_depth,
):  # fmt: skip
    # The ray traversal is written inline on purpose: numba reference-counts array arguments
    # of helper functions on every call, which costs more than the traversal itself.
    H, W = out_sem.shape
    SX, SY, SZ = vox.shape
    sy_ = math.sin(yaw)
    cy_ = math.cos(yaw)
    sp = math.sin(pitch)
    cp = math.cos(pitch)
    fx = -sy_ * cp
    fy = sp
    fz = cy_ * cp
    rx = cy_
    rz = sy_
    ux = sy_ * sp
    uy = cp
    uz = -cy_ * sp
    tan_x = tan_y * W / H
    fog_len = max(max_d - fog_start, 1e-6)
    nb = bodies.shape[0]
    for i in range(H):
        sy = (1.0 - 2.0 * (i + 0.5) / H) * tan_y
        for j in range(W):
            sx = (2.0 * (j + 0.5) / W - 1.0) * tan_x
            dx = fx + sx * rx + sy * ux
            dy = fy + sy * uy
            dz = fz + sx * rz + sy * uz
            inv = 1.0 / math.sqrt(dx * dx + dy * dy + dz * dz)
            dx *= inv
            dy *= inv
            dz *= inv
            # a direction component of (near) zero becomes +-EPS: no special cases below
            if abs(dx) < _EPS:
                dx = _EPS if dx >= 0.0 else -_EPS
            if abs(dz) < _EPS:
                dz = _EPS if dz >= 0.0 else -_EPS

            # ---- trace: first solid node along the ray -> (t, face, idx); idx 0 = none
            t = _BIG
            face = -1
            idx = 0
            ix = 1.0 / dx
            iz = 1.0 / dz
            a = -ox * ix
            b = (SX - ox) * ix
            tx0 = min(a, b)
            tx1 = max(a, b)
            a = -oz * iz
            b = (SZ - oz) * iz
            tz0 = min(a, b)
            tz1 = max(a, b)
            t_in = max(0.0, max(tx0, tz0))
            t_out = min(max_d, min(tx1, tz1))
            if t_in >= t_out:  # the ray never crosses the crop's footprint
                t, face = _ground(oy, dy, 0.0, max_d, g_top, F_TOP)
                if face >= 0:
                    idx = grass
            else:
                if t_in > 0.0:  # outside the footprint before entering it
                    t, face = _ground(oy, dy, 0.0, t_in, g_top, F_TOP)
                    if face >= 0:
                        idx = grass
                if idx == 0:
                    if tx0 >= tz0:
                        face = F_NX if dx > 0.0 else F_PX
                    else:
                        face = F_NZ if dz > 0.0 else F_PZ
                    cx = min(max(int(math.floor(ox + t_in * dx)), 0), SX - 1)  # noqa: RUF046
                    cz = min(max(int(math.floor(oz + t_in * dz)), 0), SZ - 1)  # noqa: RUF046
                    if dx > 0.0:
                        stepx = 1
                        bx = 1.0
                    else:
                        stepx = -1
                        bx = 0.0
                    if dz > 0.0:
                        stepz = 1
                        bz = 1.0
                    else:
                        stepz = -1
                        bz = 0.0
                    tdx = abs(ix)
                    tdz = abs(iz)
                    tmx = (cx + bx - ox) * ix
                    tmz = (cz + bz - oz) * iz
                    inv_h = min(tdx, tdz)
                    t_low = _BIG  # when a falling ray reaches the outside ground's top
                    if dy < 0.0:
                        t_low = (g_top - oy) / dy
                    ta = t_in
                    leave = True  # ends by leaving the footprint (not by a hit or the sky)
                    while True:
                        # empty-space skip: while above the ground top, no column within
                        # Chebyshev radius dist - 1 (all flat) can be hit
                        k = dist[cx, cz]
                        if k >= 2:
                            ts = min(ta + (k - 1) * inv_h, t_low)
                            if ts > ta + 0.5 * inv_h and oy + ta * dy >= g_top:
                                if ts >= t_out:
                                    break
                                ta = ts
                                cx = min(max(int(math.floor(ox + ta * dx)), 0), SX - 1)  # noqa: RUF046
                                cz = min(max(int(math.floor(oz + ta * dz)), 0), SZ - 1)  # noqa: RUF046
                                tmx = (cx + bx - ox) * ix
                                tmz = (cz + bz - oz) * iz
                                face = F_TOP  # mid-column: only the ground top can be hit
                        tb = min(t_out, min(tmx, tmz))
                        ya = oy + ta * dy
                        yb = oy + tb * dy
                        h = hmax[cx, cz]
                        if dy >= 0.0:
                            if ya >= ghmax + 1:
                                leave = False  # above everything and rising: sky
                                break
                            if ya < h + 1:
                                # entry cell, then upward up to the column top
                                cya = int(math.floor(ya))  # noqa: RUF046
                                ye = min(int(math.floor(yb)), h)  # noqa: RUF046
                                for y in range(cya, ye + 1):
                                    c = _cell(vox, cx, y, cz, SY, g_top, grass)
                                    if c != 0:
                                        idx = c
                                        if y == cya:
                                            t = ta
                                        else:
                                            t = (y - oy) / dy
                                            face = F_BOTTOM
                                        break
                                if idx != 0:
                                    break
                        elif yb < h + 1:
                            # entry cell (if not above the top), then down from the top
                            cya = int(math.floor(ya))  # noqa: RUF046
                            ye = int(math.floor(yb))  # noqa: RUF046
                            y = cya if cya <= h else h
                            while y >= ye:
                                c = _cell(vox, cx, y, cz, SY, g_top, grass)
                                if c != 0:
                                    idx = c
                                    if y == cya:
                                        t = ta
                                    else:
                                        t = (y + 1 - oy) / dy
                                        face = F_TOP
                                    break
                                y -= 1
                            if idx != 0:
                                break
                        if tb >= t_out:
                            break
                        if tmx < tmz:
                            cx += stepx
                            ta = tmx
                            tmx += tdx
                            face = F_NX if stepx > 0 else F_PX
                            if cx < 0 or cx >= SX:
                                break
                        else:
                            cz += stepz
                            ta = tmz
                            tmz += tdz
                            face = F_NZ if stepz > 0 else F_PZ
                            if cz < 0 or cz >= SZ:
                                break
                    if idx == 0:
                        face = -1
                        if leave and t_out < max_d:  # outside again: flat ground
                            if tx1 <= tz1:
                                f0 = F_NX if dx > 0.0 else F_PX
                            else:
                                f0 = F_NZ if dz > 0.0 else F_PZ
                            t, face = _ground(oy, dy, t_out, max_d, g_top, f0)
                            if face >= 0:
                                idx = grass
            if idx != 0 and t > max_d:
                idx = 0
            t_best = t if idx != 0 else max_d

            # ---- bodies in front of the node hit
            b = -1
            bf = 0
            bu = 0.0
            bv = 0.0
            for n in range(nb):
                if n == exclude:
                    continue
                tn, fn, un, vn = _body_one(
                    bodies[n, 0], bodies[n, 1], bodies[n, 2], bodies[n, 3],
                    cam_w[0], cam_w[1], cam_w[2], dx, dy, dz,
                )  # fmt: skip
                if tn < t_best:
                    t_best = tn
                    b = n
                    bf = fn
                    bu = un
                    bv = vn

            # ---- shading
            if b >= 0:
                col = min(max(int(bu * BODY_W), 0), BODY_W - 1)
                row = min(max(int(bv * BODY_H), 0), BODY_H - 1)
                shade = _body_shade(bf, bodies[b, 3])
                r = body_tex[bf, row, col, 0] * shade
                g = body_tex[bf, row, col, 1] * shade
                bl = body_tex[bf, row, col, 2] * shade
                out_sem[i, j] = BODY_SEMANTIC_BASE + b
                t = t_best
            elif idx != 0:
                slot, row, col = _texel(face, ox + t * dx, oy + t * dy, oz + t * dz)
                r = np.float32(atlas[idx, slot, row, col, 0])
                g = np.float32(atlas[idx, slot, row, col, 1])
                bl = np.float32(atlas[idx, slot, row, col, 2])
                out_sem[i, j] = idx
            else:
                # day sky: horizon colour at and below the horizon, sky colour above
                k = min(max(dy * 2.5, 0.0), 1.0)
                out_rgb[i, j, 0] = np.uint8(sky_hor[0] + (sky_top[0] - sky_hor[0]) * k + 0.5)
                out_rgb[i, j, 1] = np.uint8(sky_hor[1] + (sky_top[1] - sky_hor[1]) * k + 0.5)
                out_rgb[i, j, 2] = np.uint8(sky_hor[2] + (sky_top[2] - sky_hor[2]) * k + 0.5)
                out_sem[i, j] = 0
                out_depth[i, j] = max_d
                continue
            fog = min(max((t - fog_start) / fog_len, 0.0), 1.0)
            r += (sky_hor[0] - r) * fog
            g += (sky_hor[1] - g) * fog
            bl += (sky_hor[2] - bl) * fog
            out_rgb[i, j, 0] = np.uint8(r + 0.5)
            out_rgb[i, j, 1] = np.uint8(g + 0.5)
            out_rgb[i, j, 2] = np.uint8(bl + 0.5)
            out_depth[i, j] = t


# ----------------------------------------------------------------------------------------------
class VoxelRenderer:
    """First-person renderer of voxel crops. See the module docstring for conventions.

    >>> r = VoxelRenderer(load_palette(), 64, 64)
    >>> out = r.render(vox, origin, cam_pos, yaw, pitch)  # doctest: +SKIP
    """

    def __init__(
        self,
        palette: Palette | None = None,
        width: int = 64,
        height: int = 64,
        fov_deg: float = 72.0,
        max_distance: float = 48.0,
        ground_y: int = 0,
        fog_start: float = FOG_START,
    ):
        self.palette = palette or load_palette()
        self.width = int(width)
        self.height = int(height)
        self.fov_deg = float(fov_deg)
        self.max_distance = float(max_distance)
        self.ground_y = int(ground_y)
        self.fog_start = float(fog_start) * self.max_distance
        self.tan_y = math.tan(math.radians(self.fov_deg) / 2.0)
        self.grass = int(self.palette.by_name.get("grass", 1))
        self.atlas = np.ascontiguousarray(build_render_atlas(self.palette))
        self.body_tex = np.ascontiguousarray(build_body_texture())
        self.sky_top = np.array(SKY_COLOR, dtype=np.float32)
        self.sky_hor = np.array(HORIZON_COLOR, dtype=np.float32)
        self._no_bodies = np.zeros((0, 4), dtype=np.float32)
        self._hmax: np.ndarray | None = None
        self._torch_cache: dict = {}

    def render(
        self,
        vox: np.ndarray,
        origin,
        cam_pos,
        yaw: float,
        pitch: float,
        bodies: np.ndarray | None = None,
        exclude_body: int = -1,
    ) -> RenderResult:
        """Render one frame. ``cam_pos`` is the eye position in world coordinates; ``bodies`` is
        (N, 4) ``[x, y (feet), z, yaw]``; ``exclude_body`` (e.g. the camera's own body) is
        skipped."""
        vox = np.ascontiguousarray(vox, dtype=np.uint8)
        if vox.ndim != 3:
            raise ValueError(f"vox must be (SX, SY, SZ), got shape {vox.shape}")
        SX, SZ = vox.shape[0], vox.shape[2]
        if self._hmax is None or self._hmax.shape != (SX, SZ):
            self._hmax = np.empty((SX, SZ), dtype=np.int32)
            self._dist = np.empty((SX, SZ), dtype=np.int32)
        ox_w, oy_w, oz_w = (int(v) for v in origin)
        g_top = self.ground_y - oy_w + 1
        ghmax = _column_tops(vox, g_top, self._hmax, self._dist)
        cam = np.asarray(cam_pos, dtype=np.float64).reshape(3)
        lx, ly, lz = cam[0] - ox_w + 0.5, cam[1] - oy_w + 0.5, cam[2] - oz_w + 0.5
        if bodies is None or len(bodies) == 0:
            b = self._no_bodies
        else:
            b = np.ascontiguousarray(bodies, dtype=np.float32).reshape(-1, 4)
        H, W = self.height, self.width
        rgb = np.empty((H, W, 3), dtype=np.uint8)
        sem = np.empty((H, W), dtype=np.uint8)
        depth = np.empty((H, W), dtype=np.float32)
        _render_kernel(
            vox, self._hmax, self._dist, ghmax, g_top, self.grass, lx, ly, lz, cam, float(yaw),
            float(pitch), self.tan_y, self.max_distance, self.fog_start, self.atlas,
            self.sky_top, self.sky_hor, b, int(exclude_body), self.body_tex, rgb, sem, depth,
        )  # fmt: skip
        return RenderResult(rgb, sem, depth)

    # ------------------------------------------------------------------------------------------
    def render_torch(
        self, vox, origin, cam_pos, yaw, pitch, bodies=None, exclude_body=-1, dtype=None
    ) -> RenderResult:
        """Batched torch renderer (any device): see `render_torch` in this module."""
        return render_torch(self, vox, origin, cam_pos, yaw, pitch, bodies, exclude_body, dtype)


def demo_scene(
    n_trees: int = 10,
    size: tuple[int, int, int] = (48, 24, 48),
    ground_y: int = 0,
    seed: int = 0,
    palette: Palette | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A typical test scene: flat grass over dirt, ``n_trees`` trees (5-high trunk and a leaf
    blob) in an (SX, SY, SZ) crop centred on x = z = 0. Returns ``(vox, origin)``."""
    pal = palette or load_palette()
    SX, _, SZ = size
    origin = (-(SX // 2), ground_y - 4, -(SZ // 2))
    vox = np.zeros(size, dtype=np.uint8)
    g = ground_y - origin[1]
    vox[:, :g, :] = pal.by_name["dirt"]
    vox[:, g, :] = pal.by_name["grass"]
    rng = np.random.default_rng(seed)
    trunk, leaves = pal.by_name["tree"], pal.by_name["leaves"]
    placed = 0
    while placed < n_trees:
        x = int(rng.integers(3, SX - 3))
        z = int(rng.integers(3, SZ - 3))
        if abs(x - SX // 2) < 3 and abs(z - SZ // 2) < 3:
            continue  # keep the centre (the camera spot) clear
        for dy in range(3, 7):
            r = 2 if dy < 6 else 1
            for ddx in range(-r, r + 1):
                for ddz in range(-r, r + 1):
                    if abs(ddx) == r and abs(ddz) == r and rng.random() < 0.6:
                        continue
                    if vox[x + ddx, g + dy, z + ddz] == 0:
                        vox[x + ddx, g + dy, z + ddz] = leaves
        vox[x, g + 1 : g + 6, z] = trunk
        placed += 1
    return vox, origin


# ----------------------------------------------------------------------------------------------
# torch batched path
# ----------------------------------------------------------------------------------------------
def _as_tensor(x, device, dtype):
    import torch

    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def render_torch(
    renderer: VoxelRenderer,
    vox,
    origin,
    cam_pos,
    yaw,
    pitch,
    bodies=None,
    exclude_body=-1,
    dtype=None,
) -> RenderResult:
    """Batched render with torch ops only (runs on the device of ``vox``).

    ``vox`` (B, SX, SY, SZ) or (SX, SY, SZ) uint8 (one crop shared by all cameras); ``origin``
    (B, 3) or (3,); ``cam_pos`` (B, 3); ``yaw``/``pitch`` (B,); ``bodies`` (B, N, 4) or (N, 4);
    ``exclude_body`` int or (B,). Returns a `RenderResult` of tensors: rgb (B, H, W, 3) uint8,
    semantic (B, H, W) uint8, depth (B, H, W) float32. A 3-D Amanatides-Woo DDA with
    SX + SY + SZ masked iterations (stops early once every ray is done)."""
    import torch

    r = renderer
    if not isinstance(vox, torch.Tensor):
        vox = torch.as_tensor(np.ascontiguousarray(vox, dtype=np.uint8))
    dev = vox.device
    ft = dtype or torch.float32
    cam = _as_tensor(cam_pos, dev, ft).reshape(-1, 3)
    B = cam.shape[0]
    if vox.dim() == 3:
        vox = vox.unsqueeze(0).expand(B, *vox.shape)
    vox = vox.to(torch.uint8).contiguous()
    _, SX, SY, SZ = vox.shape
    org = _as_tensor(origin, dev, torch.int64).reshape(-1, 3).expand(B, 3)
    yaw_t = _as_tensor(yaw, dev, ft).reshape(-1).expand(B)
    pitch_t = _as_tensor(pitch, dev, ft).reshape(-1).expand(B)
    key = (str(dev), ft)
    if key not in r._torch_cache:
        r._torch_cache[key] = (
            torch.as_tensor(r.atlas, device=dev).reshape(-1, 3).to(ft),
            torch.as_tensor(r.body_tex, device=dev).reshape(-1, 3).to(ft),
        )
    atlas, body_tex = r._torch_cache[key]
    H, W = r.height, r.width
    max_d = r.max_distance
    big = 1e30
    eps = 1e-9
    grass = r.grass

    # ---- rays (B, H*W)
    sy_, cy_ = torch.sin(yaw_t)[:, None], torch.cos(yaw_t)[:, None]
    sp, cp = torch.sin(pitch_t)[:, None], torch.cos(pitch_t)[:, None]
    tan_x = r.tan_y * W / H
    ii = torch.arange(H, device=dev, dtype=ft)
    jj = torch.arange(W, device=dev, dtype=ft)
    sy = ((1.0 - 2.0 * (ii + 0.5) / H) * r.tan_y)[:, None].expand(H, W).reshape(1, -1)
    sx = ((2.0 * (jj + 0.5) / W - 1.0) * tan_x)[None, :].expand(H, W).reshape(1, -1)
    dx = -sy_ * cp + sx * cy_ + sy * (sy_ * sp)
    dy = sp + sy * cp
    dz = cy_ * cp + sx * sy_ + sy * (-cy_ * sp)
    n = torch.rsqrt(dx * dx + dy * dy + dz * dz)
    dx, dy, dz = dx * n, dy * n, dz * n
    R = dx.shape[1]
    orgf = org.to(ft)
    o = [(cam[:, k] - orgf[:, k] + 0.5)[:, None].expand(B, R) for k in range(3)]
    d = [dx, dy, dz]
    g_top = (r.ground_y - org[:, 1] + 1).to(ft)[:, None]
    size = (SX, SY, SZ)

    def ground(ta, tb, entry_face):
        ya = o[1] + ta * dy
        inside = ya < g_top
        th = (g_top - o[1]) / torch.where(dy < 0, dy, torch.full_like(dy, -1.0))
        plane = (dy < 0) & (th <= tb) & ~inside
        t = torch.where(inside, ta, torch.where(plane, th, torch.full_like(ta, big)))
        f = torch.where(inside, entry_face, torch.full_like(entry_face, F_TOP))
        return inside | plane, t, f

    # ---- crop box slabs
    dsafe = [torch.where(di.abs() > eps, di, torch.full_like(di, eps)) for di in d]
    t0s, t1s = [], []
    for k in range(3):
        a = (0.0 - o[k]) / dsafe[k]
        b_ = (size[k] - o[k]) / dsafe[k]
        t0s.append(torch.minimum(a, b_))
        t1s.append(torch.maximum(a, b_))
    t0 = torch.stack(t0s)  # (3, B, R)
    t1 = torch.stack(t1s)
    t_in = t0.max(0).values.clamp_min(0.0)
    t_exit = t1.min(0).values
    t_out = t_exit.clamp_max(max_d)
    crosses = t_in < t_out
    entry_axis = t0.argmax(0)
    exit_axis = t1.argmin(0)
    # face hit when entering a cell across axis k moving with sign of d: the cell's face
    # normal is -sign(d) along k
    face_codes = torch.tensor([[F_NX, F_PX], [F_BOTTOM, F_TOP], [F_NZ, F_PZ]], device=dev)

    def axis_face(axis):
        neg = (torch.gather(torch.stack(d), 0, axis[None])[0] < 0).long()
        return face_codes[axis, neg]

    t_hit = torch.full((B, R), big, dtype=ft, device=dev)
    face = torch.full((B, R), -1, dtype=torch.long, device=dev)
    idx = torch.zeros((B, R), dtype=torch.long, device=dev)
    top_face = torch.full((B, R), F_TOP, dtype=torch.long, device=dev)
    # segment before the crop (or the whole ray when it misses the crop)
    seg_end = torch.where(crosses, t_in.clamp_max(max_d), torch.full_like(t_in, max_d))
    gh, gt, gf = ground(torch.zeros_like(t_in), seg_end, top_face)
    gh = gh & ((t_in > 0) | ~crosses)
    done = gh
    t_hit = torch.where(gh, gt, t_hit)
    face = torch.where(gh, gf, face)
    idx = torch.where(gh, torch.full_like(idx, grass), idx)

    # ---- DDA in the crop
    act = crosses & ~done
    cell, step, tmax, tdel = [], [], [], []
    for k in range(3):
        c = torch.floor(o[k] + t_in * d[k]).long().clamp(0, size[k] - 1)
        pos = d[k] > 0
        st = torch.where(d[k].abs() > eps, torch.where(pos, 1, -1), 0)
        nxt = (c + pos.long()).to(ft)
        tm = torch.where(st != 0, (nxt - o[k]) / dsafe[k], torch.full_like(t_in, big))
        td = torch.where(st != 0, 1.0 / dsafe[k].abs(), torch.full_like(t_in, big))
        cell.append(c)
        step.append(st)
        tmax.append(tm)
        tdel.append(td)
    cur_face = axis_face(entry_axis)
    cur_t = t_in.clone()
    bidx = torch.arange(B, device=dev)[:, None] * (SX * SY * SZ)
    flat = vox.reshape(-1)
    n_iter = SX + SY + SZ + 2
    for it in range(n_iter):
        lin = bidx + (cell[0] * SY + cell[1]) * SZ + cell[2]
        v = flat[lin.clamp(0, flat.numel() - 1)].long()
        hit = act & (v != 0)
        t_hit = torch.where(hit, cur_t, t_hit)
        face = torch.where(hit, cur_face, face)
        idx = torch.where(hit, v, idx)
        done = done | hit
        act = act & ~hit
        # advance to the next cell
        tm = torch.stack(tmax)
        ax = tm.argmin(0)
        tnext = tm.min(0).values
        act = act & (tnext < t_out)
        for k in range(3):
            m = act & (ax == k)
            cell[k] = torch.where(m, cell[k] + step[k], cell[k])
            tmax[k] = torch.where(m, tmax[k] + tdel[k], tmax[k])
            act = act & (cell[k] >= 0) & (cell[k] < size[k])
        cur_t = torch.where(act, tnext, cur_t)
        cur_face = torch.where(act, axis_face(ax), cur_face)
        if it % 8 == 7 and not bool(act.any()):
            break
    # ---- segment after the crop
    after = crosses & ~done & (t_exit < max_d)
    gh, gt, gf = ground(t_exit, torch.full_like(t_exit, max_d), axis_face(exit_axis))
    gh = gh & after
    t_hit = torch.where(gh, gt, t_hit)
    face = torch.where(gh, gf, face)
    idx = torch.where(gh, torch.full_like(idx, grass), idx)
    idx = torch.where(t_hit > max_d, torch.zeros_like(idx), idx)
    solid = idx != 0

    # ---- textures
    t_c = torch.where(solid, t_hit, torch.zeros_like(t_hit))
    p = [o[k] + t_c * d[k] for k in range(3)]
    fr = [pk - torch.floor(pk) for pk in p]
    one = torch.ones_like(fr[0])
    fcl = face.clamp_min(0)
    u = torch.stack([fr[0], fr[0], fr[2], one - fr[2], one - fr[0], fr[0]])
    vv = torch.stack([one - fr[2], fr[2], one - fr[1], one - fr[1], one - fr[1], one - fr[1]])
    u = torch.gather(u, 0, fcl[None])[0]
    vv = torch.gather(vv, 0, fcl[None])[0]
    slot = torch.tensor([0, 1, 2, 2, 3, 3], device=dev)[fcl]
    col = (u * TEX).long().clamp(0, TEX - 1)
    row = (vv * TEX).long().clamp(0, TEX - 1)
    tex_i = ((idx * 4 + slot) * TEX + row) * TEX + col
    rgb = atlas[tex_i]  # (B, R, 3)
    sem = idx.clone()
    depth = torch.where(solid, t_hit, torch.full_like(t_hit, max_d))

    # ---- bodies
    if bodies is not None and len(bodies) > 0:
        bt = _as_tensor(bodies, dev, ft)
        if bt.dim() == 2:
            bt = bt.unsqueeze(0).expand(B, *bt.shape)
        N = bt.shape[1]
        exc = _as_tensor(exclude_body, dev, torch.long).reshape(-1).expand(B)
        bx, by, bz, byaw = (bt[..., k][:, None, :] for k in range(4))  # (B, 1, N)
        s, c = torch.sin(byaw), torch.cos(byaw)
        rx = o[0][..., None] + orgf[:, 0, None, None] - 0.5 - bx
        ry = o[1][..., None] + orgf[:, 1, None, None] - 0.5 - by
        rz = o[2][..., None] + orgf[:, 2, None, None] - 0.5 - bz
        lox, loz = rx * c + rz * s, -rx * s + rz * c
        ddx, ddy, ddz = dx[..., None], dy[..., None], dz[..., None]
        ldx, ldz = ddx * c + ddz * s, -ddx * s + ddz * c
        los = [lox, ry.expand_as(lox), loz]
        lds = [ldx, ddy.expand_as(ldx), ldz]
        lo_b = [-BODY_HALF, 0.0, -BODY_HALF]
        hi_b = [BODY_HALF, BODY_HEIGHT, BODY_HALF]
        ta_l, tb_l = [], []
        for k in range(3):
            ok = lds[k].abs() > eps
            ds = torch.where(ok, lds[k], torch.full_like(lds[k], eps))
            a = (lo_b[k] - los[k]) / ds
            b_ = (hi_b[k] - los[k]) / ds
            inside = (los[k] >= lo_b[k]) & (los[k] <= hi_b[k])
            a2 = torch.where(ok, torch.minimum(a, b_), torch.where(inside, -big, big))
            b2 = torch.where(ok, torch.maximum(a, b_), torch.where(inside, big, -big))
            ta_l.append(a2)
            tb_l.append(b2)
        ta_s = torch.stack(ta_l)
        bt0 = ta_s.max(0).values
        bfa = ta_s.argmax(0)
        bt1 = torch.stack(tb_l).min(0).values
        nidx = torch.arange(N, device=dev)[None, None, :]
        valid = (bt0 <= bt1) & (bt0 > 0) & (nidx != exc[:, None, None])
        tb_all = torch.where(valid, bt0, torch.full_like(bt0, big))
        tbest, bsel = tb_all.min(-1)  # (B, R)
        bhit = tbest < depth
        g = lambda x: torch.gather(x, 2, bsel[..., None])[..., 0]  # noqa: E731
        fa = g(bfa)
        hx = g(lox) + tbest * g(ldx)
        hy = g(ry.expand_as(lox)) + tbest * dy
        hz = g(loz) + tbest * g(ldz)
        gldx, gldz = g(ldx), g(ldz)
        half2 = 2 * BODY_HALF
        # faces: 0 front, 1 back, 2 right, 3 left, 4 top, 5 bottom
        bf = torch.where(
            fa == 0,
            torch.where(gldx < 0, 2, 3),
            torch.where(fa == 2, torch.where(gldz < 0, 0, 1), torch.where(dy < 0, 4, 5)),
        )
        bu = torch.where(
            fa == 0,
            torch.where(gldx < 0, (hz + BODY_HALF) / half2, (BODY_HALF - hz) / half2),
            torch.where(
                fa == 2,
                torch.where(gldz < 0, (BODY_HALF - hx) / half2, (hx + BODY_HALF) / half2),
                (hx + BODY_HALF) / half2,
            ),
        )
        bv = torch.where(fa == 1, (BODY_HALF - hz) / half2, (BODY_HEIGHT - hy) / BODY_HEIGHT)
        bcol = (bu * BODY_W).long().clamp(0, BODY_W - 1)
        brow = (bv * BODY_H).long().clamp(0, BODY_H - 1)
        yb = g(byaw.expand_as(lox))
        fb = bf <= 1
        nx = torch.where(fb, torch.sin(yb), torch.cos(yb))
        nz = torch.where(fb, torch.cos(yb), torch.sin(yb))
        shade = 0.670820 * nx * nx + 0.836660 * nz * nz
        shade = torch.where(bf == 4, 1.0, torch.where(bf == 5, 0.447213, shade))
        bcolor = body_tex[(bf * BODY_H + brow) * BODY_W + bcol] * shade[..., None]
        rgb = torch.where(bhit[..., None], bcolor, rgb)
        sem = torch.where(bhit, BODY_SEMANTIC_BASE + bsel, sem)
        depth = torch.where(bhit, tbest, depth)
        solid = solid | bhit

    # ---- fog and sky
    fog_len = max(max_d - r.fog_start, 1e-6)
    fog = ((depth - r.fog_start) / fog_len).clamp(0.0, 1.0)[..., None]
    hor = torch.tensor(HORIZON_COLOR, device=dev, dtype=ft)
    top = torch.tensor(SKY_COLOR, device=dev, dtype=ft)
    rgb = rgb + (hor - rgb) * fog
    k_sky = (dy * 2.5).clamp(0.0, 1.0)[..., None]
    sky = hor + (top - hor) * k_sky
    rgb = torch.where(solid[..., None], rgb, sky)
    rgb = torch.floor(rgb + 0.5).clamp(0, 255).to(torch.uint8)
    # This path fills RenderResult with torch tensors (see the docstring); its fields are
    # annotated for the numpy path, so the casts are for the type checker only.
    return RenderResult(
        cast(np.ndarray, rgb.reshape(B, H, W, 3)),
        cast(np.ndarray, sem.to(torch.uint8).reshape(B, H, W)),
        cast(np.ndarray, depth.to(torch.float32).reshape(B, H, W)),
    )
