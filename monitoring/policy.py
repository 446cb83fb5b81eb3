"""The retraining policy: a pure function of this window's signal and the decisions so far.

Retrain when the drift share reaches the threshold in N consecutive windows (windows, not checks:
two checks of the same window count once), or when the champion's quality on labelled rows drops
by more than the allowed share; never within the cool-down after the last run, and never more
than `max_per_day` runs in 24 hours. With `new_regime_wait` set, a confirmed alarm also waits
until the windows have moved that far (event time) past the first alarmed one: a run started at
once would train on the old regime only (its training period ends where the new one begins).
Every outcome carries a reason code (low cardinality, for the metric) and a sentence (for the
log).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from monitoring.settings import RetrainPolicySettings

TRIGGER = "trigger"
HOLD = "hold"


@dataclass(frozen=True)
class WindowSignal:
    """What one check found, reduced to what the policy needs."""

    window_end: str
    drift_share: float
    score_drifted: bool = False
    quality_current: float | None = None
    quality_reference: float | None = None

    def quality_drop(self) -> float | None:
        """Relative drop of quality against the reference (None without both figures)."""
        if self.quality_current is None or not self.quality_reference:
            return None
        return (self.quality_reference - self.quality_current) / self.quality_reference


@dataclass(frozen=True)
class PastDecision:
    """A logged decision, as the policy reads it back."""

    decided_at: datetime
    window_end: str
    drifted: bool
    triggered: bool
    #: The champion's quality had dropped past the allowed share.
    degraded: bool = False


@dataclass(frozen=True)
class PolicyDecision:
    """Outcome: trigger or hold, a reason code and an explanation."""

    decision: str
    reason: str
    detail: str
    drifted: bool
    quality_degraded: bool
    consecutive: int

    @property
    def triggered(self) -> bool:
        return self.decision == TRIGGER

    def to_dict(self) -> dict:
        return asdict(self)


def is_drifted(signal: WindowSignal, settings: RetrainPolicySettings) -> bool:
    """Does this window count as drifted?"""
    return (signal.drift_share >= settings.drift_share_threshold
            or (settings.score_drift_triggers and signal.score_drifted))


def consecutive_drifted(signal: WindowSignal, drifted: bool, history: list[PastDecision]) -> int:
    """Drifted windows in a row up to this one, counted since the last triggered run."""
    if not drifted:
        return 0
    count, seen = 1, {signal.window_end}
    for past in sorted(history, key=lambda p: p.decided_at, reverse=True):
        if past.triggered or (past.window_end not in seen and not past.drifted):
            break
        if past.window_end not in seen:
            seen.add(past.window_end)
            count += 1
    return count


def decide(signal: WindowSignal, history: list[PastDecision], now: datetime,
           settings: RetrainPolicySettings) -> PolicyDecision:
    """Apply the policy to this window, given earlier decisions (any order)."""
    drifted = is_drifted(signal, settings)
    drop = signal.quality_drop()
    degraded = drop is not None and drop > settings.max_quality_drop
    streak = consecutive_drifted(signal, drifted, history)

    def outcome(decision: str, reason: str, detail: str) -> PolicyDecision:
        return PolicyDecision(decision, reason, detail, drifted, degraded, streak)

    share = (f"drift share {signal.drift_share:.2f} (threshold "
             f"{settings.drift_share_threshold:.2f})")
    confirmed = drifted and streak >= settings.consecutive_windows
    if not confirmed and not degraded:
        if drifted:
            return outcome(HOLD, "awaiting_confirmation", f"{share}: drifted window {streak} of "
                           f"{settings.consecutive_windows} needed in a row")
        return outcome(HOLD, "no_drift", f"{share}; quality {_drop_text(drop)}")
    blocked = _rate_limit(history, now, settings)
    if blocked:
        return outcome(HOLD, *blocked)
    if settings.new_regime_wait:
        onset = alarm_onset(signal, history)
        waited = _event_time(signal.window_end) - _event_time(onset)
        if waited < settings.new_regime_wait:
            return outcome(HOLD, "awaiting_data", (
                f"{share}; quality {_drop_text(drop)}: first alarm in the window ending {onset};"
                f" waiting for {settings.new_regime_wait} of the new regime ({waited} so far)"))
    reason = "drift_and_quality" if confirmed and degraded else ("drift" if confirmed else "quality")
    windows = f" for {streak} window(s)" if confirmed else ""
    return outcome(TRIGGER, reason, f"{share}{windows}; quality {_drop_text(drop)}")


def alarm_onset(signal: WindowSignal, history: list[PastDecision]) -> str:
    """End of the first window of the current run of alarmed windows (this one if it starts it),
    counted since the last triggered run."""
    onset = signal.window_end
    for past in sorted(history, key=lambda p: p.decided_at, reverse=True):
        if past.triggered or not (past.drifted or past.degraded):
            break
        onset = min(onset, past.window_end, key=_event_time)
    return onset


def _event_time(window_end: str) -> datetime:
    return datetime.fromisoformat(window_end)


def _drop_text(drop: float | None) -> str:
    if drop is None:
        return "not evaluated (too few labels)"
    return f"{abs(drop):.0%} {'below' if drop > 0 else 'above'} the reference"


def _rate_limit(history: list[PastDecision], now: datetime, settings: RetrainPolicySettings
                ) -> tuple[str, str] | None:
    runs = sorted(p.decided_at for p in history if p.triggered)
    if runs and now - runs[-1] < settings.cooldown:
        return "cooldown", (f"last retraining started {runs[-1].isoformat()}, cool-down "
                            f"{settings.cooldown} not over")
    recent = [t for t in runs if now - t < timedelta(days=1)]
    if len(recent) >= settings.max_per_day:
        return "max_frequency", (f"{len(recent)} retraining runs in the last 24 h (max "
                                 f"{settings.max_per_day})")
    return None
