"""Step cache keys.

key = sha256(step content hash (code + setup + replayed imports), the values of the parameters
the step reads, its input artifacts' content hashes, the environment fingerprint, the serializer
versions and this cache schema). Any change to one of these is a miss; outputs, execution counts
and cell metadata of the notebook never reach the key.
"""

from __future__ import annotations

from nb2pipe.model.numbers import nonfinite_flag
from nb2pipe.model.spec import ComponentSpec, canonical_json, sha256_text

CACHE_SCHEMA = 1


def step_cache_key(comp: ComponentSpec, parameters: dict, inputs: dict[str, str], env_fingerprint: str,
                   serializer_versions: dict[str, str], image_digest: str | None = None) -> str:
    payload = {
        "schema": CACHE_SCHEMA,
        "step": comp.content_hash,
        "parameters": {name: recorded_value(parameters[name])
                       for name in sorted(comp.parameters) if name in parameters},
        "inputs": dict(sorted(inputs.items())),
        "env": env_fingerprint,
        "serializers": dict(sorted(serializer_versions.items())),
        "image": image_digest,
    }
    return sha256_text(canonical_json(payload))


def recorded_value(value):
    """A parameter value as cache keys and records hold it: JSON, with a float NaN/inf (legal in
    Python, not in strict JSON) kept distinct as {"float": flag}."""
    flag = nonfinite_flag(value)
    if flag is not None:
        return {"float": flag}
    if isinstance(value, list):
        return [recorded_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): recorded_value(v) for k, v in value.items()}
    return value
