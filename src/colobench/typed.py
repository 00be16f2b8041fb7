"""The two bases every typed model of colobench derives from.

`Frozen` is for what colobench decides (specs, plans, summaries): immutable, and an unknown key
is an error, so a typo in a YAML file or a field dropped by a refactor is caught where it enters.
`Stored` is for what a run directory holds (manifest.json, run.json): immutable too, but a key
this version does not know is kept, not refused, because the file may come from a newer or an
older colobench and a reader must not lose what it cannot interpret.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Stored(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")
