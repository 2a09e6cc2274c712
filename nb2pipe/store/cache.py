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
        "parameters": {name: _jsonable(parameters[name]) for name in sorted(comp.parameters) if name in parameters},
        "inputs": dict(sorted(inputs.items())),
        "env": env_fingerprint,
        "serializers": dict(sorted(serializer_versions.items())),
        "image": image_digest,
    }
    return sha256_text(canonical_json(payload))


def _jsonable(value):
    # Parameters are JSON types, but a float NaN/inf is legal in Python: keep it distinct.
    flag = nonfinite_flag(value)
    if flag is not None:
        return {"float": flag}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value
