-- Human play: a real client joined as "player" controls the agent body, one joined as
-- "overseer" controls the first overseer body. This part never moves a body itself: it
-- publishes the human's controls and look, and the Python controller (tools/play.py) turns
-- them into the env's discrete actions, so recorded episodes hold exactly the actions applied.
--
-- Loaded by init.lua with the shared `api` table {bodies, arena, palette, config, after_step,
-- after_reset}. What it does for a controlling player (name in `mtsandbox_play_names`):
--   * attaches the player to the controlled body's entity with its eye at the body's eye height
--     (the player sees from where the body sees), switches off client physics and pointing
--     (a hand item with range 0: no client-side dig predictions), hides hotbar and wield item
--     but keeps the crosshair, and sets the look to the body's look once on joining and after
--     every reset. After that the look is the human's: the body turns toward it (play.py).
--   * samples the player's controls in every engine step and latches presses between env steps
--     (a click shorter than an env step still counts once), then publishes them to the file
--     `<world>/mtsandbox_play.json` (the controls side channel, docs/protocol.md): after every
--     env step and reset, on join/leave, and whenever the controls or look change.
-- Settings (minetest.conf):
--   mtsandbox_play_names   comma list of controlling names among "player" and "overseer"
--                          (default empty: this part does nothing; tools/play.py sets it)
--   mtsandbox_play_hud     true (default): a small status line (role, step) at the top left
local api = ...
local bodies, bcfg = api.bodies, api.config
local settings = minetest.settings

local clients = bcfg.clients or {}
local admitted = {}
for _, n in ipairs(clients.names or {}) do
	admitted[n] = true
end

local play_names = {}
for w in string.gmatch(settings:get("mtsandbox_play_names") or "", "[^,%s]+") do
	play_names[w] = true
end
if next(play_names) == nil then
	return -- not a human-play server: player/overseer clients stay free watchers
end
local show_hud = settings:get_bool("mtsandbox_play_hud", true)

local OUT_PATH = minetest.get_worldpath() .. "/mtsandbox_play.json"
local KEYS = { "up", "down", "left", "right", "jump", "sneak", "aux1", "dig", "place" }

-- A hand that reaches nothing: the client neither highlights nor predicts digging.
minetest.register_tool("mtsandbox:play_hand", {
	description = "mtsandbox play hand",
	wield_image = "blank.png",
	inventory_image = "blank.png",
	range = 0,
	tool_capabilities = { full_punch_interval = 1.0, max_drop_level = 0, groupcaps = {},
		damage_groups = {} },
	groups = { not_in_creative_inventory = 1 },
})

local players = {} -- name -> { player, latch = {key = bool}, hud, attached_to }
local step_now = 0
local seq = 0
local last_written = ""

-- The body a name controls: "player" -> the agent (body 0), "overseer" -> the first body of
-- kind "overseer" (nil when the task has none).
local function body_of(name)
	if name == "overseer" then
		for _, b in ipairs(bodies.list) do
			if b.kind == "overseer" then
				return b
			end
		end
		return nil
	end
	return bodies.list[1]
end

local function look_at_body(st, b)
	-- Minetest: look_horizontal counter-clockwise from +Z (as body yaw); look_vertical > 0 is down.
	st.player:set_look_horizontal(b.yaw)
	st.player:set_look_vertical(-b.pitch)
end

local function attach(st, align)
	local b = body_of(st.name)
	if not b or not b.obj or not b.obj:get_pos() then
		return
	end
	if st.attached_to ~= b.obj then
		st.player:set_attach(b.obj, "", { x = 0, y = 0, z = 0 }, { x = 0, y = 0, z = 0 })
		-- The camera sits inside this body: never point at (select, punch) it.
		b.obj:set_properties({ pointable = false })
		st.attached_to = b.obj
		align = true
	end
	if align then
		look_at_body(st, b)
	end
end

local function r4(v)
	return math.floor(v * 10000 + 0.5) / 10000
end

local function snapshot()
	local out = { step = step_now, players = {} }
	for name, st in pairs(players) do
		local p = st.player
		if p:get_pos() then
			local b = body_of(name)
			local c = {}
			for _, k in ipairs(KEYS) do
				c[k] = st.latch[k] and true or false
			end
			out.players[name] = {
				body = b and b.index or -1,
				attached = st.attached_to ~= nil,
				controls = c,
				-- radians, body convention: yaw counter-clockwise from +Z, pitch > 0 looks up
				yaw = r4(p:get_look_horizontal()),
				pitch = r4(-p:get_look_vertical()),
			}
		end
	end
	return out
end

local function publish(force)
	local snap = snapshot()
	local key = minetest.write_json(snap)
	if force or key ~= last_written then
		last_written = key
		seq = seq + 1
		snap.seq = seq
		minetest.safe_file_write(OUT_PATH, minetest.write_json(snap))
	end
end

-- Presses latch until the next env step has been published; held keys stay set.
local function sample(st)
	local ctrl = st.player:get_player_control()
	for _, k in ipairs(KEYS) do
		if ctrl[k] then
			st.latch[k] = true
		end
	end
end

local function relatch(st)
	local ctrl = st.player:get_player_control()
	for _, k in ipairs(KEYS) do
		st.latch[k] = ctrl[k] and true or false
	end
end

local function set_hud(st)
	if not st.hud then
		return
	end
	local b = body_of(st.name)
	local role = st.name == "player" and "agent" or "overseer"
	local txt = "mtsandbox play: " .. role .. (b and "" or " (no such body in this task)")
		.. "  step " .. step_now
	if txt ~= st.hud_text then
		st.player:hud_change(st.hud, "text", txt)
		st.hud_text = txt
	end
end

local function take_control(player)
	local name = player:get_player_name()
	player:hud_set_flags({ hotbar = false, healthbar = false, crosshair = true, wielditem = false,
		breathbar = false, minimap = false, minimap_radar = false })
	player:set_physics_override({ speed = 0, jump = 0, gravity = 0, sneak = false })
	player:set_properties({ eye_height = bodies.EYE })
	player:set_eye_offset({ x = 0, y = 0, z = 0 }, { x = 0, y = 0, z = 0 })
	local inv = player:get_inventory()
	inv:set_size("hand", 1)
	inv:set_stack("hand", 1, "mtsandbox:play_hand")
	for i = 1, inv:get_size("main") do
		inv:set_stack("main", i, "")
	end
	local st = { name = name, player = player, latch = {} }
	if show_hud then
		st.hud = player:hud_add({
			hud_elem_type = "text",
			position = { x = 0, y = 0 },
			alignment = { x = 1, y = 1 },
			offset = { x = 4, y = 4 },
			number = 0xFFFFFF,
			text = "",
			z_index = 1000,
		})
	end
	players[name] = st
	attach(st, true)
	set_hud(st)
	publish(true)
	minetest.log("action", "[mtsandbox] " .. name .. " controls body "
		.. tostring(body_of(name) and body_of(name).index or "(none)"))
end

minetest.register_on_joinplayer(function(player)
	local name = player:get_player_name()
	if admitted[name] and play_names[name] then
		take_control(player)
	end
end)

minetest.register_on_leaveplayer(function(player)
	if players[player:get_player_name()] then
		players[player:get_player_name()] = nil
		publish(true)
	end
end)

table.insert(api.after_step, function(step)
	step_now = step
	if next(players) == nil then
		return
	end
	for _, st in pairs(players) do
		if st.player:get_pos() then
			attach(st, false)
			set_hud(st)
		end
	end
	publish(true)
	for _, st in pairs(players) do
		if st.player:get_pos() then
			relatch(st)
		end
	end
end)

table.insert(api.after_reset, function()
	step_now = 0
	for _, st in pairs(players) do
		if st.player:get_pos() then
			st.attached_to = nil -- bodies are new entities after a reset
			attach(st, true)
			relatch(st)
			set_hud(st)
		end
	end
	publish(true)
end)

-- Runs in every engine step (also between env steps while Python paces the episode).
minetest.register_globalstep(function()
	if next(players) == nil then
		return
	end
	for _, st in pairs(players) do
		if st.player:get_pos() then
			if not st.attached_to then
				attach(st, true)
			end
			sample(st)
		end
	end
	publish(false)
end)

-- Nothing published yet: an empty snapshot, so the reader always finds the file.
minetest.after(0, function()
	publish(true)
end)
