-- The task arena: a box of voxels (palette indices, C-order [x][y][z] like the Python side)
-- built deterministically from a seed with PcgRandom, mirrored into the real map so clients
-- see it. The Lua copy is authoritative for physics; the map copy is what watchers see.
local ffi, palette = ...

local arena = {}

-- Static geometry, set once by arena.init from the bridge config.
function arena.init(cfg)
	arena.sx, arena.sy, arena.sz = cfg.size, cfg.height, cfg.size
	arena.ground_y = cfg.ground_y or 0
	arena.ox = -math.floor(cfg.size / 2)
	arena.oy = arena.ground_y - 2
	arena.oz = -math.floor(cfg.size / 2)
	arena.n = arena.sx * arena.sy * arena.sz
	arena.vox = ffi.new("uint8_t[?]", arena.n)
	arena.pmin = { x = arena.ox, y = arena.oy, z = arena.oz }
	arena.pmax = {
		x = arena.ox + arena.sx - 1,
		y = arena.oy + arena.sy - 1,
		z = arena.oz + arena.sz - 1,
	}
	arena.cids = {}
	for idx, name in pairs(palette.node_of) do
		arena.cids[idx] = minetest.get_content_id(name)
	end
	arena.trees = {}
	arena.tree_of_column = {}
end

local function index(x, y, z)
	return ((x - arena.ox) * arena.sy + (y - arena.oy)) * arena.sz + (z - arena.oz)
end
arena.index = index

function arena.inside(x, y, z)
	return x >= arena.ox and x < arena.ox + arena.sx and y >= arena.oy and y < arena.oy + arena.sy
		and z >= arena.oz and z < arena.oz + arena.sz
end

-- Palette index at integer node position; flat ground outside the box.
function arena.get(x, y, z)
	if x >= arena.ox and x < arena.ox + arena.sx and y >= arena.oy and y < arena.oy + arena.sy
		and z >= arena.oz and z < arena.oz + arena.sz then
		return arena.vox[((x - arena.ox) * arena.sy + (y - arena.oy)) * arena.sz + (z - arena.oz)]
	end
	if y <= arena.ground_y then
		return palette.GRASS
	end
	return 0
end

-- Change one node in both copies and remember it for this step's delta.
function arena.set(x, y, z, p, changes)
	arena.vox[index(x, y, z)] = p
	-- swap_node runs no on_destruct/after_destruct, so no leaf decay or drops start.
	minetest.swap_node({ x = x, y = y, z = z }, { name = palette.node_of[p] })
	if changes then
		changes[#changes + 1] = { x, y, z, p }
	end
end

local function fill(p)
	ffi.fill(arena.vox, arena.n, p)
end

local function put(x, y, z, p)
	if arena.inside(x, y, z) then
		arena.vox[index(x, y, z)] = p
	end
end

local function place_tree(rng, x, z, kind, cfg)
	local g = arena.ground_y
	local hmin, hmax = cfg.tree_height[1], cfg.tree_height[2]
	local h = rng:next(hmin, hmax)
	local trunk = kind == "apple" and palette.APPLE_TREE or palette.TREE
	arena.vox[index(x, g, z)] = palette.DIRT
	local top = g + h
	for dy = top - 1, top + 1 do
		local r = (dy == top + 1) and 1 or 2
		for dx = -r, r do
			for dz = -r, r do
				local corner = math.abs(dx) == r and math.abs(dz) == r
				if not corner or rng:next(0, 1) == 1 then
					local leaf = palette.LEAVES
					if kind == "apple" and rng:next(0, 9) == 0 then
						leaf = palette.APPLE
					end
					put(x + dx, dy, z + dz, leaf)
				end
			end
		end
	end
	for y = g + 1, top do
		arena.vox[index(x, y, z)] = trunk
	end
	local tree = { id = #arena.trees + 1, x = x, z = z, base = g + 1, top = top, kind = kind }
	arena.trees[#arena.trees + 1] = tree
	arena.tree_of_column[x * 65536 + z] = tree
	return tree
end

-- Build the arena for an episode; returns nothing, fills arena.vox/trees and the map.
function arena.build(cfg, rng)
	local g = arena.ground_y
	fill(0)
	for x = arena.ox, arena.ox + arena.sx - 1 do
		for z = arena.oz, arena.oz + arena.sz - 1 do
			for y = arena.oy, g - 1 do
				arena.vox[index(x, y, z)] = palette.DIRT
			end
			arena.vox[index(x, g, z)] = palette.GRASS
		end
	end
	arena.trees = {}
	arena.tree_of_column = {}
	local margin = 3
	local placed = {}
	local n_apple = cfg.n_apple_trees or 0
	local attempts = 0
	while #placed < cfg.n_trees and attempts < 2000 do
		attempts = attempts + 1
		local x = rng:next(arena.ox + margin, arena.ox + arena.sx - 1 - margin)
		local z = rng:next(arena.oz + margin, arena.oz + arena.sz - 1 - margin)
		local ok = true
		for _, t in ipairs(placed) do
			if math.max(math.abs(t.x - x), math.abs(t.z - z)) < cfg.tree_spacing then
				ok = false
				break
			end
		end
		if ok then
			local kind = (#placed < n_apple) and "apple" or "tree"
			placed[#placed + 1] = place_tree(rng, x, z, kind, cfg)
		end
	end
end

-- Random free ground cell at least min_tree_dist (horizontal) from any trunk and away from
-- cells listed in avoid; returns feet position x, y, z (node centre, standing on the ground).
function arena.free_spot(rng, min_tree_dist, avoid, margin, accept)
	margin = margin or 2
	for _ = 1, 2000 do
		local x = rng:next(arena.ox + margin, arena.ox + arena.sx - 1 - margin)
		local z = rng:next(arena.oz + margin, arena.oz + arena.sz - 1 - margin)
		local ok = arena.get(x, arena.ground_y + 1, z) == 0 and arena.get(x, arena.ground_y + 2, z) == 0
			and (accept == nil or accept(x, z))
		if ok then
			for _, t in ipairs(arena.trees) do
				local d = math.sqrt((t.x - x) ^ 2 + (t.z - z) ^ 2)
				if d < min_tree_dist then
					ok = false
					break
				end
			end
		end
		if ok and avoid then
			for _, a in ipairs(avoid) do
				if math.abs(a.x - x) + math.abs(a.z - z) < 2 then
					ok = false
					break
				end
			end
		end
		if ok then
			return x, arena.ground_y + 0.5, z
		end
	end
	error("arena: no free spot found (arena too crowded)")
end

-- Mirror the Lua voxels into the real map (full light, no lighting pass: watchers only).
-- One VoxelManip for the server's life: each one holds a C++ copy of the blocks that Lua's
-- collector does not see, so a new one per reset grew the server by ~245 KB per reset
-- (measured: 57 -> 303 MB over 1,000 resets; with this one, flat).
local vm_data = {}
local vm
function arena.write_map()
	vm = vm or minetest.get_voxel_manip()
	local e1, e2 = vm:read_from_map(arena.pmin, arena.pmax)
	local area = VoxelArea:new({ MinEdge = e1, MaxEdge = e2 })
	vm:get_data(vm_data)
	local cids = arena.cids
	local vox = arena.vox
	local i = 0
	for x = arena.ox, arena.ox + arena.sx - 1 do
		for y = arena.oy, arena.oy + arena.sy - 1 do
			local vi = area:index(x, y, arena.oz)
			local zs = area.zstride
			for _ = 1, arena.sz do
				vm_data[vi] = cids[vox[i]]
				vi = vi + zs
				i = i + 1
			end
		end
	end
	vm:set_data(vm_data)
	vm:set_lighting({ day = 15, night = 0 })
	vm:write_to_map(false)
end

return arena
