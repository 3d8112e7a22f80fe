"""Goodput of a whole training job under failures: a seeded discrete-event simulation and its analytic check.

The job computes for ``tau`` seconds, writes a checkpoint for ``delta`` seconds, and repeats. Failures of each
component arrive as Poisson processes whose rates are the per-device-hour rates times the device count; their
superposition is one Poisson process of rate ``Lambda`` whose arrivals pick a cause in proportion to the rates
(so no device is simulated individually). A failure while the job computes, checkpoints or restarts interrupts
it: the work since the last completed checkpoint is lost, and the job spends the restart time plus the checkpoint
restore before computing again. A failure that takes hardware out (accelerator, HBM, host, NIC) also sends its
server to repair for the component's repair time; a spare server takes its place, and when none is free the job
waits until a repair completes. Failures also arrive while the job waits; those take servers out but are not job
interruptions (nothing is running). Planned interruptions (maintenance) are not modelled.

Only failures, restart completions, repair completions and the job's completion are events on the kernel's heap
(:mod:`rainier.sim.kernel`); the compute/checkpoint timeline between two interruptions is arithmetic, so a
1,000,000-device, 90-day run (~43,000 interruptions) takes well under a second.

The analytic check (:func:`analytic_goodput`) is Daly 2006's expected wall time for the same model,
``M e^(R/M) (e^((tau + delta)/M) - 1)`` per ``tau`` of work (``M = 1 / Lambda``, ``R`` restart + restore), which
the simulation reproduces on long runs when no spare shortage occurs, and the first-order estimate
``(1 - (tau/2 + R)/M) * tau / (tau + delta)`` (formulas.md, "Failures and checkpoints").

The effective training time ratio (ETTR, as Meta defines it for Llama 3 and RSC) is productive training time
over wall-clock time. With a fixed window (``days``), work done since the last checkpoint when the window closes
is counted as productive (the job goes on; nothing was lost yet).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from rainier.errors import field_error
from rainier.fleet.checkpoint import (
    CheckpointPlan,
    StorageBandwidth,
    checkpoint_bytes,
    checkpoint_plan,
    default_checkpoint_bytes,
    default_storage,
    peer_memory_storage,
)
from rainier.fleet.failures import FailureCatalog, FailureModel, committed_failures
from rainier.frame import frame
from rainier.hardware import Cluster
from rainier.sim.kernel import URGENT, Environment, Event
from rainier.units import SECONDS_PER_DAY, SECONDS_PER_HOUR
from rainier.workload.shape import TransformerShape

if TYPE_CHECKING:
    import pandas as pd

# Above this many expected interruptions a run is refused: it would take minutes to simulate, and a job that
# fails this often makes no progress worth simulating event by event.
MAX_EXPECTED_INTERRUPTIONS = 5_000_000
# A job that needs this many times the analytic expectation of failures to finish its work is starved of spares
# (the analytic model ignores waiting); the simulation stops and says so instead of running on.
STARVED_FAILURE_FACTOR = 20
MAX_TIMELINE = 20_000  # interruptions kept with their times for plots (the counts cover all of them)
RANDOM_BLOCK = 4096  # random numbers drawn per call to the generator (part of what fixes a seed's output)
CHECKPOINT_TIERS = ("storage", "peer-memory")


def _number(name: str, value: object, *, positive: bool, optional: bool = False) -> None:
    if optional and value is None:
        return
    number = value if not isinstance(value, bool) and isinstance(value, int | float) else math.nan
    if not math.isfinite(number) or (number <= 0 if positive else number < 0):
        raise field_error(name, value, f"must be a finite number {'> 0' if positive else '>= 0'}")


def _integer(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise field_error(name, value, f"must be an integer >= {minimum}")


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodputScenario:
    """A job to simulate: its size, failure model, checkpoint, recovery and horizon (all SI units).

    Give exactly one horizon: ``days`` (a fixed wall-clock window) or ``work_hours`` (productive hours needed;
    the job runs until they are done). :func:`build_scenario` fills the catalog's defaults.
    """

    num_devices: int
    """Accelerators the job runs on."""
    devices_per_server: int
    """Accelerators per server: a hardware failure takes a whole server out."""
    failure_model: FailureModel
    """Failure rates per component per device-hour (:func:`rainier.fleet.failures.failure_model`)."""
    checkpoint_bytes: float
    """Size of one checkpoint (weights + optimizer state)."""
    storage_write_bytes_per_s: float
    """Aggregate bandwidth at which the job writes a checkpoint."""
    storage_read_bytes_per_s: float
    """Aggregate bandwidth at which a restarted job reads it back."""
    restart_time_s: float
    """Detection, rescheduling and process start after an interruption (the restore is added to it)."""
    spare_servers: int
    """Healthy servers beyond the job's, standing by to replace failed ones."""
    checkpoint_interval_s: float | None = None
    """Compute time between checkpoints; None for Daly's optimum."""
    repair_time_s: float | None = None
    """Time a failed server is out, for every hardware component; None for each component's own."""
    days: float | None = None
    """Fixed wall-clock window to simulate."""
    work_hours: float | None = None
    """Productive training hours the job needs; the simulation runs until they are done."""
    seed: int = 0
    """Seed of the random generator: the same seed gives the same result, byte for byte."""
    hot_spares: bool = False
    """Spares run as standby processes and the healthy ranks restart in place (the restart's parts say so)."""
    checkpoint_tier: str = "storage"
    """Where checkpoints go: ``storage`` (the file system) or ``peer-memory`` (host memory of another server)."""
    min_checkpoint_interval_s: float | None = None
    """Shortest compute time between checkpoints (one step); bounds Daly's optimum from below."""
    restart_parts: dict[str, float] | None = field(default=None, compare=False)
    """The parts the restart time was built from, when it came from the catalog (for reports)."""
    checkpoint: CheckpointPlan = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _integer("num_devices", self.num_devices, 1)
        _integer("devices_per_server", self.devices_per_server, 1)
        if not isinstance(self.failure_model, FailureModel):
            raise field_error("failure_model", self.failure_model, "expected a FailureModel")
        _number("checkpoint_bytes", self.checkpoint_bytes, positive=True)
        _number("storage_write_bytes_per_s", self.storage_write_bytes_per_s, positive=True)
        _number("storage_read_bytes_per_s", self.storage_read_bytes_per_s, positive=True)
        _number("restart_time_s", self.restart_time_s, positive=False)
        _integer("spare_servers", self.spare_servers, 0)
        _number("checkpoint_interval_s", self.checkpoint_interval_s, positive=True, optional=True)
        _number("repair_time_s", self.repair_time_s, positive=False, optional=True)
        _number("days", self.days, positive=True, optional=True)
        _number("work_hours", self.work_hours, positive=True, optional=True)
        if (self.days is None) == (self.work_hours is None):
            raise field_error(
                "days/work_hours", (self.days, self.work_hours), "give exactly one horizon: days or work_hours"
            )
        _integer("seed", self.seed, 0)
        if self.checkpoint_tier not in CHECKPOINT_TIERS:
            raise field_error("checkpoint_tier", self.checkpoint_tier, f"expected one of {', '.join(CHECKPOINT_TIERS)}")
        _number("min_checkpoint_interval_s", self.min_checkpoint_interval_s, positive=True, optional=True)
        storage = StorageBandwidth(
            write_bytes_per_s=self.storage_write_bytes_per_s, read_bytes_per_s=self.storage_read_bytes_per_s
        )
        plan = checkpoint_plan(
            size_bytes=self.checkpoint_bytes,
            storage=storage,
            job_mtbf_s=self.job_mtbf_s,
            interval_s=self.checkpoint_interval_s,
            min_interval_s=self.min_checkpoint_interval_s,
        )
        object.__setattr__(self, "checkpoint", plan)

    def to_dict(self) -> dict[str, Any]:
        """The inputs, for JSON (the failure model in full)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in {"failure_model", "checkpoint"}}
        out["failure_model"] = self.failure_model.to_dict()
        return out

    @property
    def num_servers(self) -> int:
        """Servers the job occupies (a partly used last server counts)."""
        return -(-self.num_devices // self.devices_per_server)

    @property
    def job_rate_per_s(self) -> float:
        return self.failure_model.job_rate_per_hour(self.num_devices) / SECONDS_PER_HOUR

    @property
    def job_mtbf_s(self) -> float:
        return 1.0 / self.job_rate_per_s

    @property
    def recovery_s(self) -> float:
        """Time from an interruption (or the end of a wait for spares) to computing again: restart + restore."""
        return self.restart_time_s + self.checkpoint.restore_s


def build_scenario(
    *,
    num_devices: int,
    devices_per_server: int,
    accelerator: str | None = None,
    shape: TransformerShape | None = None,
    checkpoint_size_bytes: float | None = None,
    days: float | None = None,
    work_hours: float | None = None,
    seed: int = 0,
    restart_time_s: float | None = None,
    checkpoint_interval_s: float | None = None,
    spare_servers: int | None = None,
    repair_time_s: float | None = None,
    storage: StorageBandwidth | None = None,
    failure_model: FailureModel | None = None,
    catalog: FailureCatalog | None = None,
    hot_spares: bool = False,
    in_memory_checkpoint: bool = False,
    nic_bytes_per_s_per_device: float | None = None,
    sites: int = 1,
    step_time_s: float | None = None,
) -> GoodputScenario:
    """A scenario with the catalog's defaults for everything not given.

    Checkpoint size: ``checkpoint_size_bytes``, else ``shape``'s 14 bytes per parameter, else the per-device
    default (Llama 3 405B's state over 16,384 GPUs) times ``num_devices``. Failure model: ``accelerator``'s
    (the GPU-derived defaults when it has no override). Storage: the devices' share of Llama 3's, up to the
    catalog's ceiling per site times ``sites``; with ``in_memory_checkpoint``, peer host memory over each
    device's NIC (``nic_bytes_per_s_per_device``). Restart time: the catalog's parts for this many ranks, cold or
    with ``hot_spares`` (``failures.yaml`` ``recovery``), unless ``restart_time_s`` gives the total. Spare
    servers: a fraction of the job's servers, rounded up. ``step_time_s`` is the shortest checkpoint interval.
    """
    cat = catalog or committed_failures()
    if checkpoint_size_bytes is not None:
        size = checkpoint_size_bytes
    elif shape is not None:
        size = checkpoint_bytes(shape)
    else:
        size = default_checkpoint_bytes(num_devices, cat.reference)
    _integer("devices_per_server", devices_per_server, 1)
    _integer("num_devices", num_devices, 1)
    if in_memory_checkpoint:
        if storage is not None:
            raise field_error("storage", storage, "in-memory checkpoints use peer host memory, not a given storage")
        if nic_bytes_per_s_per_device is None:
            raise field_error(
                "in_memory_checkpoint", True, "needs the system's NIC bandwidth per device (the copy goes to a peer)"
            )
        bandwidth = peer_memory_storage(num_devices, nic_bytes_per_s_per_device)
    else:
        bandwidth = storage or default_storage(num_devices, cat.reference, sites=sites, recovery=cat.recovery)
    num_servers = -(-num_devices // devices_per_server)
    spares = spare_servers if spare_servers is not None else math.ceil(cat.recovery.spare_fraction * num_servers)
    parts = None
    restart = restart_time_s
    if restart is None:
        parts = cat.recovery.restart_parts(num_devices, hot_spares=hot_spares)
        restart = parts.total_s
    return GoodputScenario(
        num_devices=num_devices,
        devices_per_server=devices_per_server,
        failure_model=failure_model or cat.model_for(accelerator),
        checkpoint_bytes=size,
        storage_write_bytes_per_s=bandwidth.write_bytes_per_s,
        storage_read_bytes_per_s=bandwidth.read_bytes_per_s,
        restart_time_s=restart,
        spare_servers=spares,
        checkpoint_interval_s=checkpoint_interval_s,
        repair_time_s=repair_time_s,
        days=days,
        work_hours=work_hours,
        seed=seed,
        hot_spares=hot_spares,
        checkpoint_tier="peer-memory" if in_memory_checkpoint else "storage",
        min_checkpoint_interval_s=step_time_s,
        restart_parts=None if parts is None else parts.to_dict(),
    )


# ----------------------------------------------------------------------------------------------------------------
# Analytic model
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalyticGoodput:
    """Expected goodput of a scenario without simulation (no spare shortages)."""

    job_mtbf_s: float
    checkpoint_interval_s: float
    effective_training_time_ratio: float
    """Daly 2006's exponential model: ``tau / (M e^(R/M) (e^((tau + delta)/M) - 1))``."""
    first_order_effective_training_time_ratio: float
    """``(1 - (tau/2 + R)/M) * tau / (tau + delta)``, clipped at 0: accurate when tau, delta, R << M."""
    expected_wall_clock_s: float
    """The window (``days``) or the expected time to finish ``work_hours``."""
    expected_interruptions: float
    """Job failure rate times the expected wall clock."""


def analytic_goodput(scenario: GoodputScenario) -> AnalyticGoodput:
    """Expected ETTR, wall clock and interruptions of ``scenario`` from Daly's model (see the module doc)."""
    mtbf = scenario.job_mtbf_s
    tau = scenario.checkpoint.interval_s
    delta = scenario.checkpoint.write_s
    recovery = scenario.recovery_s
    # Daly 2006, eq. for the expected wall time of one tau of work with Poisson failures and restart R
    try:
        wall_per_segment = mtbf * math.exp(recovery / mtbf) * math.expm1((tau + delta) / mtbf)
    except OverflowError:  # recovery or a segment hundreds of MTBFs long: the job never completes a segment
        wall_per_segment = math.inf
    ettr = tau / wall_per_segment
    first_order = max(0.0, 1.0 - (tau / 2 + recovery) / mtbf) * tau / (tau + delta)
    if scenario.days is not None:
        wall = scenario.days * SECONDS_PER_DAY
    else:
        assert scenario.work_hours is not None  # one horizon is checked on construction
        wall = scenario.work_hours * SECONDS_PER_HOUR / ettr if ettr > 0 else math.inf
    return AnalyticGoodput(
        job_mtbf_s=mtbf,
        checkpoint_interval_s=tau,
        effective_training_time_ratio=ettr,
        first_order_effective_training_time_ratio=first_order,
        expected_wall_clock_s=wall,
        expected_interruptions=wall / mtbf,
    )


def expected_ettr_for_run(
    cluster: Cluster,
    shape: TransformerShape,
    productive_hours: float,
    *,
    hot_spares: bool = False,
    in_memory_checkpoint: bool = False,
) -> float:
    """Analytic ETTR of training ``shape`` for ``productive_hours`` on ``cluster`` with the catalog defaults.

    Shaped for :data:`rainier.fleet.plan.GoodputModel` (bind the recovery options first); cheap and
    deterministic (no simulation).
    """
    scenario = build_scenario(
        num_devices=cluster.num_devices,
        devices_per_server=cluster.system.devices_per_server,
        accelerator=cluster.system.accelerator.id,
        shape=shape,
        work_hours=productive_hours,
        sites=max(1, len(cluster.sites)),
        hot_spares=hot_spares,
        in_memory_checkpoint=in_memory_checkpoint and cluster.system.nic_bw_bytes_per_s_per_device is not None,
        nic_bytes_per_s_per_device=cluster.system.nic_bw_bytes_per_s_per_device,
    )
    return analytic_goodput(scenario).effective_training_time_ratio


# ----------------------------------------------------------------------------------------------------------------
# Result
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GoodputResult:
    """What the simulation measured (times in the unit their names say), with the scenario's key inputs."""

    num_devices: int
    num_servers: int
    spare_servers: int
    seed: int
    days: float | None
    work_hours: float | None
    interruptions_unexpected: int
    interruptions_by_cause: dict[str, int]
    interruptions_hardware: int
    """Interruptions that took a server out."""
    expected_interruptions: float
    job_mtbf_hours: float
    effective_training_time_ratio: float
    analytic_effective_training_time_ratio: float
    wall_clock_days: float
    productive_days: float
    lost_work_hours: float
    checkpoint_hours: float
    restart_hours: float
    """Restart and restore time, including restarts cut short by another failure."""
    waiting_for_spares_hours: float
    max_servers_in_repair: int
    checkpoint_bytes: float
    checkpoint_interval_s: float
    checkpoint_write_s: float
    checkpoint_restore_s: float
    restart_time_s: float
    young_interval_s: float
    daly_interval_s: float
    failure_model: str
    hot_spares: bool = False
    checkpoint_tier: str = "storage"
    restart_parts: dict[str, float] | None = None
    """Detection, rescheduling, process start, swap-in and communicator set-up (s), when from the catalog."""
    timeline: tuple[tuple[float, float, str], ...] = ()
    """(wall-clock day, productive days so far, cause) at each of the first :data:`MAX_TIMELINE` interruptions;
    for plots, left out of ``to_dict`` (see :meth:`timeline_dict`)."""

    def timeline_dict(self) -> dict[str, list[Any]]:
        """The interruption timeline as columns: wall-clock days, productive days, causes."""
        return {
            "wall_clock_days": [t for t, _, _ in self.timeline],
            "productive_days": [p for _, p, _ in self.timeline],
            "cause": [c for _, _, c in self.timeline],
        }

    def to_frame(self) -> pd.DataFrame:
        """This result as a pandas DataFrame (``rainier.frame``)."""
        return frame(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "timeline"}
        out["interruptions_by_cause"] = dict(self.interruptions_by_cause)
        return out


# ----------------------------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------------------------

RUNNING, RESTARTING, WAITING, DONE = "running", "restarting", "waiting", "done"


class _Job:
    """The simulated job's state and the event callbacks that change it (one instance per simulation)."""

    def __init__(self, scenario: GoodputScenario, max_failures: float = math.inf) -> None:
        self.sc = scenario
        self.max_failures = max_failures
        self.failures = 0
        self.env = Environment(np.random.default_rng(scenario.seed))
        comps = scenario.failure_model.components
        rates = [c.rate_per_device_hour for c in comps]
        total = sum(rates)
        running_sum = 0.0
        self.cumulative: list[float] = []
        for rate in rates:
            running_sum += rate
            self.cumulative.append(running_sum / total)
        self.cumulative[-1] = 1.0
        self.hardware = [c.takes_hardware_out for c in comps]
        repair = scenario.repair_time_s
        self.repair_s = [(c.repair_s if repair is None else repair) for c in comps]
        self.counts = [0] * len(comps)
        self.names = [c.component.value for c in comps]
        self.rate_per_s = scenario.job_rate_per_s
        self.tau = scenario.checkpoint.interval_s
        self.delta = scenario.checkpoint.write_s
        self.recovery_s = scenario.recovery_s
        hours = scenario.work_hours
        self.remaining_s = math.inf if hours is None else hours * SECONDS_PER_HOUR
        self.state = RUNNING
        self.since = 0.0
        self.pending: Event | None = None
        self.in_repair = 0
        self.max_in_repair = 0
        self.productive_s = self.lost_s = self.checkpoint_s = self.restart_s = self.waiting_s = 0.0
        self.hardware_interruptions = 0
        self.timeline: list[tuple[float, float, int]] = []
        self._exp: list[float] = []
        self._uni: list[float] = []

    # -- randomness, drawn in fixed blocks so a seed always yields the same sequence -----------------------------
    def _draw(self) -> tuple[float, float]:
        if not self._exp:
            rng = self.env.rng
            self._exp = rng.standard_exponential(RANDOM_BLOCK).tolist()[::-1]
            self._uni = rng.random(RANDOM_BLOCK).tolist()[::-1]
        return self._exp.pop(), self._uni.pop()

    def _schedule_failure(self) -> None:
        gap, pick = self._draw()
        cause = bisect.bisect_right(self.cumulative, pick)
        self.env.schedule(gap / self.rate_per_s, self._on_failure, payload=min(cause, len(self.cumulative) - 1))

    # -- timeline arithmetic -------------------------------------------------------------------------------------
    def _time_to_finish(self) -> float:
        """Uninterrupted time to do the remaining work, each tau (and the last part) followed by a checkpoint."""
        return self.remaining_s + math.ceil(self.remaining_s / self.tau) * self.delta

    def _close_running(self, now: float, *, failed: bool) -> None:
        elapsed = now - self.since
        cycle = self.tau + self.delta
        done = math.floor(elapsed / cycle)
        within = elapsed - done * cycle
        segment = min(self.tau, self.remaining_s - done * self.tau)  # compute in the current cycle
        committed = done * self.tau
        self.productive_s += committed
        self.remaining_s -= committed
        self.checkpoint_s += done * self.delta + max(within - segment, 0.0)
        computed = min(within, segment)
        if failed:
            self.lost_s += computed
        else:
            self.productive_s += computed

    # -- state changes -------------------------------------------------------------------------------------------
    def _start_recovery(self, now: float) -> None:
        if self.in_repair > self.sc.spare_servers:
            self.state, self.since = WAITING, now
            return
        self.state, self.since = RESTARTING, now
        self.pending = self.env.schedule(self.recovery_s, self._on_restarted)

    def _start_running(self, now: float) -> None:
        self.state, self.since = RUNNING, now
        if math.isfinite(self.remaining_s):
            self.pending = self.env.schedule(self._time_to_finish(), self._on_done)

    def _on_failure(self, event: Event) -> None:
        cause: int = event.payload
        now = self.env.now
        self.failures += 1
        if self.failures > self.max_failures:
            self.env.stop()
            return
        self._schedule_failure()
        if self.hardware[cause]:
            self.in_repair += 1
            self.max_in_repair = max(self.max_in_repair, self.in_repair)
            self.env.schedule(self.repair_s[cause], self._on_repaired, priority=URGENT)
        if self.state == WAITING:
            return  # nothing runs: a server fails, the job is not interrupted
        self.counts[cause] += 1
        self.hardware_interruptions += self.hardware[cause]
        if self.pending is not None:
            self.pending.cancel()
            self.pending = None
        if self.state == RUNNING:
            self._close_running(now, failed=True)
        else:
            self.restart_s += now - self.since
        if len(self.timeline) < MAX_TIMELINE:
            self.timeline.append((now, self.productive_s, cause))
        self._start_recovery(now)

    def _on_repaired(self, event: Event) -> None:
        self.in_repair -= 1
        if self.state == WAITING and self.in_repair <= self.sc.spare_servers:
            now = self.env.now
            self.waiting_s += now - self.since
            self._start_recovery(now)

    def _on_restarted(self, event: Event) -> None:
        self.pending = None
        self.restart_s += self.recovery_s
        self._start_running(self.env.now)

    def _on_done(self, event: Event) -> None:
        self.pending = None
        self.productive_s += self.remaining_s
        self.checkpoint_s += math.ceil(self.remaining_s / self.tau) * self.delta
        self.remaining_s = 0.0
        self.state = DONE
        self.env.stop()

    def run(self) -> float:
        """Simulate; returns the wall-clock time."""
        self._start_running(0.0)
        self._schedule_failure()
        if self.sc.days is not None:
            end = self.sc.days * SECONDS_PER_DAY
            self.env.run(until=end)
            if self.state == RUNNING:
                self._close_running(end, failed=False)
            elif self.state == RESTARTING:
                self.restart_s += end - self.since
            else:
                self.waiting_s += end - self.since
            return end
        self.env.run()
        if self.state != DONE:  # the failure process never ends: only _on_done or the failure cap stop the run
            hours = self.sc.work_hours
            assert hours is not None
            done = 1 - self.remaining_s / (hours * SECONDS_PER_HOUR)
            raise field_error(
                "spare_servers",
                self.sc.spare_servers,
                f"the job did not finish: after {self.failures - 1:,} failures ({self.env.now / SECONDS_PER_DAY:,.0f} "
                f"days) only {done:.1%} of the work was done, waiting for repairs most of the time; "
                "allow more spare servers or shorter repairs",
            )
        return self.env.now


def simulate_goodput(scenario: GoodputScenario) -> GoodputResult:
    """Run the discrete-event simulation of ``scenario`` (deterministic for its seed).

    Refuses (``InputError`` naming the horizon) a run expecting more than :data:`MAX_EXPECTED_INTERRUPTIONS`,
    including a job that would practically never finish its ``work_hours``.
    """
    analytic = analytic_goodput(scenario)
    if not analytic.expected_interruptions <= MAX_EXPECTED_INTERRUPTIONS:
        horizon = "days" if scenario.days is not None else "work_hours"
        raise field_error(
            horizon,
            getattr(scenario, horizon),
            f"about {analytic.expected_interruptions:,.0f} interruptions expected; at most "
            f"{MAX_EXPECTED_INTERRUPTIONS:,} can be simulated (shorten the horizon or improve recovery; "
            f"analytic ETTR {analytic.effective_training_time_ratio:.3g})",
        )
    cap = math.inf if scenario.days is not None else STARVED_FAILURE_FACTOR * analytic.expected_interruptions + 1000
    job = _Job(scenario, max_failures=min(cap, MAX_EXPECTED_INTERRUPTIONS))
    wall_s = job.run()
    plan = scenario.checkpoint
    return GoodputResult(
        num_devices=scenario.num_devices,
        num_servers=scenario.num_servers,
        spare_servers=scenario.spare_servers,
        seed=scenario.seed,
        days=scenario.days,
        work_hours=scenario.work_hours,
        interruptions_unexpected=sum(job.counts),
        interruptions_by_cause=dict(zip(job.names, job.counts, strict=True)),
        interruptions_hardware=job.hardware_interruptions,
        expected_interruptions=analytic.expected_interruptions,
        job_mtbf_hours=scenario.job_mtbf_s / SECONDS_PER_HOUR,
        effective_training_time_ratio=job.productive_s / wall_s,
        analytic_effective_training_time_ratio=analytic.effective_training_time_ratio,
        wall_clock_days=wall_s / SECONDS_PER_DAY,
        productive_days=job.productive_s / SECONDS_PER_DAY,
        lost_work_hours=job.lost_s / SECONDS_PER_HOUR,
        checkpoint_hours=job.checkpoint_s / SECONDS_PER_HOUR,
        restart_hours=job.restart_s / SECONDS_PER_HOUR,
        waiting_for_spares_hours=job.waiting_s / SECONDS_PER_HOUR,
        max_servers_in_repair=job.max_in_repair,
        checkpoint_bytes=plan.checkpoint_bytes,
        checkpoint_interval_s=plan.interval_s,
        checkpoint_write_s=plan.write_s,
        checkpoint_restore_s=plan.restore_s,
        restart_time_s=scenario.restart_time_s,
        young_interval_s=plan.young_interval_s,
        daly_interval_s=plan.daly_interval_s,
        failure_model=scenario.failure_model.name,
        hot_spares=scenario.hot_spares,
        checkpoint_tier=scenario.checkpoint_tier,
        restart_parts=None if scenario.restart_parts is None else dict(scenario.restart_parts),
        timeline=tuple((t / SECONDS_PER_DAY, p / SECONDS_PER_DAY, job.names[c]) for t, p, c in job.timeline),
    )
