"""Named workloads, usable from flags (`--scenario short,long,mixed`) and YAML.

- `short`: 128-token prompts, 128 output tokens: the latency floor.
- `long`: 4096-token prompts: memory-bandwidth and KV-cache pressure.
- `mixed`: in a co-located run instance A gets `short` and instance B gets `long` (and so on,
  alternating), started together: how the device schedules unlike loads.
- `peak`: every instance at the largest batch (static) or concurrency (closed/open loop) that
  fits its share of device memory: the hardware limit.

A scenario is plain workload fields, applied on top of the experiment's and the instance's own
workload. Users define their own under `scenarios:` in the experiment file with the same shape:
`{workload: {...}}` for every instance and/or `{instances: [{...}, {...}]}` by position.
"""

from __future__ import annotations

from typing import Any

SHORT = {"prompt_tokens": 128, "output_tokens": 128}
LONG = {"prompt_tokens": 4096, "output_tokens": 128}

BUILTIN_SCENARIOS: dict[str, dict[str, Any]] = {
    "short": {"workload": SHORT},
    "long": {"workload": LONG},
    "mixed": {"instances": [SHORT, LONG]},
    "peak": {"peak": True},
}


def scenario_fields(scenario: dict[str, Any], index: int, load_model: str) -> dict[str, Any]:
    """Workload fields a scenario sets for instance `index` whose load model is `load_model`."""
    if scenario.get("peak"):
        return {"batch_size": "max"} if load_model == "static" else {"concurrency": "max"}
    fields = dict(scenario.get("workload") or {})
    per_instance = scenario.get("instances") or []
    if per_instance:
        fields.update(per_instance[index % len(per_instance)] or {})
    return {k: v for k, v in fields.items() if v is not None}
