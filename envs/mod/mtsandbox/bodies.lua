-- Kinematic bodies (the agent and overseers): stepped by this mod with a fixed game-time dt, so
-- motion never depends on the engine's wall-clock dtime. Collision against the arena voxels,
-- gravity, jumping; shown to watchers as minetest_game's character mesh.
local arena, palette, shared = ...

local floor, ceil, abs, sin, cos = math.floor, math.ceil, math.abs, math.sin, math.cos

local bodies = { list = {} }

-- Half width, height, eye height (player_api defaults), from shared.json like envs/shared.py.
local HW, H, EYE = shared.body.half_width, shared.body.height, shared.body.eye_height
-- Event kinds (envs/bridge.py EVENT_NAMES); an event is { kind, body, x, y, z, a, b }.
local EV = shared.events
bodies.HW, bodies.H, bodies.EYE = HW, H, EYE

minetest.register_entity("mtsandbox:body", {
	initial_properties = {
		physical = false,
		collide_with_objects = false,
		pointable = true,
		visual = "mesh",
		mesh = "character.b3d",
		textures = { "character.png" },
		visual_size = { x = 1, y = 1 },
		collisionbox = { -HW, 0, -HW, HW, H, HW },
		static_save = false,
		nametag_color = "#ffffff",
	},
	on_punch = function()
		return true -- no damage from watchers
	end,
})

local ANIM = {
	stand = { x = 0, y = 79 },
	walk = { x = 168, y = 187 },
	mine = { x = 189, y = 198 },
	walk_mine = { x = 200, y = 219 },
}

-- Does a body box with feet at (x, y, z) overlap a solid node?
local function box_hits_nodes(x, y, z)
	local solid = palette.solid
	for nx = floor(x - HW - 0.5) + 1, ceil(x + HW + 0.5) - 1 do
		for ny = floor(y - 0.5) + 1, ceil(y + H + 0.5) - 1 do
			for nz = floor(z - HW - 0.5) + 1, ceil(z + HW + 0.5) - 1 do
				if solid[arena.get(nx, ny, nz)] then
					return true, nx, ny, nz
				end
			end
		end
	end
	return false
end
bodies.box_hits_nodes = box_hits_nodes

local function boxes_overlap(a, x, y, z, b)
	return abs(x - b.x) < 2 * HW and abs(z - b.z) < 2 * HW and y < b.y + H and b.y < y + H
end

local function other_body_at(self, x, y, z)
	for _, b in ipairs(bodies.list) do
		if b ~= self and boxes_overlap(self, x, y, z, b) then
			return b
		end
	end
end

-- Clamp a coordinate against the blocking nodes found in the moved box along one axis.
local function resolve(axis, b, d)
	-- Find the nearest blocking node boundary along the movement direction.
	local solid = palette.solid
	local x, y, z = b.x, b.y, b.z
	if axis == "x" then
		x = x + d
	elseif axis == "y" then
		y = y + d
	else
		z = z + d
	end
	local best
	for mx = floor(x - HW - 0.5) + 1, ceil(x + HW + 0.5) - 1 do
		for my = floor(y - 0.5) + 1, ceil(y + H + 0.5) - 1 do
			for mz = floor(z - HW - 0.5) + 1, ceil(z + HW + 0.5) - 1 do
				if solid[arena.get(mx, my, mz)] then
					local n = (axis == "x" and mx) or (axis == "y" and my) or mz
					if best == nil or (d > 0 and n < best) or (d < 0 and n > best) then
						best = n
					end
				end
			end
		end
	end
	if best == nil then
		return (axis == "x" and b.x) or (axis == "y" and b.y) or b.z
	end
	if axis == "x" then
		return d > 0 and (best - 0.5 - HW) or (best + 0.5 + HW)
	elseif axis == "y" then
		return d > 0 and (best - 0.5 - H) or (best + 0.5)
	else
		return d > 0 and (best - 0.5 - HW) or (best + 0.5 + HW)
	end
end

-- Move a body along one axis by d; returns the pushed body if one was pushed.
local function move_axis(b, axis, d, cfg, events, bi)
	if d == 0 then
		return
	end
	local x, y, z = b.x, b.y, b.z
	if axis == "x" then
		x = x + d
	elseif axis == "y" then
		y = y + d
	else
		z = z + d
	end
	-- Invisible walls at the arena's edges.
	local lo_x, hi_x = arena.ox - 0.5 + HW, arena.ox + arena.sx - 0.5 - HW
	local lo_z, hi_z = arena.oz - 0.5 + HW, arena.oz + arena.sz - 0.5 - HW
	x = math.min(math.max(x, lo_x), hi_x)
	z = math.min(math.max(z, lo_z), hi_z)
	if box_hits_nodes(x, y, z) and not box_hits_nodes(b.x, b.y, b.z) then
		local v = resolve(axis, b, d)
		if axis == "x" then
			x = v
		elseif axis == "y" then
			y = v
			if d < 0 then
				b.on_ground = true
			end
			b.vy = 0
		else
			z = v
		end
	end
	local other = other_body_at(b, x, y, z)
	if other then
		if cfg.allow_push and axis ~= "y" then
			local ox, oz = other.x, other.z
			local px = axis == "x" and (x - b.x) or 0
			local pz = axis == "z" and (z - b.z) or 0
			local tx, tz = ox + px, oz + pz
			if not box_hits_nodes(tx, other.y, tz) and tx >= lo_x and tx <= hi_x and tz >= lo_z
				and tz <= hi_z and not other_body_at(other, tx, other.y, tz) then
				other.x, other.z = tx, tz
				events[#events + 1] = { EV.push, bi, floor(tx + 0.5), floor(other.y + 0.5), floor(tz + 0.5), other.index, 0 }
			else
				return
			end
		else
			if axis == "y" and d < 0 then
				b.on_ground = true
				b.vy = 0
			end
			return
		end
	end
	b.x, b.y, b.z = x, y, z
end

-- Amanatides-Woo DDA from (px,py,pz) along unit (dx,dy,dz): first non-air node within maxd.
-- Returns x, y, z, palette index, entry distance, face normal (fx, fy, fz), or nil.
function bodies.raycast(px, py, pz, dx, dy, dz, maxd)
	local x, y, z = floor(px + 0.5), floor(py + 0.5), floor(pz + 0.5)
	local huge = math.huge
	local sx, sy, sz = dx > 0 and 1 or -1, dy > 0 and 1 or -1, dz > 0 and 1 or -1
	local tdx = dx ~= 0 and abs(1 / dx) or huge
	local tdy = dy ~= 0 and abs(1 / dy) or huge
	local tdz = dz ~= 0 and abs(1 / dz) or huge
	local tmx = dx ~= 0 and ((x + 0.5 * sx - px) / dx) or huge
	local tmy = dy ~= 0 and ((y + 0.5 * sy - py) / dy) or huge
	local tmz = dz ~= 0 and ((z + 0.5 * sz - pz) / dz) or huge
	local t, fx, fy, fz = 0, 0, 0, 0
	while t <= maxd do
		local p = arena.get(x, y, z)
		if p ~= 0 then
			return x, y, z, p, t, fx, fy, fz
		end
		if tmx < tmy and tmx < tmz then
			x, t, tmx = x + sx, tmx, tmx + tdx
			fx, fy, fz = -sx, 0, 0
		elseif tmy < tmz then
			y, t, tmy = y + sy, tmy, tmy + tdy
			fx, fy, fz = 0, -sy, 0
		else
			z, t, tmz = z + sz, tmz, tmz + tdz
			fx, fy, fz = 0, 0, -sz
		end
	end
	return nil
end

function bodies.look_dir(b)
	local cp = cos(b.pitch)
	return -sin(b.yaw) * cp, sin(b.pitch), cos(b.yaw) * cp
end

-- Spawn or respawn the body list for an episode.
-- spec.near = {object index (1-based), min dist, max dist}: spawn at that distance from it.
function bodies.spawn(specs, rng, objects)
	for _, b in ipairs(bodies.list) do
		if b.obj and b.obj:get_pos() then
			b.obj:remove()
		end
	end
	bodies.list = {}
	local avoid = {}
	for i, spec in ipairs(specs) do
		local x, y, z
		if spec.pos then
			x, y, z = spec.pos[1], spec.pos[2], spec.pos[3]
		else
			local accept
			if spec.near then
				local o = objects[spec.near[1]]
				if not o then
					error("body " .. tostring(spec.name) .. ": no object " .. tostring(spec.near[1]))
				end
				accept = function(cx, cz)
					local d = math.sqrt((cx - o.x) ^ 2 + (cz - o.z) ^ 2)
					return d >= spec.near[2] and d <= spec.near[3]
				end
			end
			x, y, z = arena.free_spot(rng, spec.min_tree_dist or 2.5, avoid, spec.margin, accept)
		end
		local yaw = spec.yaw or math.rad(rng:next(0, 359))
		if spec.near and spec.face_near then
			-- Face the object (forward is (-sin yaw, cos yaw)), within +-face_near degrees.
			local o = objects[spec.near[1]]
			local j = math.rad(rng:next(-spec.face_near, spec.face_near))
			yaw = (math.atan2(-(o.x - x), o.z - z) + j) % (2 * math.pi)
		end
		local pitch = spec.pitch or 0
		if spec.near and spec.aim_near then
			-- Look at the object's centre from eye height (pitch > 0 looks up).
			local o = objects[spec.near[1]]
			pitch = math.atan2(o.y - (y + EYE), math.sqrt((o.x - x) ^ 2 + (o.z - z) ^ 2))
		end
		local b = {
			index = i - 1,
			name = spec.name or ("body" .. i),
			kind = spec.kind or "agent",
			x = x, y = y, z = z, yaw = yaw, pitch = pitch,
			vy = 0, on_ground = true, punch_key = nil, punch_count = 0, anim = nil,
		}
		avoid[#avoid + 1] = b
		bodies.list[i] = b
		bodies.show(b)
	end
end

-- Keep the watcher-visible entity in sync (cheap: in-memory until the engine's next step).
function bodies.show(b, moving, mining)
	if not b.obj or not b.obj:get_pos() then
		b.obj = minetest.add_entity({ x = b.x, y = b.y, z = b.z }, "mtsandbox:body")
		if not b.obj then
			return
		end
		b.obj:set_nametag_attributes({ text = b.name })
		b.anim = nil
	end
	b.obj:set_pos({ x = b.x, y = b.y, z = b.z })
	b.obj:set_yaw(b.yaw)
	local a = (moving and mining and "walk_mine") or (moving and "walk") or (mining and "mine") or "stand"
	if a ~= b.anim then
		b.obj:set_animation(ANIM[a], 30, 0)
		b.anim = a
	end
end

local JUMP, PUNCH, USE, PLACE = shared.flags.jump, shared.flags.punch, shared.flags.use, shared.flags.place
bodies.FLAGS = { JUMP = JUMP, PUNCH = PUNCH, USE = USE, PLACE = PLACE }

-- Step one body with its action; appends events and node changes.
-- Event layout: { kind, body, x, y, z, a, b } (kinds documented in docs/protocol.md).
function bodies.step(b, act, cfg, events, changes)
	local bi = b.index
	b.yaw = (b.yaw + act.dyaw) % (2 * math.pi)
	local lim = math.rad(89)
	b.pitch = math.min(math.max(b.pitch + act.dpitch, -lim), lim)
	local dt = cfg.dt
	local s = cfg.walk_speed * dt
	local fwd, side = act.fwd, act.side
	if fwd ~= 0 and side ~= 0 then
		fwd, side = fwd * 0.7071, side * 0.7071
	end
	-- forward (-sin yaw, cos yaw), right (cos yaw, sin yaw)
	local mx = (-sin(b.yaw) * fwd + cos(b.yaw) * side) * s
	local mz = (cos(b.yaw) * fwd + sin(b.yaw) * side) * s
	if math.floor(act.flags / JUMP) % 2 == 1 and b.on_ground then
		b.vy = cfg.jump_speed
	end
	b.vy = math.max(b.vy - cfg.gravity * dt, -cfg.max_fall_speed)
	move_axis(b, "x", mx, cfg, events, bi)
	move_axis(b, "z", mz, cfg, events, bi)
	b.on_ground = false
	move_axis(b, "y", b.vy * dt, cfg, events, bi)
	if not b.on_ground and b.vy <= 0 and box_hits_nodes(b.x, b.y - 0.01, b.z) then
		b.on_ground = true
	end

	-- Look ray: what is straight ahead (shaped rewards, pointing for punch/use/place).
	local dx, dy, dz = bodies.look_dir(b)
	local ex, ey, ez = b.x, b.y + EYE, b.z
	local hx, hy, hz, hp, ht, fx, fy, fz = bodies.raycast(ex, ey, ez, dx, dy, dz, cfg.look_distance)
	b.look_p, b.look_dist = hp or 0, ht or -1
	b.look_x, b.look_y, b.look_z = hx or 0, hy or 0, hz or 0
	local in_reach = hp ~= nil and ht <= cfg.reach
	local flags = act.flags
	local mining = false
	if math.floor(flags / PUNCH) % 2 == 1 then
		mining = true
		if in_reach then
			events[#events + 1] = { EV.punch, bi, hx, hy, hz, hp, 0 }
			if palette.diggable[hp] then
				local key = arena.index(hx, hy, hz)
				if b.punch_key == key then
					b.punch_count = b.punch_count + 1
				else
					b.punch_key, b.punch_count = key, 1
				end
				if b.punch_count >= (cfg.punches[hp] or 1) then
					local tree = arena.tree_of_column[hx * 65536 + hz]
					local height, skip = 0, 0
					if tree and (hp == palette.TREE or hp == palette.APPLE_TREE) then
						height = hy - tree.base + 1
						local bottom = arena.get(hx, tree.base, hz)
						if hy > tree.base and (bottom == palette.TREE or bottom == palette.APPLE_TREE) then
							skip = 1
						end
					end
					arena.set(hx, hy, hz, 0, changes)
					b.punch_key, b.punch_count = nil, 0
					events[#events + 1] = { EV.dig, bi, hx, hy, hz, hp, height + 256 * skip + 65536 * (tree and tree.id or 0) }
				end
			end
		else
			b.punch_key, b.punch_count = nil, 0
		end
	end
	if math.floor(flags / USE) % 2 == 1 and in_reach and palette.pressable[hp] then
		events[#events + 1] = { EV.press, bi, hx, hy, hz, hp, 0 }
		if b.kind == "agent" and cfg.use_removes and cfg.use_removes[hp] then
			-- Pressing it takes it apart (a visible change, unlike a hidden flag): a dig event.
			arena.set(hx, hy, hz, 0, changes)
			events[#events + 1] = { EV.dig, bi, hx, hy, hz, hp, 0 }
		end
	end
	if math.floor(flags / PLACE) % 2 == 1 and in_reach then
		local px, py, pz = hx + fx, hy + fy, hz + fz
		if arena.inside(px, py, pz) and arena.get(px, py, pz) == 0 then
			local blocked = false
			for _, o in ipairs(bodies.list) do
				if abs(o.x - px) < 0.5 + HW and abs(o.z - pz) < 0.5 + HW and o.y < py + 0.5 and py - 0.5 < o.y + H then
					blocked = true
				end
			end
			if not blocked then
				arena.set(px, py, pz, palette.WALL, changes)
				events[#events + 1] = { EV.place, bi, px, py, pz, palette.WALL, 0 }
			end
		end
	end
	bodies.show(b, mx ~= 0 or mz ~= 0, mining)
end

return bodies
