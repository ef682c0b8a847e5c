-- Real clients on a sandbox server: access control, watchers, and the agent's-eye camera.
--
-- Loaded by init.lua with the shared `api` table {bodies, arena, palette, config, after_step,
-- after_reset}. What it does:
--   * Only the names in api.config.clients.names may join (others are refused before the
--     handshake), their accounts are created at start-up with the configured password (so the
--     password is required), and they get no privilege that could change the arena (no
--     interact): fly, fast, noclip only. Joining players are invisible to everyone, and the
--     server's join/leave/status chat lines are not sent.
--   * A player whose name is in `mtsandbox_bind` (minetest.conf, default "watcher") is bound
--     to the agent's camera: attached to the agent body's entity with its eye at the body's
--     eye height, look set to the body's yaw/pitch after every step, HUD hidden, client
--     physics switched off, and a HUD marker of 8 squares showing (step mod 256) so that a
--     frame grabber can tell which env step a frame shows.
-- Settings (minetest.conf, e.g. through ServerConfig.extra_conf):
--   mtsandbox_bind           comma list of names bound to the agent camera ("watcher")
--   mtsandbox_bind_body      index (0-based) of the body to bind to (0 = the agent)
--   mtsandbox_marker_frac    height of the marker strip as a fraction of the screen (1/32)
--   mtsandbox_fov            vertical fov in degrees forced on bound players (unset: client's)
--   mtsandbox_faithful       true: observation mode, also hides the bound body's own mesh,
--                            every body's nametag, the sun, moon and stars
--   mtsandbox_ground_outside true (default): fill the map outside the arena with flat grass,
--                            as the Python renderer assumes
-- Marker layout: 8 squares side by side along the bottom of the screen, each 1/8 of the width
-- and `mtsandbox_marker_frac` of the height; square i (0 = leftmost) is white when bit i of
-- (step mod 256) is set, black otherwise.
local api = ...
local bodies, arena, bcfg = api.bodies, api.arena, api.config
local settings = minetest.settings

local clients = bcfg.clients or {}
local allowed, allowed_list = {}, {}
for _, n in ipairs(clients.names or {}) do
	allowed[n] = true
	allowed_list[#allowed_list + 1] = n
end
local password = clients.password

local function split(s)
	local out = {}
	for w in string.gmatch(s or "", "[^,%s]+") do
		out[w] = true
	end
	return out
end

local bind_names = split(settings:get("mtsandbox_bind") or "watcher")
local bind_body = tonumber(settings:get("mtsandbox_bind_body") or "0") or 0
local marker_frac = tonumber(settings:get("mtsandbox_marker_frac") or "") or (1 / 32)
local force_fov = tonumber(settings:get("mtsandbox_fov") or "")
local faithful = settings:get_bool("mtsandbox_faithful", false)
local ground_outside = settings:get_bool("mtsandbox_ground_outside", true)

local accounts_ready = false -- set once the accounts exist (first server step)

-- Privileges of every client: nothing that edits the world.
local CLIENT_PRIVS = { fly = true, fast = true, noclip = true }

-- ---------------------------------------------------------------------------------------------
-- Access control
minetest.register_on_prejoinplayer(function(name)
	if not accounts_ready then
		return "mtsandbox: the server is still starting, try again in a moment."
	end
	if not allowed[name] then
		minetest.log("action", "[mtsandbox] refused join of '" .. name .. "' (not a sandbox client name)")
		return "This mtsandbox server only admits the names " .. table.concat(allowed_list, ", ")
			.. " (with the server's password; `mtsandbox view` prints it)."
	end
end)

local function create_accounts()
	if not password or password == "" then
		minetest.log("warning", "[mtsandbox] no client password configured: clients cannot join")
		return
	end
	local auth = minetest.get_auth_handler()
	for _, name in ipairs(allowed_list) do
		local hash = minetest.get_password_hash(name, password)
		if auth.get_auth(name) then
			auth.set_password(name, hash)
		else
			auth.create_auth(name, hash)
		end
		auth.set_privileges(name, CLIENT_PRIVS)
	end
	minetest.log("action", "[mtsandbox] client accounts ready: " .. table.concat(allowed_list, ", "))
end
-- The auth database opens after mods load: create the accounts in the first server step,
-- and refuse everyone until then (an early client must never register its own password).
minetest.after(0, function()
	create_accounts()
	accounts_ready = true
end)

-- No chat lines about joins/leaves/status: they would show on watchers' screens.
local builtin_status = minetest.get_server_status
minetest.get_server_status = function(name, joined)
	if joined then
		return ""
	end
	return builtin_status(name, joined)
end
minetest.send_join_message = function() end
minetest.send_leave_message = function() end

-- ---------------------------------------------------------------------------------------------
-- Flat ground outside the arena (the Python renderer assumes grass at y <= ground_y there).
if ground_outside then
	local c_grass = minetest.get_content_id("default:dirt_with_grass")
	local c_dirt = minetest.get_content_id("default:dirt")
	local data = {}
	minetest.register_on_generated(function(minp, maxp)
		local g = arena.ground_y
		if minp.y > g or maxp.y < g - 4 then
			return
		end
		local vm, emin, emax = minetest.get_mapgen_object("voxelmanip")
		local area = VoxelArea:new({ MinEdge = emin, MaxEdge = emax })
		vm:get_data(data)
		for z = minp.z, maxp.z do
			for y = math.max(minp.y, g - 4), math.min(maxp.y, g) do
				local vi = area:index(minp.x, y, z)
				local c = (y == g) and c_grass or c_dirt
				for _ = minp.x, maxp.x do
					data[vi] = c
					vi = vi + 1
				end
			end
		end
		vm:set_data(data)
		vm:set_lighting({ day = 15, night = 0 })
		vm:write_to_map(false)
	end)
	-- For an observing client, generate the ground it will see up front (view range margin)
	-- instead of while episodes run.
	if faithful then
		local margin = tonumber(settings:get("mtsandbox_view_margin") or "") or 48
		minetest.after(0, function()
			minetest.emerge_area(
				{ x = arena.pmin.x - margin, y = arena.ground_y - 4, z = arena.pmin.z - margin },
				{ x = arena.pmax.x + margin, y = arena.ground_y + 16, z = arena.pmax.z + margin })
		end)
	end
end

-- ---------------------------------------------------------------------------------------------
-- Players: hidden, powerless; bound ones ride the agent's camera.
local SQUARE_ON = "default_dirt.png^[colorize:#ffffff:255"
local SQUARE_OFF = "default_dirt.png^[colorize:#000000:255"

local bound = {} -- name -> { player, huds = {8 ids}, bits = {8}, attached_to = obj }
local marker_value = 0 -- what the marker should show (set after each step/reset)
local marker_pending = false

local function body_to_bind()
	return bodies.list[bind_body + 1]
end

local function hide_player(player)
	player:set_properties({
		is_visible = false,
		visual_size = { x = 0, y = 0, z = 0 },
		pointable = false,
		makes_footstep_sound = false,
		show_on_minimap = false,
		collide_with_objects = false,
	})
	player:set_nametag_attributes({ text = " ", color = { a = 0, r = 255, g = 255, b = 255 },
		bgcolor = { a = 0, r = 0, g = 0, b = 0 } })
end

local function set_marker(st, value)
	for i = 0, 7 do
		local bit = math.floor(value / 2 ^ i) % 2
		if st.bits[i + 1] ~= bit then
			st.player:hud_change(st.huds[i + 1], "text", bit == 1 and SQUARE_ON or SQUARE_OFF)
			st.bits[i + 1] = bit
		end
	end
end

local function apply_faithful_look()
	if not faithful then
		return
	end
	for i, b in ipairs(bodies.list) do
		if b.obj and b.obj:get_pos() then
			b.obj:set_nametag_attributes({ text = " ", color = { a = 0, r = 255, g = 255, b = 255 },
				bgcolor = { a = 0, r = 0, g = 0, b = 0 } })
			-- The camera sits inside the bound body's head: hide that mesh (the Python renderer
			-- leaves the observing body out too). Other bodies stay visible.
			if i == bind_body + 1 and next(bound) ~= nil then
				b.obj:set_properties({ is_visible = false })
			end
		end
	end
end

local function sync_camera(st)
	local b = body_to_bind()
	local player = st.player
	if not b or not b.obj or not b.obj:get_pos() then
		return
	end
	if st.attached_to ~= b.obj then
		player:set_attach(b.obj, "", { x = 0, y = 0, z = 0 }, { x = 0, y = 0, z = 0 })
		st.attached_to = b.obj
	end
	-- Minetest: look_horizontal counter-clockwise from +Z (as body yaw); look_vertical > 0 is down.
	player:set_look_horizontal(b.yaw)
	player:set_look_vertical(-b.pitch)
end

local function bind(player)
	local name = player:get_player_name()
	player:hud_set_flags({ hotbar = false, healthbar = false, crosshair = false, wielditem = false,
		breathbar = false, minimap = false, minimap_radar = false, basic_debug = false })
	player:set_physics_override({ speed = 0, jump = 0, gravity = 0, sneak = false })
	player:set_properties({ eye_height = bodies.EYE })
	player:set_eye_offset({ x = 0, y = 0, z = 0 }, { x = 0, y = 0, z = 0 })
	if force_fov then
		player:set_fov(force_fov, false, 0)
	end
	if faithful then
		player:set_sun({ visible = false, sunrise_visible = false })
		player:set_moon({ visible = false })
		player:set_stars({ visible = false })
		player:set_clouds({ density = 0 })
		player:override_day_night_ratio(1)
	end
	local st = { player = player, huds = {}, bits = {} }
	for i = 0, 7 do
		st.huds[i + 1] = player:hud_add({
			hud_elem_type = "image",
			position = { x = i / 8, y = 1 - marker_frac },
			alignment = { x = 1, y = 1 },
			scale = { x = -12.5, y = -100 * marker_frac },
			text = SQUARE_OFF,
			z_index = 1000,
		})
		st.bits[i + 1] = 0
	end
	bound[name] = st
	sync_camera(st)
	set_marker(st, marker_value)
	apply_faithful_look()
	minetest.log("action", "[mtsandbox] " .. name .. " bound to body " .. bind_body .. "'s camera")
end

minetest.register_on_joinplayer(function(player)
	local name = player:get_player_name()
	if not allowed[name] then -- cannot happen (prejoin), but never leave a stranger in
		minetest.kick_player(name, "not a sandbox client name")
		return
	end
	minetest.set_player_privs(name, CLIENT_PRIVS)
	hide_player(player)
	if bind_names[name] then
		bind(player)
	end
end)

minetest.register_on_leaveplayer(function(player)
	bound[player:get_player_name()] = nil
end)

-- After every env step: cameras follow the body now (their move packets leave at once); the
-- marker changes in the NEXT engine step (below), i.e. after the engine has sent this step's
-- entity positions and node changes, so a frame showing marker N shows step N's world.
table.insert(api.after_step, function(step)
	if next(bound) == nil then
		return
	end
	for _, st in pairs(bound) do
		sync_camera(st)
	end
	marker_value = step % 256
	marker_pending = true
end)

table.insert(api.after_reset, function()
	if next(bound) == nil then
		return
	end
	for _, st in pairs(bound) do
		st.attached_to = nil -- bodies are new entities after a reset
		sync_camera(st)
	end
	apply_faithful_look()
	marker_value = 0
	marker_pending = true
end)

-- Registered before init.lua's serving globalstep, so it runs first in each engine step.
minetest.register_globalstep(function()
	if marker_pending then
		marker_pending = false
		for _, st in pairs(bound) do
			if st.player:get_pos() then
				set_marker(st, marker_value)
			end
		end
	end
end)
