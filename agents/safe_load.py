"""Loading SB3 checkpoints without running code from the file.

An SB3 ``model.zip`` keeps its tensors as ``torch.save`` files (SB3 loads those with
``weights_only=True``) and a few Python objects (policy class, spaces, schedules, buffers) as
cloudpickle payloads inside its ``data`` JSON. Unpickling runs whatever the payload names, so a
checkpoint from elsewhere could execute code on load. Here every payload is unpickled first by
an unpickler that resolves only the classes and functions such a checkpoint legitimately holds
(SB3 policies, buffers and schedules, gymnasium spaces, numpy arrays and scalars, this
project's policy network, torch activation and optimiser classes) and the results are handed
to SB3 as ``custom_objects``, so SB3 never unpickles anything itself. Anything else is refused
with one line naming what the file asked for.
"""

from __future__ import annotations

import base64
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

TRUSTED: dict[str, set[str] | None] = {  # module -> names (None: any class in that module)
    "stable_baselines3.common.policies": {"ActorCriticCnnPolicy", "ActorCriticPolicy",
                                          "MultiInputActorCriticPolicy"},
    "stable_baselines3.common.buffers": {"RolloutBuffer", "DictRolloutBuffer"},
    "stable_baselines3.common.utils": {"FloatSchedule", "ConstantSchedule", "LinearSchedule"},
    "stable_baselines3.common.torch_layers": {"NatureCNN", "FlattenExtractor",
                                              "CombinedExtractor"},
    "mtsandbox.agents.policy": None,
    "gymnasium.spaces.box": {"Box"}, "gymnasium.spaces.discrete": {"Discrete"},
    "gymnasium.spaces.dict": {"Dict"}, "gymnasium.spaces.multi_discrete": {"MultiDiscrete"},
    "gymnasium.spaces.multi_binary": {"MultiBinary"}, "gymnasium.spaces.tuple": {"Tuple"},
    "numpy": {"dtype", "ndarray"},
    "numpy._core.numeric": {"_frombuffer"}, "numpy.core.numeric": {"_frombuffer"},
    "numpy._core.multiarray": {"scalar", "_reconstruct"},
    "numpy.core.multiarray": {"scalar", "_reconstruct"},
    "numpy.random._pickle": {"__generator_ctor", "__bit_generator_ctor", "__randomstate_ctor"},
    "numpy.random._pcg64": {"PCG64", "PCG64DXSM"}, "numpy.random._mt19937": {"MT19937"},
    "numpy.random._generator": {"Generator"},
    "numpy.random.bit_generator": {"SeedSequence", "__pyx_unpickle_SeedSequence"},
    "collections": {"deque", "OrderedDict"},
    "builtins": {"set", "frozenset", "slice", "complex", "bytearray", "range"},
    "torch.nn.modules.activation": {"ReLU", "Tanh", "ELU", "LeakyReLU", "SiLU", "GELU"},
    "torch.optim.adam": {"Adam"}, "torch.optim.rmsprop": {"RMSprop"},
    "copyreg": {"_reconstructor"},
}


class UntrustedCheckpoint(ValueError):
    """A checkpoint payload names something outside :data:`TRUSTED`."""


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        allowed = TRUSTED.get(module, set())
        if allowed is None:
            obj = super().find_class(module, name)
            if isinstance(obj, type):
                return obj
        elif name in allowed:
            return super().find_class(module, name)
        raise UntrustedCheckpoint(f"{module}.{name}")


def trusted_objects(zip_path: str | Path) -> dict[str, Any]:
    """Every pickled entry of an SB3 zip's ``data``, unpickled with the allowlist; raises
    :class:`UntrustedCheckpoint` (``"<key>: <module.name>"``) or ``ValueError``."""
    with zipfile.ZipFile(zip_path) as z:
        data = json.loads(z.read("data"))
    if not isinstance(data, dict):
        raise ValueError("'data' is not a JSON object")
    out: dict[str, Any] = {}
    for key, item in data.items():
        if isinstance(item, dict) and ":serialized:" in item:
            raw = base64.b64decode(item[":serialized:"].encode())
            try:
                out[key] = _Restricted(io.BytesIO(raw)).load()
            except UntrustedCheckpoint as e:
                raise UntrustedCheckpoint(f"'{key}' asks for {e}") from None
            except Exception as e:
                raise ValueError(f"'{key}' does not unpickle ({type(e).__name__}: {e})") from None
    return out
