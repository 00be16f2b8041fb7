"""Managed servers: serving stacks colobench starts and stops itself.

An endpoint instance (`backend: openai`) talks to an OpenAI-compatible server. Either the user
started it and gives `base_url`, or the experiment declares it under `servers:` and the instance
names it (`server: vllm-a`); colobench then starts the command before the runs that need it,
waits until it answers, points the instance at `http://127.0.0.1:<port>/v1` and samples the
server's process tree, and stops it afterwards (`colobench.launch.servers` does all of that).

```yaml
servers:
  - name: vllm-a
    command: [vllm, serve, meta-llama/Llama-3.2-1B, --port, "{port}"]   # {port}: a free port colobench picks
    device: cuda:0              # CUDA_VISIBLE_DEVICES=0 (ASCEND_RT_VISIBLE_DEVICES for npu:N; cpu hides every card)
    cpu_affinity: [0, 1, 2, 3]  # the server's whole process tree pinned to these cores
    args: {gpu_memory_utilization: 0.45}   # appended as --gpu-memory-utilization 0.45 (a list: a sweep axis)
    ready_path: /v1/models      # ready when GET http://127.0.0.1:<port><ready_path> answers 200
    ready_timeout_s: 600
instances:
  - {name: a, backend: openai, server: vllm-a, model: meta-llama/Llama-3.2-1B}
```

This module only checks shapes and values (pure, like every spec); whether the program exists,
the device is there or the port is free is checked by the launcher before anything runs.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator, model_validator

from colobench.specs.models import MANAGED_BASE_URL, MAX_TIMEOUT_S, SpecModel, checked_name, env_names

PORT = "{port}"  # replaced in every command element, and in a managed instance's URLs
assert PORT in MANAGED_BASE_URL
SERVER_DEVICE = re.compile(r"^(cpu|(cuda|npu):\d+)$")
MAX_CORE = 65_535
FLAG_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


class ServerSpec(SpecModel):
    """One serving process colobench starts: its command, environment, device, cores, readiness."""

    name: str = Field(description="what instances call it (`server: NAME`) and its log's name")
    command: list[str] = Field(min_length=1, description="the program and its arguments; '{port}' in any of them "
                               "becomes the server's port")
    args: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description="flags appended to the command, each `--key-with-dashes VALUE` "
        "(`gpu_memory_utilization: 0.3` is `--gpu-memory-utilization 0.3`; true: the bare flag; false: left out); "
        "a sweep axis as servers.NAME.args.KEY")
    env: dict[str, str] = Field(default_factory=dict, description="added to colobench's environment (wins over "
                                "what `device` sets)")
    device: str | None = Field(None, description="cpu, cuda:N or npu:N: the only device the server sees")
    cpu_affinity: list[int] | None = Field(None, description="cores the server's whole process tree is pinned to")
    ready_path: str = Field("/v1/models", description="ready when GET of this path answers 200")
    ready_timeout_s: float = Field(600.0, gt=0, le=MAX_TIMEOUT_S, description="give up (and stop it) after this long")
    port: int | None = Field(None, ge=1, le=65_535, description="a fixed port (default: a free one is picked)")
    secret_env: list[str] = Field(default_factory=list, description="names of `env` variables whose values are "
                                  "secrets (besides those named like credentials: *_KEY, *_TOKEN)")

    @field_validator("name")
    @classmethod
    def _name_format(cls, value: str) -> str:
        return checked_name(value)

    @field_validator("command")
    @classmethod
    def _program(cls, value: list[str]) -> list[str]:
        if not value[0].strip():
            raise ValueError("the first element must be the program to run")
        return value

    @field_validator("args")
    @classmethod
    def _flag_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        for key in value:
            if not FLAG_NAME.match(key):
                raise ValueError(f"{key!r} is not a flag name (letters, digits, '_' and '-'; no leading '-')")
        return value

    def full_command(self) -> list[str]:
        """The command with its `args` rendered as flags after it."""
        flags: list[str] = []
        for key, value in self.args.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                flags.append(flag)
            elif value is not False:
                flags += [flag, str(value)]
        return [*self.command, *flags]

    @field_validator("env", mode="before")
    @classmethod
    def _env_names(cls, value: Any) -> Any:
        return env_names(value) if isinstance(value, dict) else value

    @field_validator("device")
    @classmethod
    def _device_format(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().lower()
        if not SERVER_DEVICE.match(value):
            raise ValueError("device must be cpu, cuda:N or npu:N")
        return value

    @field_validator("cpu_affinity")
    @classmethod
    def _cores(cls, value: list[int] | None) -> list[int] | None:
        if value is None:
            return None
        if not value:
            raise ValueError("give at least one core, or null for no pinning")
        if any(c < 0 or c > MAX_CORE for c in value):
            raise ValueError(f"core ids are 0..{MAX_CORE}")
        return sorted(set(value))

    @field_validator("ready_path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(ch.isspace() for ch in value):
            raise ValueError("ready_path is a URL path starting with / (e.g. /v1/models or /health)")
        return value

    @model_validator(mode="after")
    def _port_known(self) -> "ServerSpec":
        if self.port is None and not any(PORT in part for part in self.command):
            raise ValueError("command has no {port}: put {port} where the server takes its port (--port {port}), "
                             "or give port")
        return self


def check_server_names(servers: list[ServerSpec], server_of: list[str | None]) -> None:
    """Server names unique, and every instance's `server` (by position) one of them; raises
    ValueError naming the field and the value."""
    names = [s.name for s in servers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"server names must be unique; repeated: {', '.join(dupes)}")
    for k, name in enumerate(server_of):
        if name is not None and name not in names:
            known = f"servers: {', '.join(names)}" if names else "the experiment declares no servers:"
            raise ValueError(f"instances[{k}].server: no server named {name!r} ({known})")
