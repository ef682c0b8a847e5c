-- Validation of the controller's messages, before anything is changed: a reset config that
-- fails here leaves the arena, the bodies and the episode as they were, and the reply is one
-- error line naming the field. Ranges are what the arena and the physics can hold, not policy.
local arena, palette = ...

local validate = {}

local function num(v, lo, hi)
	return type(v) == "number" and v == v and v >= lo and v <= hi
end

local function int(v, lo, hi)
	return num(v, lo, hi) and math.floor(v) == v
end

local function array(v, max_n)
	if type(v) ~= "table" then
		return false
	end
	local n = 0
	for k in pairs(v) do
		if type(k) ~= "number" or k < 1 or math.floor(k) ~= k then
			return false
		end
		n = n + 1
	end
	return n == #v and n <= max_n
end

local NUMBERS = {
	dt = { 1e-4, 1 }, walk_speed = { 0, 100 }, jump_speed = { 0, 100 }, gravity = { 0, 1000 },
	max_fall_speed = { 0, 1000 }, reach = { 0, 64 }, look_distance = { 0, 256 },
}
local KNOWN = {
	seed = true, n_trees = true, n_apple_trees = true, tree_height = true, tree_spacing = true,
	allow_push = true, punches = true, use_removes = true, passable = true, bodies = true,
	objects = true,
}
for k in pairs(NUMBERS) do
	KNOWN[k] = true
end
local BODY_KEYS = {
	name = true, kind = true, pos = true, yaw = true, pitch = true, min_tree_dist = true,
	near = true, face_near = true, aim_near = true, margin = true,
}
local OBJECT_KEYS = { node = true, pos = true, min_tree_dist = true }
local MAX_BODIES, MAX_OBJECTS = 16, 16

local function pos_inside(p)
	return array(p, 3) and #p == 3 and num(p[1], -30000, 30000) and num(p[2], -30000, 30000)
		and num(p[3], -30000, 30000) and arena.inside(math.floor(p[1] + 0.5),
			math.floor(p[2] + 0.5), math.floor(p[3] + 0.5))
end

-- An optional {node name: true} map (use_removes, passable): nil when valid, else an error.
local function name_set(t, key)
	if t == nil then
		return nil
	end
	if type(t) ~= "table" then
		return key .. " must be an object {node name: true}"
	end
	for name, v in pairs(t) do
		if not palette.by_name[name] then
			return "unknown node '" .. tostring(name) .. "' in " .. key
		elseif v ~= true then
			return key .. "." .. tostring(name) .. " must be true"
		end
	end
	return nil
end

-- Returns nil when c (defaults filled in) is a valid reset config, else an error string.
function validate.reset(c)
	for k in pairs(c) do
		if not KNOWN[k] then
			return "unknown key '" .. tostring(k) .. "'"
		end
	end
	if not int(c.seed, -2 ^ 31, 2 ^ 32) then
		return "seed must be an integer"
	end
	if not int(c.n_trees, 0, 256) then
		return "n_trees must be an integer in [0, 256]"
	end
	if not int(c.n_apple_trees, 0, c.n_trees) then
		return "n_apple_trees must be an integer in [0, n_trees]"
	end
	local hmax = arena.sy - 4 -- trunk top and the leaf layer above it stay inside the crop
	local th = c.tree_height
	if not (array(th, 2) and #th == 2 and int(th[1], 1, hmax) and int(th[2], th[1], hmax)) then
		return "tree_height must be [min, max] integers with 1 <= min <= max <= " .. hmax
	end
	if not int(c.tree_spacing, 1, arena.sx) then
		return "tree_spacing must be an integer in [1, " .. arena.sx .. "]"
	end
	for k, r in pairs(NUMBERS) do
		if not num(c[k], r[1], r[2]) then
			return k .. " must be a number in [" .. r[1] .. ", " .. r[2] .. "]"
		end
	end
	if type(c.allow_push) ~= "boolean" then
		return "allow_push must be true or false"
	end
	if type(c.punches) ~= "table" then
		return "punches must be an object {node name: punches}"
	end
	for name, v in pairs(c.punches) do
		if not palette.by_name[name] then
			return "unknown node '" .. tostring(name) .. "' in punches"
		elseif not int(v, 1, 1000) then
			return "punches." .. name .. " must be an integer in [1, 1000]"
		end
	end
	for _, key in ipairs({ "use_removes", "passable" }) do
		local bad = name_set(c[key], key)
		if bad then
			return bad
		end
	end
	if not array(c.objects, MAX_OBJECTS) then
		return "objects must be a list of at most " .. MAX_OBJECTS
	end
	for i, o in ipairs(c.objects) do
		local w = "objects[" .. i .. "]"
		if type(o) ~= "table" then
			return w .. " must be an object"
		end
		for k in pairs(o) do
			if not OBJECT_KEYS[k] then
				return w .. ": unknown key '" .. tostring(k) .. "'"
			end
		end
		if type(o.node) ~= "string" or not palette.by_name[o.node] then
			return w .. ": unknown object node '" .. tostring(o.node) .. "'"
		end
		if o.pos ~= nil and not (pos_inside(o.pos) and int(o.pos[1], -30000, 30000)
				and int(o.pos[2], -30000, 30000) and int(o.pos[3], -30000, 30000)) then
			return w .. ".pos must be integer [x, y, z] inside the arena"
		end
		if o.min_tree_dist ~= nil and not num(o.min_tree_dist, 0, 64) then
			return w .. ".min_tree_dist must be a number in [0, 64]"
		end
	end
	if not array(c.bodies, MAX_BODIES) or #c.bodies < 1 then
		return "bodies must be a list of 1 to " .. MAX_BODIES
	end
	for i, b in ipairs(c.bodies) do
		local w = "bodies[" .. i .. "]"
		if type(b) ~= "table" then
			return w .. " must be an object"
		end
		for k in pairs(b) do
			if not BODY_KEYS[k] then
				return w .. ": unknown key '" .. tostring(k) .. "'"
			end
		end
		if b.name ~= nil and (type(b.name) ~= "string" or #b.name > 64) then
			return w .. ".name must be a string of at most 64 characters"
		end
		if b.kind ~= nil and b.kind ~= "agent" and b.kind ~= "overseer" then
			return w .. ".kind must be 'agent' or 'overseer'"
		end
		if b.pos ~= nil and not pos_inside(b.pos) then
			return w .. ".pos must be [x, y, z] inside the arena"
		end
		for _, k in ipairs({ "yaw", "pitch" }) do
			if b[k] ~= nil and not num(b[k], -1000, 1000) then
				return w .. "." .. k .. " must be a number (radians)"
			end
		end
		if b.min_tree_dist ~= nil and not num(b.min_tree_dist, 0, 64) then
			return w .. ".min_tree_dist must be a number in [0, 64]"
		end
		if b.margin ~= nil and not int(b.margin, 0, math.floor(arena.sx / 2) - 1) then
			return w .. ".margin must be an integer in [0, " .. (math.floor(arena.sx / 2) - 1) .. "]"
		end
		if b.near ~= nil then
			local n = b.near
			if not (array(n, 3) and #n == 3 and int(n[1], 1, #c.objects) and num(n[2], 0, 64)
					and num(n[3], n[2], 64)) then
				return w .. ".near must be [object index (1.." .. #c.objects .. "), min, max]"
			end
		end
		if b.face_near ~= nil and not int(b.face_near, 0, 180) then
			return w .. ".face_near must be an integer in [0, 180] (degrees)"
		end
		if b.aim_near ~= nil and type(b.aim_near) ~= "boolean" then
			return w .. ".aim_near must be true or false"
		end
	end
	return nil
end

-- Options message: {yield_ms?, sync_every_step?}; nil or an error string.
function validate.options(o)
	if type(o) ~= "table" then
		return "body is not a JSON object"
	end
	for k, v in pairs(o) do
		if k == "yield_ms" then
			if not int(v, 0, 10000) then
				return "yield_ms must be an integer in [0, 10000]"
			end
		elseif k == "sync_every_step" then
			if type(v) ~= "boolean" then
				return "sync_every_step must be true or false"
			end
		else
			return "unknown key '" .. tostring(k) .. "'"
		end
	end
	return nil
end

return validate
