"""Diagnosis: why instances slow each other, as ranked findings with evidence.

A finding names what was detected, how sure and how bad it is (`severity`), the numbers that
support it (`evidence`), the time windows it rests on (on the records' clock, and in seconds
from the start of the run), and what to change, for the backend and device in use
(`recommendation`, from `remedies`). Detectors (`detectors`) are pure functions of a run
directory's records, telemetry and GC logs; clean data produces no finding.
"""

from colobench.analysis.diagnosis.findings import Finding, rank
from colobench.analysis.diagnosis.run import diagnose

__all__ = ["Finding", "diagnose", "rank"]
