"""The metric registry: every figure colobench reports about an instance in a phase, named once.

A `Metric` is a per-request quantity (TTFT, TPOT, ITL, E2E latency, ...) given by one formula in
`analysis.metrics`. From its entry come its summary keys (vLLM's names: `mean_ttft_ms`,
`median_ttft_ms`, `std_ttft_ms`, `p90_ttft_ms`, `p99_ttft_ms`), its distribution
(`distributions.ttft_ms`), its per-repetition values (`repetition_stats.p99_ttft_ms`: the unit of
every interval), and where it is shown: the console's per-instance table, the HTML metrics
table, the CSV and markdown exports, `colobench compare`. The models of `analysis.model` are
generated from this list, so adding a metric is one entry here plus its formula.

A `Figure` is a phase-level number computed elsewhere (a rate over the measured windows, peak
memory, the bandwidth fraction, energy per token): the registry says how it is labelled, which
way is better, which per-repetition values give its interval, and which tables show it.

The order of `COLUMNS` is the order of every table's columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

from colobench.analysis import metrics as m
from colobench.records import RequestRecord

# the statistics of every metric in the summary, and the Distribution attribute each one is
STATS = {"mean": "mean", "median": "p50", "std": "std", "p90": "p90", "p99": "p99"}
# per-repetition statistics (their keys use the Distribution's names: p50_ttft_ms)
REPETITION_STATS = ("mean", "p50", "p99")
TABLES = ("console", "html", "csv", "markdown", "compare")


@dataclass(frozen=True)
class Metric:
    """A per-request metric. `formula` gives one value per request (or, `pooled`, a list: every
    inter-token gap), in nanoseconds for latencies; `scale` converts to `unit`."""

    name: str  # the key stem: ttft -> mean_ttft_ms, distributions.ttft_ms
    label: str
    unit: str
    formula: Callable[[RequestRecord], Any]
    doc: str  # the formula in words, its unit and edge cases (shown in docs and --help)
    scale: float = 1e-6  # ns -> ms
    pooled: bool = False
    higher_is_better: bool = False
    core: bool = False  # in every summary colobench ever wrote (its distribution is never missing)
    only_if: Callable[[list[RequestRecord]], bool] | None = None  # computed for some phases only
    repetition: tuple[str, ...] = REPETITION_STATS  # per-repetition values kept for intervals
    csv: tuple[str, ...] = ("mean", "median", "p99")
    markdown: tuple[str, ...] = ("mean", "p99")
    compare: tuple[str, ...] = ("mean", "p99")
    console: bool = True
    html: bool = True

    def key(self, stat: str) -> str:
        """The summary key of a statistic (`mean`, `median`, `p99`; `p50` is `median`)."""
        return f"{'median' if stat == 'p50' else stat}_{self.name}_{self.unit}"

    def repetition_key(self, stat: str) -> str:
        return f"{stat}_{self.name}_{self.unit}"

    @property
    def distribution_key(self) -> str:
        return f"{self.name}_{self.unit}"

    @property
    def title(self) -> str:
        return f"{self.label} {self.unit}"

    def applies(self, records: list[RequestRecord]) -> bool:
        return self.only_if is None or self.only_if(records)

    def values(self, records: Iterable[RequestRecord]) -> list[Any]:
        """The raw values (unscaled) of some measured records."""
        if self.pooled:
            return [v for r in records for v in self.formula(r)]
        return [v for r in records if (v := self.formula(r)) is not None]


@dataclass(frozen=True)
class Figure:
    """A phase-level figure computed elsewhere, by its PhaseMetrics key."""

    key: str
    label: str
    unit: str = ""
    higher_is_better: bool = False
    repetition_key: str | None = None  # per-repetition values: an interval in compare; None: a single figure
    distribution_key: str | None = None  # shown as a row of the console table (mean ± std over repetitions)
    tables: tuple[str, ...] = ("csv", "compare")

    @property
    def title(self) -> str:
        return f"{self.label} {self.unit}".strip()


def _reasoned(records: list[RequestRecord]) -> bool:
    return any(r.reasoning_chunks for r in records)


TTFT = Metric("ttft", "TTFT", "ms", m.ttft_ns, "time to first token: first token - start (start = when the request "
              "was due in an open loop, else when it was sent); includes a static batch's prefill", core=True,
              markdown=("median", "p99"))
TPOT = Metric("tpot", "TPOT", "ms", m.tpot_ns, "time per output token after the first: (done - first token) / "
              "(output tokens - 1); none for a one-token request", core=True, markdown=("median", "p99"))
ITL = Metric("itl", "ITL", "ms", m.itl_ns, "inter-token latency: every gap between consecutive tokens (content "
             "chunks over HTTP), pooled over requests", pooled=True, core=True, repetition=("mean",),
             csv=("mean", "p99"), markdown=(), compare=("mean",))
E2EL = Metric("e2el", "E2E latency", "ms", m.e2el_ns, "end-to-end latency: done - start", core=True)
TTFC = Metric("ttfc", "TTFC", "ms", m.ttfc_ns, "time to first content: a reasoning model's first answer "
              "chunk after its reasoning - start; only for phases whose streams carried reasoning",
              only_if=_reasoned, repetition=(), csv=("mean",), markdown=(), compare=())

TTFT_PER_KTOK = Metric("ttft_per_ktok", "TTFT per 1k prompt tokens", "ms", m.ttft_per_ktok_ns,
                       "TTFT x 1000 / prompt tokens: prefill speed that prompts of mixed lengths can be compared by",
                       repetition=("mean",), csv=("mean", "p99"), markdown=(), compare=("mean",), console=False)

METRICS: tuple[Metric, ...] = (TTFT, TPOT, ITL, E2EL, TTFC, TTFT_PER_KTOK)

FIGURES_BEFORE = (
    Figure("completed", "completed requests", tables=("csv",)),
    Figure("failed", "failed requests", tables=("csv",)),
    Figure("error_rate", "error rate", tables=("csv",)),
    Figure("output_throughput", "output", "tok/s", True, "output_throughput", "output_throughput_tok_s",
           ("console", "csv", "markdown", "compare")),
    Figure("request_throughput", "requests/s", "", True, "request_throughput", "request_throughput_req_s",
           ("console", "csv", "compare")),
)
# the one-model-versus-two table (seed 001) is the markdown export: output tok/s, TTFT and TPOT
# p50/p99, scaling, device (on a CPU run, the workers' CPU) utilisation, peak memory, J/token, tokens/J
FIGURES_AFTER = (
    Figure("mean_device_util_pct", "device util", "%", tables=("csv", "markdown")),
    Figure("peak_memory_bytes", "peak memory", "bytes", tables=("csv", "markdown", "compare")),
    Figure("achieved_bandwidth_bytes_s", "decode bandwidth", "bytes/s", True, tables=("csv",)),
    Figure("mbu_pct", "MBU", "%", True, tables=("csv", "markdown", "compare")),
    Figure("energy_per_token_j", "energy per token", "J", tables=("csv", "markdown", "compare")),
    Figure("tokens_per_j", "tokens per joule", "tok/J", True, tables=("csv", "markdown")),
    Figure("slo_attainment", "SLO attainment", "", True, "slo_attainment"),
    Figure("goodput", "goodput", "req/s", True, "goodput"),
)
COLUMNS: tuple[Metric | Figure, ...] = (*FIGURES_BEFORE, *METRICS, *FIGURES_AFTER)


def table_keys(table: str) -> list[str]:
    """The PhaseMetrics keys a table (csv, markdown) shows, in column order."""
    out = []
    for c in COLUMNS:
        if isinstance(c, Metric):
            out += [c.key(s) for s in getattr(c, table)]
        elif table in c.tables:
            out.append(c.key)
    return out


def compared() -> list[tuple[str, str | None, bool]]:
    """What `colobench compare` compares: (summary key, per-repetition key or None for a single
    figure, higher is better), in column order."""
    out: list[tuple[str, str | None, bool]] = []
    for c in COLUMNS:
        if isinstance(c, Metric):
            out += [(c.key(s), c.repetition_key(s) if s in c.repetition else None, c.higher_is_better)
                    for s in c.compare]
        elif "compare" in c.tables:
            out.append((c.key, c.repetition_key, c.higher_is_better))
    return out


def console_rows() -> list[tuple[str, str]]:
    """(label, distribution key) of every row of the console's per-instance table."""
    out = []
    for c in COLUMNS:
        if isinstance(c, Metric) and c.console:
            out.append((c.title, c.distribution_key))
        elif isinstance(c, Figure) and "console" in c.tables and c.distribution_key:
            out.append((c.title, c.distribution_key))
    return out
