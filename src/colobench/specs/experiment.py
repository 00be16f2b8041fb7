"""The experiment: what the user asks for, validated once, with no side effects.

Vocabulary (see DESIGN.md):

- an **instance** is one model served by one backend on one device (`InstanceSpec`);
- a **workload** is what an instance is asked to do (`WorkloadSpec`);
- an **experiment** is what the user asks for (`ExperimentSpec`): its instances, each run alone
  (the *solo* baselines) and then all together (the *co-located* run), each repeated, over the
  points of its sweep axes.

Validation only checks shapes and values. It never looks at the filesystem, the environment or a
device: whether `cuda:3` exists or a checkpoint folder is there is decided by `colobench.plan`
just before anything runs, so validation is pure and testable anywhere.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from colobench.specs.axes import SERVER_PATH, lift_inline_axes, normalise_axes
from colobench.specs.knobs import model_label
from colobench.specs.models import (AdviceSpec, ExperimentKnobs, InstanceSpec, LaunchSpec, LogRuleSpec, ScenarioSpec,
                                    TelemetrySpec, WorkloadSpec)
from colobench.specs.servers import ServerSpec, check_server_names
from colobench.workload.scenarios import BUILTIN_SCENARIOS, scenario_fields


class ExperimentSpec(ExperimentKnobs):
    """What the user asks for: instances, a workload, a scenario, sweep axes, repetitions.

    `sweep` maps axis paths to lists of values; each combination is one *point* of the
    experiment (see `colobench.sweep`). Lists written in place of a value
    (`batch_size: [1, 2, 4, 8]`) become axes too.
    """

    instances: list[InstanceSpec] = Field(min_length=1)
    workload: WorkloadSpec = WorkloadSpec()
    scenarios: dict[str, ScenarioSpec] = Field(default_factory=dict, description="user-defined scenarios")
    sweep: dict[str, list[Any]] = Field(default_factory=dict, description="axis path -> values")
    solo_baselines: bool = Field(True, description="run each instance alone before the co-located run")
    colocated: bool = Field(True, description="run the instances together (false: solo baselines only, as "
                            "`colobench characterize` runs them under each pressure probe)")
    telemetry: TelemetrySpec = TelemetrySpec()
    launch: LaunchSpec = LaunchSpec()
    log_rules: list[LogRuleSpec] = Field(default_factory=list, description="extra log rules: {pattern, cause, "
                                         "severity, remedy, name}, scanned with the built-in ones")
    advice: AdviceSpec = AdviceSpec()
    servers: list[ServerSpec] = Field(default_factory=list, description="servers colobench starts for endpoint "
                                      "instances that name them (`server: NAME`)")
    keep_servers: bool = Field(False, description="keep managed servers up across runs (stopped at the end); "
                               "default: started and stopped around each group of runs")

    @model_validator(mode="before")
    @classmethod
    def _lift_inline_lists(cls, data: Any) -> Any:
        return lift_inline_axes(data) if isinstance(data, dict) else data

    @field_validator("sweep")
    @classmethod
    def _sweep_axes(cls, value: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return normalise_axes(value)

    @model_validator(mode="after")
    def _consistent(self) -> "ExperimentSpec":
        names = [i.name for i in self.instances if i.name is not None]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"instance names must be unique; repeated: {', '.join(dupes)}")
        check_server_names(self.servers, [i.server for i in self.instances])
        for path in self.sweep:
            server = SERVER_PATH.match(path)
            if server and server.group(1) not in {s.name for s in self.servers}:
                raise ValueError(f"sweep axis {path!r}: no server named {server.group(1)!r} under servers:")
        if not self.colocated and not self.solo_baselines:
            raise ValueError("colocated: false needs solo_baselines (there would be nothing to run)")
        known = self.instance_names()
        for inst in self.instances:
            if inst.reference is not None and inst.reference not in known:
                raise ValueError(f"reference {inst.reference!r} is not an instance ({', '.join(known)})")
        scenario_names = [self.scenario] if self.scenario else []
        scenario_names += [v for v in self.sweep.get("scenario", []) if isinstance(v, str)]
        for name in scenario_names:
            if self.scenario_definition(name) is None:
                known = ", ".join([*BUILTIN_SCENARIOS, *self.scenarios])
                raise ValueError(f"unknown scenario {name!r}; known: {known}")
        if not self.sweep:  # a sweep validates each point when it is expanded
            for k in range(len(self.instances)):
                self.workload_for(k)
        return self

    def scenario_definition(self, name: str) -> dict[str, Any] | None:
        if name in self.scenarios:
            return self.scenarios[name].model_dump(exclude_none=True)
        return BUILTIN_SCENARIOS.get(name)

    def instance_names(self) -> list[str]:
        """Names of the instances, derived from the model where not given (`tiny-1`, `tiny-2`);
        a derived name never takes one given explicitly (`fake-model-1` given and two `fake-model`
        instances derived: `fake-model-2`, `fake-model-3`), so no two instances share a name."""
        bases = [i.name or model_label(i.model) for i in self.instances]
        explicit = {i.name for i in self.instances if i.name is not None}
        out: list[str] = []
        for k, (inst, base) in enumerate(zip(self.instances, bases)):
            if inst.name is None and (bases.count(base) > 1 or base in explicit):
                n = bases[:k + 1].count(base)
                while f"{base}-{n}" in explicit or f"{base}-{n}" in out:
                    n += 1
                base = f"{base}-{n}"
            out.append(base)
        return out

    def workload_for(self, index: int) -> WorkloadSpec:
        """Instance `index`'s workload: the experiment's, then the instance's own fields, then the
        scenario's. Raises ValueError naming the instance if the combination is invalid."""
        fields = self.workload.model_dump(exclude_unset=True)
        override = self.instances[index].workload
        if override is not None:
            fields.update(override.model_dump(exclude_unset=True, exclude_none=True))
        try:
            merged = WorkloadSpec.model_validate(fields)
            if self.scenario:
                fields.update(scenario_fields(self.scenario_definition(self.scenario) or {}, index, merged.load_model))
                merged = WorkloadSpec.model_validate(fields)
        except ValidationError as err:
            first = err.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"instances[{index}].workload{'.' + where if where else ''}: {message}") from None
        return merged
