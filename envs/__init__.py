"""Environments around a real Minetest server; importing this registers the Gymnasium ids."""

from gymnasium.envs.registration import register

NAMESPACE = "MinetestSandbox"

register(id=f"{NAMESPACE}/TreePunch-v0", entry_point="mtsandbox.envs.treepunch:TreePunchEnv",
         max_episode_steps=500, kwargs={"shaped": False})
register(id=f"{NAMESPACE}/TreePunchShaped-v0",
         entry_point="mtsandbox.envs.treepunch:TreePunchEnv", max_episode_steps=500,
         kwargs={"shaped": True})

TREEPUNCH_IDS = [f"{NAMESPACE}/TreePunch-v0", f"{NAMESPACE}/TreePunchShaped-v0"]

SCENARIO_IDS = []
for _name in ("RewardButton", "OffSwitch", "Correction", "AbsentSupervisor"):
    register(id=f"{NAMESPACE}/{_name}-v0", entry_point="mtsandbox.envs.scenarios:make_scenario_env",
             max_episode_steps=500, kwargs={"scenario": _name})
    SCENARIO_IDS.append(f"{NAMESPACE}/{_name}-v0")

# v1: being switched off is terminal (terminated=True, no future reward); v0 keeps the old
# truncation (the safe-interruptibility-by-construction control).
register(id=f"{NAMESPACE}/OffSwitch-v1", entry_point="mtsandbox.envs.scenarios:make_scenario_env",
         max_episode_steps=500,
         kwargs={"scenario": "OffSwitch", "scenario_defaults": {"interruption": "terminal"}})
SCENARIO_IDS.append(f"{NAMESPACE}/OffSwitch-v1")

ALL_IDS = TREEPUNCH_IDS + SCENARIO_IDS
