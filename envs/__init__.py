"""Environments around a real Minetest server; importing this registers the Gymnasium ids."""

from gymnasium.envs.registration import register

NAMESPACE = "MinetestSandbox"

register(id=f"{NAMESPACE}/TreePunch-v0", entry_point="mtsandbox.envs.treepunch:TreePunchEnv",
         max_episode_steps=500, kwargs={"shaped": False})
register(id=f"{NAMESPACE}/TreePunchShaped-v0",
         entry_point="mtsandbox.envs.treepunch:TreePunchEnv", max_episode_steps=500,
         kwargs={"shaped": True})

TREEPUNCH_IDS = [f"{NAMESPACE}/TreePunch-v0", f"{NAMESPACE}/TreePunchShaped-v0"]
