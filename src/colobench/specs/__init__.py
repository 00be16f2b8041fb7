"""Typed, frozen configuration: what the user asks for, validated once, with no side effects.

- `knobs`: one declaration per knob (flag, help, sweep axis, id abbreviation, where it applies);
- `models`: the workload, instance, endpoint, telemetry and launch specs;
- `axes`: sweep-axis paths, aliases, inline lists and point-id parts, from the knob table;
- `experiment`: `ExperimentSpec`, the whole request;
- `loading`: YAML and plain data in, one-line `SpecError`s out.
"""

from colobench.specs.axes import QUALITY_AXES, axis_label, canonical_path, id_part, quality_reference
from colobench.specs.experiment import ExperimentSpec
from colobench.specs.knobs import Knob, model_label
from colobench.specs.loading import (experiment_from_dict, load_experiment_yaml, redact,
                                     validation_error_to_spec_error)
from colobench.specs.models import (ALL_KNOBS, ENDPOINT_FIELDS, ENDPOINT_KNOBS, EXPERIMENT_KNOBS, INSTANCE_KNOBS,
                                    LAUNCH_KNOBS, WORKLOAD_KNOBS, EndpointConfig, FakeTimings, InstanceKnobs,
                                    InstanceSpec, LaunchSpec, LengthDist, PromptSource, RayPlacement, TelemetrySpec,
                                    WorkloadSpec, length_upper_bound)

__all__ = ["ALL_KNOBS", "ENDPOINT_FIELDS", "ENDPOINT_KNOBS", "EXPERIMENT_KNOBS", "INSTANCE_KNOBS", "LAUNCH_KNOBS",
           "QUALITY_AXES", "WORKLOAD_KNOBS", "EndpointConfig", "ExperimentSpec", "FakeTimings",
           "InstanceKnobs", "InstanceSpec", "Knob", "LaunchSpec", "LengthDist", "PromptSource", "RayPlacement",
           "TelemetrySpec", "WorkloadSpec", "axis_label", "canonical_path", "experiment_from_dict", "id_part",
           "quality_reference",
           "length_upper_bound", "load_experiment_yaml", "model_label", "redact", "validation_error_to_spec_error"]
