"""The Prometheus collector of gridwatch's own health: check runs, sources, rejected rows.

Built fresh on every scrape from the results store — no global gauges, no stale series. The
grids' families and the checks' samples, far larger, are rendered once per change instead
(:mod:`gridwatch.web.views`); ``/metrics`` is both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from gridwatch.pipeline.results import OUTCOMES, REJECTED_RATIO, Results


class GridwatchCollector(Collector):
    def __init__(self, results: Callable[[], Results], version: str) -> None:
        self._results = results
        self.version = version
        self.extra: list[Callable[[], Iterator[Metric]]] = []  # later features add families here

    def collect(self) -> Iterator[Metric]:
        results = self._results()
        checks = list(results.checks.values())
        sources = list(results.sources.values())

        info = GaugeMetricFamily("gridwatch_build_info", "gridwatch build information", labels=["version"])
        info.add_metric([self.version], 1)
        yield info

        runs = CounterMetricFamily("gridwatch_check_runs", "Check runs by outcome", labels=["check", "outcome"])
        duration = GaugeMetricFamily(
            "gridwatch_check_duration_seconds", "Duration of the last check run", labels=["check"]
        )
        success = GaugeMetricFamily(
            "gridwatch_check_last_success_timestamp_seconds",
            "Unix time of the last successful check run",
            labels=["check"],
        )
        rejected_ratio = GaugeMetricFamily(
            REJECTED_RATIO,
            "Share of the rows of a check's last full read that were rejected; above its "
            "max_rejected_ratio (default 0.5) the check fails",
            labels=["check"],
        )
        for c in checks:
            for outcome in OUTCOMES:
                runs.add_metric([c.name, outcome], c.runs.get(outcome, 0))
            if c.duration is not None:
                duration.add_metric([c.name], c.duration)
            if c.last_success is not None:
                success.add_metric([c.name], c.last_success)
            if c.rejected_ratio is not None:
                rejected_ratio.add_metric([c.name], c.rejected_ratio)
        yield runs
        yield duration
        yield success
        yield rejected_ratio

        up = GaugeMetricFamily("gridwatch_source_up", "1 if the source answered its last request", labels=["source"])
        for s in sources:
            if s.up is not None:
                up.add_metric([s.name], 1 if s.up else 0)
        yield up

        rejected = CounterMetricFamily(
            "gridwatch_source_rows_rejected",
            "Rows left out of every figure, by source and reason",
            labels=["source", "reason"],
        )
        for (source, reason), n in sorted(results.rejected.items()):
            rejected.add_metric([source, reason], n)
        yield rejected

        yield GaugeMetricFamily(
            "gridwatch_config_last_reload_successful",
            "1 if the last config (re)load succeeded",
            value=1 if results.reload_ok else 0,
        )

        for extra in self.extra:
            yield from extra()


def state_db_families(store: Any) -> Iterator[Metric]:
    """Whether the state database takes writes (a full or read-only disk says so here)."""
    yield GaugeMetricFamily(
        "gridwatch_state_db_writable",
        "1 if the last write to the state database succeeded, 0 while writes fail (disk full, read-only)",
        value=1 if store.writable else 0,
    )
    yield CounterMetricFamily(
        "gridwatch_state_db_write_errors",
        "Writes to the state database that failed; what they held is kept in memory and retried",
        value=store.write_errors,
    )


def loop_lag_families(monitor: Any) -> Iterator[Metric]:
    """How late the event loop ran lately (a :class:`gridwatch.process.looplag.LoopLagMonitor`): a blocked
    loop delays every answer, scrape and timer alike."""
    yield GaugeMetricFamily(
        "gridwatch_event_loop_lag_seconds", "Largest event-loop delay seen in the last minute", value=monitor.lag()
    )


class ProcessMetrics(ProcessCollector):
    """``process_*`` (memory, CPU seconds, open and allowed descriptors, start time), as every
    Prometheus client exposes them. prometheus_client reads the boot time from ``/proc/stat``,
    which systemd's ``ProcSubset=pid`` hides: then it comes from the clock, not from nowhere (the
    collector would otherwise yield nothing at all)."""

    def _boot_time(self) -> float:
        try:
            return float(super()._boot_time())
        except (OSError, TypeError):
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def registry(collector: GridwatchCollector) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    ProcessMetrics(registry=reg)
    return reg


def rows_read_families(sources: dict[str, Any]) -> Iterator[Metric]:
    """Rows the sources handed to checks: what a run costs the platform's database."""
    family = CounterMetricFamily(
        "gridwatch_source_rows_read", "Rows read from the source by incremental checks", labels=["source", "table"]
    )
    for name, source in sorted(sources.items()):
        for table, n in sorted(source.rows_read.items()):
            family.add_metric([name, table], n)
    yield family


def calendar_families(cal: Any) -> Iterator[Metric]:
    """Years evaluated without holiday data (weekends and overrides only): update the library."""
    fam = GaugeMetricFamily(
        "gridwatch_calendar_year_missing",
        "1 for a year the holiday calendar has no data for (weekends only)",
        labels=["year"],
    )
    for year in sorted(cal.missing_years):
        fam.add_metric([str(year)], 1)
    yield fam
