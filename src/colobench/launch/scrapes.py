"""The server's own evidence, window by window: each endpoint's `/metrics` scraped at the
boundaries of every window it takes part in.

A serving engine's counters (requests finished, tokens, preemptions, prefix-cache hits) and
histograms (TTFT, inter-token latency, end-to-end latency, queue time) only say something about a
phase when they are read around that phase's windows alone: scraped around a whole interleaved
group they mix the solo windows with the co-located ones and include the warm-up. So the parent
scrapes each active endpoint instance just before a window's go (every worker is waiting at the
barrier, warm-up done, nothing in flight) and again once every live worker of the window has
reported it done (its requests, filler included, have all completed), and keeps the raw text:
the difference of two scrapes is that window's share of every counter, and a phase's figures are
the sum over its repetitions (`analysis.server`).

The scrapes happen in the parent, between windows: never on a worker's hot path, and never
inside a measured window (the `before` scrape ends before the go is read off the clock). A scrape
that fails is recorded with its reason (`metrics/scrapes.jsonl`), never fatal.
"""

from __future__ import annotations

from colobench.backends.openai_admin import fetch_metrics
from colobench.backends.openai_http import without_userinfo
from colobench.clock import now_ns
from colobench.plan import RunGroup
from colobench.records import RecordWriter
from colobench.rundir import MetricsScrape, RunDir


class WindowScrapes:
    """Scrapes each window's endpoints before it starts and after it ends, once each."""

    def __init__(self, group: RunGroup, run_dir: RunDir):
        self.group, self.run_dir = group, run_dir
        # per window: (instance, metrics URL) of its active endpoint instances that have one
        self.targets = [[(i.name, i.endpoint.metrics_url) for i in group.run(w.run_id).instances
                         if i.endpoint is not None and i.endpoint.metrics_url] for w in group.windows]
        self.opened: set[int] = set()
        self.closed: set[int] = set()

    def __bool__(self) -> bool:
        return any(self.targets)

    def before(self, w: int) -> None:
        """Just before window `w`'s go (an earlier window not closed yet, whose workers died, first)."""
        for earlier in sorted(self.opened - self.closed):
            if earlier < w:
                self.after(earlier)
        if w not in self.opened:
            self.opened.add(w)
            self._scrape(w, "before")

    def after(self, w: int) -> None:
        """Once window `w` is over (every live worker of it reported it done)."""
        if w in self.opened and w not in self.closed:
            self.closed.add(w)
            self._scrape(w, "after")

    def close_all(self) -> None:
        """The windows still open at the end (a worker died in its last window)."""
        for w in sorted(self.opened - self.closed):
            self.after(w)

    def _scrape(self, w: int, when: str) -> None:
        window = self.group.windows[w]
        folder = self.run_dir.run(window.run_id)
        writer = None
        try:
            for name, url in self.targets[w]:
                t_ns = now_ns()
                text, error = fetch_metrics(url)
                file = None
                if text is not None:
                    path = folder.window_metrics(name, window.repetition, when)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text, encoding="utf-8")
                    file = path.name
                row = MetricsScrape(instance=name, repetition=window.repetition, when=when, t_ns=t_ns,
                                    url=without_userinfo(url), file=file, error=error)
                writer = writer or RecordWriter(folder.metrics_scrapes)
                writer.write_row(row.model_dump())
        finally:
            if writer is not None:
                writer.close()
