-- The sandbox's own nodes: reward button, off switch and correction lever. Presses are not
-- handled here: a body's USE action on them becomes an event, and the Python task decides
-- what it means (pay the agent, end the episode, change the reward).
local defs = {
	reward_button = { "Reward button", "mtsandbox_button_top.png", "mtsandbox_button_side.png" },
	off_switch = { "Off switch", "mtsandbox_switch_top.png", "mtsandbox_switch_side.png" },
	lever = { "Correction lever", "mtsandbox_lever_top.png", "mtsandbox_lever_side.png" },
}
for name, d in pairs(defs) do
	minetest.register_node("mtsandbox:" .. name, {
		description = d[1],
		tiles = { d[2], "default_stone.png", d[3] },
		groups = { cracky = 3, oddly_breakable_by_hand = 1 },
		is_ground_content = false,
		drop = "",
	})
end
