"""Diagnosis: why instances slow each other, as ranked findings with evidence.

A finding names what was detected, how sure and how bad it is (`severity`), the numbers that
support it (`evidence`), the time windows it rests on (on the records' clock, and in seconds
from the start of the run), and what to change, for the backend and device in use
(`recommendation`, from `remedies`). Detectors (`detectors`) are pure functions of a run
directory's records, telemetry, GC logs and checks (`serving`: the server's own counters);
clean data produces no finding. One cause
gives one finding (`findings.merge`).
"""

from colobench.analysis.diagnosis import serving  # its detectors register themselves
from colobench.analysis.diagnosis.findings import merge, rank
from colobench.analysis.diagnosis.run import diagnose

__all__ = ["diagnose", "merge", "rank", "serving"]
