"""The daemon's periodic jobs: the scheduled recluster and the rescan, on APScheduler.

A job that fell due while the machine slept, or across a clock jump, runs once when the
scheduler wakes: APScheduler's default grace of 1 s would skip it (the scheduler waits on a
monotonic clock, which stands still in a suspend, and finds the job hours late by the wall
clock). `coalesce` folds the several run times a long sleep missed into one run.

On reload only a job whose interval changed is replaced; an unchanged one keeps its next run
time, so a SIGHUP (a log level change, say) does not push the next recluster back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from apscheduler.schedulers.base import BaseScheduler

from photocluster.config import Config

logger = logging.getLogger(__name__)

RECLUSTER, RESCAN = "recluster", "rescan"  # job ids

_JOB_OPTIONS = {"coalesce": True, "misfire_grace_time": None, "max_instances": 1}


class Schedule:
    """The jobs of one scheduler (started or not); `apply(config)` adds, replaces or removes
    them to match the configuration."""

    def __init__(
        self, scheduler: BaseScheduler, recluster: Callable[[], None], rescan: Callable[[], None]
    ) -> None:
        self.scheduler = scheduler
        self._jobs = {RECLUSTER: recluster, RESCAN: rescan}
        self._seconds: dict[str, float] = {}  # job id -> the interval it runs at (0: none)

    def apply(self, config: Config) -> None:
        """Match the jobs to `config`: [clustering] recluster_every_hours and [watch]
        rescan_every_minutes, 0 meaning never."""
        self._set(RECLUSTER, config.clustering.recluster_every_hours * 3600)
        self._set(RESCAN, config.watch.rescan_every_minutes * 60)

    def _set(self, job_id: str, seconds: float) -> None:
        if self._seconds.get(job_id, 0.0) == seconds:
            return  # unchanged: keep its next run time
        self._seconds[job_id] = seconds
        if seconds > 0:
            self.scheduler.add_job(
self._jobs[job_id],
"interval",
seconds=seconds,
id=job_id,
replace_existing=True,
**_JOB_OPTIONS,
            )
            logger.debug("%s every %g s", job_id, seconds)
        elif self.scheduler.get_job(job_id) is not None:
            self.scheduler.remove_job(job_id)
