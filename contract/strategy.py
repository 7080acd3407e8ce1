"""How a release's workload changes: ``strategy`` of the release spec (issue 11), and the progress the workflow
reports about it.

``rolling`` (the default) is what Rollwright always did: apply, wait ready, bake. ``canary`` and ``blueGreen``
follow Argo Rollouts' field names (camelCase in files; snake_case accepted, which is what histories hold).
Imported by ``contract.spec`` (the spec), ``releases.strategy`` (checks against the manifests),
``workflows.progressive`` (runs the steps), ``activities.traffic`` (scales, partitions, switches selectors) and the
CLI/status. Pure data, no I/O: safe inside the workflow sandbox.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from contract.analysis import AnalysisRef, Measurement, duration_seconds


class _Argo(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True)


class Pause(_Argo):
    """``pause: {}`` waits for ``promote`` (or ``abort``); ``pause: {duration: 30s}`` waits that long (a durable
    timer), and ``promote`` ends it early."""

    duration: str | int | None = Field(None, description="seconds, or a duration like 30s, 5m, 1h")

    @model_validator(mode="after")
    def _duration(self) -> Pause:
        if self.duration is not None:
            s = self.seconds
            if s is None or s < 0 or s > 30 * 86400:
                raise ValueError("duration must be between 0s and 30 days")
        return self

    @property
    def seconds(self) -> float | None:
        if self.duration is None:
            return None
        if isinstance(self.duration, int):
            return float(self.duration)
        return duration_seconds(self.duration)


class CanaryStep(_Argo):
    """Exactly one of ``setWeight``, ``pause``, ``analysis``."""

    set_weight: int | None = Field(None, ge=0, le=100, description="percent of the pods that run the new version")
    pause: Pause | None = None
    analysis: AnalysisRef | None = None

    @model_validator(mode="after")
    def _one(self) -> CanaryStep:
        n = sum(x is not None for x in (self.set_weight, self.pause, self.analysis))
        if n != 1:
            raise ValueError("a step is exactly one of setWeight, pause, analysis")
        return self

    @property
    def label(self) -> str:
        if self.set_weight is not None:
            return f"setWeight {self.set_weight}"
        if self.pause is not None:
            return "pause" + (f" {self.pause.seconds:g}s" if self.pause.seconds is not None else "")
        assert self.analysis is not None
        return "analysis " + ",".join(t.template_name for t in self.analysis.templates)


class BackgroundAnalysis(AnalysisRef):
    """Analysis that runs from step ``startingStep`` (0-based, as Argo) until the canary is promoted or fails."""

    starting_step: int = Field(0, ge=0)


class Canary(_Argo):
    """Argo's basic canary (no mesh): the weight is the share of pods. A Deployment gets a second Deployment
    ``<name>-canary`` with the new template behind the same Service; a StatefulSet steps its partition."""

    steps: list[CanaryStep] = Field(min_length=1, max_length=100)
    analysis: BackgroundAnalysis | None = None
    workload: str | None = Field(None, description="the Deployment/StatefulSet to canary; default: the only one")
    # Bounded history: past this many events (or when Temporal suggests it) the run continues as new at the next
    # safe point (between steps, or in a pause), carrying the status over. Temporal warns at 10 240 events.
    max_history_events: int = Field(8000, ge=1, le=50000,
                                    description="continue-as-new past this history length (between steps)")

    @model_validator(mode="after")
    def _starting_step(self) -> Canary:
        if self.analysis is not None and self.analysis.starting_step >= len(self.steps):
            raise ValueError(f"analysis.startingStep: {self.analysis.starting_step} is past the last step "
                             f"(there are {len(self.steps)} steps, numbered from 0)")
        return self


class BlueGreen(_Argo):
    """The new version runs beside the old one as ``<name>-preview`` behind ``previewService``; promotion switches
    ``activeService``'s selector to it. A failure after the switch switches back (no redeploy) while the old pods
    are up, i.e. until ``scaleDownDelaySeconds`` after the promotion."""

    active_service: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    preview_service: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    auto_promotion_enabled: bool = True
    auto_promotion_seconds: int | None = Field(None, ge=0, le=30 * 86400)
    pre_promotion_analysis: AnalysisRef | None = None
    post_promotion_analysis: AnalysisRef | None = None
    scale_down_delay_seconds: int = Field(30, ge=0, le=86400)
    workload: str | None = Field(None, description="the Deployment; default: the only one")

    @model_validator(mode="after")
    def _services(self) -> BlueGreen:
        if self.active_service == self.preview_service:
            raise ValueError("previewService must differ from activeService")
        return self


class Rolling(_Argo):
    """Apply and let the workload's own controller roll (today's behaviour)."""


class StrategyKind(str, Enum):
    ROLLING = "rolling"
    CANARY = "canary"
    BLUE_GREEN = "blueGreen"


class Strategy(_Argo):
    rolling: Rolling | None = None
    canary: Canary | None = None
    blue_green: BlueGreen | None = None

    @model_validator(mode="after")
    def _one(self) -> Strategy:
        if sum(x is not None for x in (self.rolling, self.canary, self.blue_green)) > 1:
            raise ValueError("choose one strategy: rolling, canary or blueGreen")
        return self

    @property
    def kind(self) -> StrategyKind:
        if self.canary is not None:
            return StrategyKind.CANARY
        if self.blue_green is not None:
            return StrategyKind.BLUE_GREEN
        return StrategyKind.ROLLING

    @property
    def workload(self) -> str | None:
        s = self.canary or self.blue_green
        return s.workload if s is not None else None

    def analysis_refs(self) -> list[tuple[str, AnalysisRef]]:
        """Every analysis reference with its field path (for error messages)."""
        out: list[tuple[str, AnalysisRef]] = []
        if self.canary is not None:
            for i, st in enumerate(self.canary.steps):
                if st.analysis is not None:
                    out.append((f"strategy.canary.steps[{i}].analysis", st.analysis))
            if self.canary.analysis is not None:
                out.append(("strategy.canary.analysis", self.canary.analysis))
        if self.blue_green is not None:
            for name in ("pre_promotion_analysis", "post_promotion_analysis"):
                ref = getattr(self.blue_green, name)
                if ref is not None:
                    out.append((f"strategy.blueGreen.{to_camel(name)}", ref))
        return out


# ---- what the workflow reports ---------------------------------------------------------------------------------


class _Msg(BaseModel):
    model_config = ConfigDict(extra="ignore")


class PromotionRecord(_Msg):
    approver: str
    full: bool = False
    comment: str | None = None
    at: datetime
    step: int = 0  # the 1-based step it continued (0: blue-green promotion)
    reason: str = ""  # what it answered: "pause", "inconclusive analysis", "blue-green promotion"


MAX_MEASUREMENTS_KEPT = 200  # in the status and result; the history holds every one


class StrategyStatus(_Msg):
    """Part of the status query, current details and result for canary and blue-green rollouts."""

    strategy: StrategyKind
    step: int = 0  # 1-based index of the current step, 0 before the first
    steps: int = 0
    step_name: str = ""
    weight: int = 0  # percent of the pods on the new version (canary); 100 once promoted
    canary_replicas: int = 0
    stable_replicas: int = 0
    active: str = ""  # blue-green: "stable" or "preview", which side activeService selects
    paused_reason: str | None = None
    awaiting_promotion: bool = False
    analysis_phase: str | None = None  # last finished analysis: Successful, Failed, Inconclusive, Error
    background_analysis: str | None = None  # Running, then its phase
    measurements: list[Measurement] = Field(default_factory=list)
    promotions: list[PromotionRecord] = Field(default_factory=list)
    switch_back_seconds: float | None = None  # blue-green: time to switch activeService back on failure
    runs: int = 1  # workflow runs of this rollout (continue-as-new starts a new run with this status)

    def lines(self, measurements: int = 5) -> list[str]:
        """Plain-text lines for the CLI and the Web UI's current details: step k/n, weight, why paused, the last
        measurements (value, phase, time) and the promotions."""
        if self.strategy == StrategyKind.BLUE_GREEN:
            head = (f"blue-green step {self.step}/{self.steps} {self.step_name}: activeService → {self.active or '?'}"
                    f", preview {self.canary_replicas} pods")
        else:
            head = (f"canary step {self.step}/{self.steps} {self.step_name}: weight {self.weight}% "
                    f"({self.canary_replicas} canary / {self.stable_replicas} stable pods)")
        out = [head]
        if self.paused_reason:
            out.append(f"paused: {self.paused_reason}")
        if self.analysis_phase or self.background_analysis:
            out.append("analysis: " + ", ".join(x for x in (
                f"last {self.analysis_phase}" if self.analysis_phase else "",
                f"background {self.background_analysis}" if self.background_analysis else "") if x))
        for m in self.measurements[-measurements:]:
            out.append(f"measurement {m.template}/{m.metric} {m.finished_at:%H:%M:%S}: {m.value} → {m.phase.value}"
                       + (f" ({m.message})" if m.message else ""))
        for p in self.promotions:
            out.append(f"promoted by {p.approver} at {p.at:%H:%M:%S} ({p.reason}{', full' if p.full else ''})")
        if self.switch_back_seconds is not None:
            out.append(f"activeService switched back in {self.switch_back_seconds:.1f}s")
        return out
