"""`colobench profile`: a short profiler window of one instance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from colobench import api
from colobench.cli.app import app, stdout
from colobench.cli.flags import build_spec, for_flags, knobs_named, with_knob_options
from colobench.errors import ColobenchError, SpecError
from colobench.report.profile import print_profile
from colobench.specs import Knob

@app.command()
@with_knob_options(knobs_named("device", "dtype", "batch_size", "prompt_tokens", "output_tokens", "graph",
                               "quantization", "attn_implementation", "cache_dir"))
def profile(
    model: str = typer.Option(..., "--model", "-m", help="preset name or HF checkpoint folder", metavar="MODEL"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for trace.json and profile.json", metavar="DIR"),
    knobs: dict[Knob, Any] | None = None,
) -> None:
    """Profile a short window: Chrome trace, device idle share, launch overhead, top operators,
    and the async-timing trap (host clock vs synchronised time)."""
    knobs = dict(knobs or {})
    if not any(k.name == "output_tokens" for k in knobs):
        knobs[knobs_named("output_tokens")[0]] = "16"  # 16 decode steps are plenty for a trace
    spec, source = build_spec(None, [model], [], knobs)
    if spec.sweep:
        raise ColobenchError("profile takes one value per flag, not a list")
    try:
        result = api.profile(spec, out, source)
    except SpecError as exc:
        raise for_flags(exc) from None
    print_profile(result, stdout())
    print(api.dump_json_line({k: v for k, v in result.items()}))
