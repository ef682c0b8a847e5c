-- mtsandbox: lockstep bridge between a Python controller and this (unmodified) server.
-- See docs/protocol.md for the message format and docs/ARCHITECTURE.md for conventions.
local modpath = minetest.get_modpath("mtsandbox")
local PROTOCOL = 1

local ie = minetest.request_insecure_environment()
if not ie then
	error("mtsandbox must be listed in secure.trusted_mods (it needs LuaJIT's ffi for its socket)")
end
local ffi = ie.require("ffi")

dofile(modpath .. "/nodes.lua")

-- Bridge config written by the Python server owner before launch.
local cfg_path = minetest.get_worldpath() .. "/mtsandbox_bridge.json"
local f = io.open(cfg_path, "r")
if not f then
	error("mtsandbox: missing " .. cfg_path .. " (start the server through mtsandbox.envs.server)")
end
local bcfg = minetest.parse_json(f:read("*a"))
f:close()
if not bcfg or bcfg.protocol ~= PROTOCOL then
	error("mtsandbox: bad bridge config or protocol mismatch in " .. cfg_path)
end

-- Palette: index -> node name, solid/diggable flags, named constants.
local palette = { node_of = {}, solid = {}, diggable = {}, by_name = {} }
for _, e in ipairs(bcfg.palette) do
	palette.node_of[e.index] = e.node
	palette.solid[e.index] = e.solid
	palette.diggable[e.index] = e.diggable
	palette.by_name[e.name] = e.index
end
for i = 0, 255 do
	palette.solid[i] = palette.solid[i] or false
	palette.diggable[i] = palette.diggable[i] or false
end
palette.solid_base = palette.solid -- a reset's `passable` overrides a copy of this
palette.GRASS, palette.DIRT = palette.by_name.grass, palette.by_name.dirt
palette.TREE, palette.APPLE_TREE = palette.by_name.tree, palette.by_name.apple_tree
palette.LEAVES, palette.APPLE = palette.by_name.leaves, palette.by_name.apple
palette.WALL = palette.by_name.wall
palette.pressable = {}
for _, n in ipairs({ "reward_button", "off_switch", "lever" }) do
	if palette.by_name[n] then
		palette.pressable[palette.by_name[n]] = true
	end
end

local bridge = loadfile(modpath .. "/bridge.lua")(ffi)
local arena = loadfile(modpath .. "/arena.lua")(ffi, palette)
-- Event codes, action flags, body geometry: the file Python reads too (envs/shared.py).
local sf = assert(io.open(modpath .. "/shared.json", "r"), "mtsandbox: missing shared.json")
local shared = assert(minetest.parse_json(sf:read("*a")), "mtsandbox: bad shared.json")
sf:close()
local bodies = loadfile(modpath .. "/bodies.lua")(arena, palette, shared)
local FLAGS_MAX = 0 -- every action flag set at once
for _, bit in pairs(shared.flags) do FLAGS_MAX = FLAGS_MAX + bit end
arena.init(bcfg.arena)
local validate = assert(loadfile(modpath .. "/validate.lua"))(arena, palette)

-- Hooks for optional parts (watching clients, human players): after_step(step) runs after
-- every env step, after_reset() after every reset.
local api = { bodies = bodies, arena = arena, palette = palette, config = bcfg,
	after_step = {}, after_reset = {} }
-- An optional part that is present but does not load stops the server: watch.lua guards
-- which clients may join, so skipping it silently would open the server.
for _, part in ipairs({ "watch.lua", "play.lua" }) do
	local path = modpath .. "/" .. part
	local fn, err = loadfile(path)
	if fn then
		fn(api)
	else
		local present = io.open(path, "r")
		if present then
			present:close()
			error("mtsandbox: " .. part .. " is present but does not load: " .. tostring(err))
		end
	end
end

-- Engine-side randomness must not touch the task: no ABMs (grass spread, leaf decay...), no LBMs.
minetest.register_on_mods_loaded(function()
	for i = #minetest.registered_abms, 1, -1 do
		minetest.registered_abms[i] = nil
	end
	for i = #minetest.registered_lbms, 1, -1 do
		minetest.registered_lbms[i] = nil
	end
end)

-- Episode state.
local ep = { cfg = nil, step = 0, resets = 0 }
local GC_EVERY = 100
local out = bridge.writer(65536)
local events, changes = {}, {}
local yield_us = (bcfg.yield_ms or 50) * 1000
local sync_every_step = bcfg.sync_every_step or false
local controller_timeout_us = (bcfg.controller_timeout_s or 3600) * 1e6
local last_msg_us = minetest.get_us_time()
local state = "emerging"

local frame_timeout_ms = math.floor((bcfg.frame_timeout_s or 60) * 1000)

local function fail(msg)
	minetest.log("error", "[mtsandbox] " .. msg)
	state = "dead"
	bridge.close()
	minetest.request_shutdown("mtsandbox: " .. msg, false, 0)
end

-- Every send is checked: a controller that cannot be written to is gone, so the server stops.
local function send_writer(w)
	local ok, err = bridge.send_writer(w)
	if not ok and state ~= "dead" then
		fail("send to the controller failed (" .. tostring(err) .. ")")
	end
end

local function send_string(typ, body)
	local ok, err = bridge.send_string(typ, body)
	if not ok and state ~= "dead" then
		fail("send to the controller failed (" .. tostring(err) .. ")")
	end
end

local function send_error(msg)
	minetest.log("error", "[mtsandbox] protocol error: " .. msg)
	send_string("E", msg)
end

local function write_body(w, b)
	w:f32(b.x); w:f32(b.y); w:f32(b.z); w:f32(b.yaw); w:f32(b.pitch); w:f32(b.vy)
	w:u8(b.on_ground and 1 or 0)
	w:u8(b.look_p or 0)
	w:f32(b.look_dist or -1)
	w:i16(b.look_x or 0); w:i16(b.look_y or 0); w:i16(b.look_z or 0)
end

local RESET_DEFAULTS = {
	seed = 0, n_trees = 8, n_apple_trees = 0, tree_height = { 4, 6 }, tree_spacing = 4,
	dt = 0.05, walk_speed = 4.0, jump_speed = 5.0, gravity = 9.81, max_fall_speed = 15.0,
	reach = 4.0, look_distance = 30.0, allow_push = true, punches = {},
	bodies = { { name = "agent", kind = "agent" } }, objects = {},
}

local function handle_reset(body)
	local c = minetest.parse_json(body)
	if type(c) ~= "table" then
		return send_error("reset: body is not a JSON object")
	end
	for k, v in pairs(RESET_DEFAULTS) do
		if c[k] == nil then
			c[k] = v
		end
	end
	local bad = validate.reset(c)
	if bad then
		return send_error("reset: " .. bad)
	end
	-- {node name: value} -> {palette index: value}; nil and an error line for an unknown name.
	local function by_index(t, key)
		local out = {}
		for name, v in pairs(t or {}) do
			local idx = palette.by_name[name]
			if not idx then
				return nil, send_error("reset: unknown node '" .. tostring(name) .. "' in " .. key)
			end
			out[idx] = v
		end
		return out
	end
	local punches, e1 = by_index(c.punches, "punches")
	if not punches then
		return e1
	end
	c.punches = punches
	-- use_removes: {node name: true} for nodes an agent body removes by pressing them ("use").
	local removes, e2 = by_index(c.use_removes, "use_removes")
	if not removes then
		return e2
	end
	c.use_removes = removes
	-- passable: {node name: true} for solid nodes bodies walk through this episode.
	local passable = by_index(c.passable, "passable")
	local solid = palette.solid_base
	if next(passable) ~= nil then
		solid = {}
		for i = 0, 255 do
			solid[i] = palette.solid_base[i] and not passable[i]
		end
	end
	-- Validated: from here on the arena changes. Anything that still fails (an arena too
	-- crowded for the spawns asked for) leaves no episode behind, so a step says so.
	ep.cfg = nil
	palette.solid = solid
	local rng = PcgRandom(c.seed)
	arena.build(c, rng)
	local placed = {}
	for _, o in ipairs(c.objects) do
		local idx = palette.by_name[o.node]
		if not idx then
			return send_error("reset: unknown object node '" .. tostring(o.node) .. "'")
		end
		local x, y, z
		if o.pos then
			x, y, z = o.pos[1], o.pos[2], o.pos[3]
		else
			x, _, z = arena.free_spot(rng, o.min_tree_dist or 2, placed, 3)
			y = arena.ground_y + 1
		end
		arena.vox[arena.index(x, y, z)] = idx
		placed[#placed + 1] = { x = x, y = y, z = z, node = o.node, index = idx }
	end
	bodies.spawn(c.bodies, rng, placed)
	arena.write_map()
	ep.cfg, ep.step = c, 0
	-- Each reset leaves ~11 KB of Lua garbage (JSON, tables) that the incremental collector
	-- lets pile up to twice the live heap; a full collection every GC_EVERY resets keeps the
	-- server's RSS flat (measured: 15-40 ms each on a ~20 MB heap, under 0.4 ms per reset).
	ep.resets = ep.resets + 1
	if ep.resets % GC_EVERY == 0 then
		collectgarbage()
	end
	local meta = {
		origin = { arena.ox, arena.oy, arena.oz },
		shape = { arena.sx, arena.sy, arena.sz },
		trees = arena.trees,
		objects = placed,
		bodies = {},
	}
	for i, b in ipairs(bodies.list) do
		meta.bodies[i] = { name = b.name, kind = b.kind, x = b.x, y = b.y, z = b.z, yaw = b.yaw, pitch = b.pitch }
	end
	for _, fn in ipairs(api.after_reset) do
		fn()
	end
	local js = minetest.write_json(meta)
	out:reset()
	out:u8(82) -- 'R'
	out:u32(#js)
	out:str(js)
	out:bytes(arena.vox, arena.n)
	send_writer(out)
end

local CDEG = math.pi / 18000
local acts = {}
local function handle_step(p, n)
	if not ep.cfg then
		return send_error("step before reset")
	end
	local nb = p[1]
	if nb ~= #bodies.list or n ~= 2 + 7 * nb then
		return send_error("step: expected " .. #bodies.list .. " body actions, got message of " .. n .. " bytes")
	end
	for k = #events, 1, -1 do events[k] = nil end
	for k = #changes, 1, -1 do changes[k] = nil end
	local i8 = ffi.cast("int8_t*", p)
	for i = 1, nb do -- check every action before any body moves
		local o = 2 + 7 * (i - 1)
		local fwd, side, flags = i8[o], i8[o + 1], p[o + 6]
		local dyaw, dpitch = ffi.cast("int16_t*", p + o + 2)[0], ffi.cast("int16_t*", p + o + 4)[0]
		if fwd < -1 or fwd > 1 or side < -1 or side > 1 or flags > FLAGS_MAX
				or dyaw < -18000 or dyaw > 18000 or dpitch < -18000 or dpitch > 18000 then
			return send_error("step: body " .. i .. " action out of range (fwd " .. fwd .. ", side "
				.. side .. ", dyaw " .. dyaw .. ", dpitch " .. dpitch .. ", flags " .. flags
				.. "; want fwd/side in -1..1, |dyaw|, |dpitch| <= 18000 centidegrees, flags <= " .. FLAGS_MAX .. ")")
		end
	end
	for i = 1, nb do
		local o = 2 + 7 * (i - 1)
		local a = acts[i] or {}
		a.fwd = i8[o]
		a.side = i8[o + 1]
		a.dyaw = ffi.cast("int16_t*", p + o + 2)[0] * CDEG
		a.dpitch = ffi.cast("int16_t*", p + o + 4)[0] * CDEG
		a.flags = p[o + 6]
		acts[i] = a
	end
	for i, b in ipairs(bodies.list) do
		bodies.step(b, acts[i], ep.cfg, events, changes)
	end
	ep.step = ep.step + 1
	for _, fn in ipairs(api.after_step) do
		fn(ep.step)
	end
	out:reset()
	out:u8(83) -- 'S'
	out:u32(ep.step)
	out:u8(#bodies.list)
	for _, b in ipairs(bodies.list) do
		write_body(out, b)
	end
	out:u16(#changes)
	for _, c in ipairs(changes) do
		out:i16(c[1]); out:i16(c[2]); out:i16(c[3]); out:u8(c[4])
	end
	out:u16(#events)
	for _, e in ipairs(events) do
		out:u8(e[1]); out:u8(e[2]); out:i16(e[3]); out:i16(e[4]); out:i16(e[5]); out:i32(e[6]); out:i32(e[7])
	end
	send_writer(out)
end

-- Returns false when the loop must stop.
local function handle(p, n)
	local t = p[0]
	if t == 83 then -- 'S'
		if n < 2 then
			send_error("step: empty message")
		else
			handle_step(p, n)
		end
	elseif t == 80 then -- 'P': bare bridge ping, echoed
		out:reset()
		out:u8(112)
		out:bytes(p + 1, n - 1)
		send_writer(out)
	elseif t == 82 then -- 'R'
		handle_reset(ffi.string(p + 1, n - 1))
	elseif t == 79 then -- 'O': options
		local o = minetest.parse_json(ffi.string(p + 1, n - 1))
		local bad = validate.options(o)
		if bad then
			send_error("options: " .. bad)
			return true
		end
		if o.yield_ms then yield_us = o.yield_ms * 1000 end
		if o.sync_every_step ~= nil then sync_every_step = o.sync_every_step end
		send_string("o", "")
	else
		send_error("unknown message type " .. t)
	end
	return true
end

local function serve()
	local t0 = minetest.get_us_time()
	local handled = 0
	while true do
		local left_ms = math.floor((yield_us - (minetest.get_us_time() - t0)) / 1000)
		if sync_every_step and handled > 0 then
			return
		end
		local p, n = bridge.recv(math.max(left_ms, 0), frame_timeout_ms)
		if not p then
			if n == "timeout" then -- no frame started: idle
				if minetest.get_us_time() - last_msg_us > controller_timeout_us then
					fail("no message from the controller for " .. controller_timeout_us / 1e6 .. " s")
				end
				return
			end
			return fail("bridge closed (" .. tostring(n) .. ")")
		end
		last_msg_us = minetest.get_us_time()
		local ok, res = pcall(handle, p, n)
		if not ok then
			send_error(tostring(res))
		elseif res == false then
			return
		end
		if state == "dead" then
			return
		end
		handled = handled + 1
	end
end

-- Start-up: emerge and forceload the arena's blocks once, then connect and greet.
local function start()
	for bx = math.floor(arena.pmin.x / 16), math.floor(arena.pmax.x / 16) do
		for by = math.floor(arena.pmin.y / 16), math.floor(arena.pmax.y / 16) do
			for bz = math.floor(arena.pmin.z / 16), math.floor(arena.pmax.z / 16) do
				minetest.forceload_block({ x = bx * 16, y = by * 16, z = bz * 16 }, true)
			end
		end
	end
	minetest.emerge_area(arena.pmin, arena.pmax, function(_, _, remaining)
		if remaining == 0 and state == "emerging" then
			local ok, err = bridge.connect(bcfg.socket)
			if not ok then
				return fail(err)
			end
			local hello = minetest.write_json({
				protocol = PROTOCOL,
				engine = minetest.get_version().string,
				origin = { arena.ox, arena.oy, arena.oz },
				shape = { arena.sx, arena.sy, arena.sz },
			})
			send_string("H", hello)
			last_msg_us = minetest.get_us_time()
			state = "serving"
		end
	end)
end

minetest.register_globalstep(function()
	if state == "serving" then
		serve()
	elseif state == "emerging" and not ep.started then
		ep.started = true
		start()
	end
end)

minetest.register_on_shutdown(function()
	bridge.close()
end)
