"""The router's decision: an ordered list of pure stages, built from settings, run on each intake record.

    cancel -> decode -> authenticate -> owner -> validate -> tenant_limits -> deadline -> resolve_model
           -> allowed_models -> dedup -> fallback -> overload -> rate_limit -> budget -> route

fallback sends a request whose model's breaker is open down its chain (or answers it degraded), before overload
judges the backlog of the model it will actually go to.

The owner stage moves a limited tenant's record to the router that holds its counters; rate_limit and budget
come last before route, so a request they count is one that is forwarded.

Each stage (router/stages/<name>.py) returns Continue or an outcome (Reject, Drop, Answer, Forward) that
ends the run; the Kafka loop (router/intake.py) carries the outcome out. A stage whose `active` is False
(nothing configured for it to do: no tenants, no limits) is not run. A new policy is one stage module, at
most one view module (router/views.py: its feed and hooks, registered here) and one line in `build_pipeline`.
"""

from __future__ import annotations

from contracts.codec import Codec, ContentType
from contracts.messages import ErrorCode
from fleet.settings import Settings
from router.policies.tenants import Tenants
from router.stages.allowed_models import AllowedModels
from router.stages.authenticate import Authenticate
from router.stages.base import Context, Continue, Outcome, Reject, Stage
from router.stages.budget import Budget
from router.stages.cancel import CancelStage
from router.stages.deadline import Deadline
from router.stages.decode import Decode
from router.stages.dedup import Dedup
from router.stages.fallback import Fallback
from router.stages.overload import Overload
from router.stages.owner import Owner
from router.stages.rate_limit import RateLimit
from router.stages.resolve_model import ResolveModel
from router.stages.route import Route
from router.stages.tenant_limits import TenantLimits
from router.stages.validate import InternalTopics, Validate
from router.views import Views

SALVAGE_MAX_BYTES = 4 << 20  # a body that tripped a stage is searched for its id and reply_to only below this


def request_stages(settings: Settings, codec: Codec, tenants: Tenants | None = None) -> list[Stage]:
    """The stages that look at the record alone (no view)."""
    tenants = tenants if tenants is not None else Tenants(settings)
    return [
        CancelStage(tenants, signed=settings.kafka.record_key is not None),
        Decode(settings, codec),
        Authenticate(tenants),
        Owner(settings.kafka.topics, active=tenants.limited),
        Validate(settings, InternalTopics(settings), tenants),
        TenantLimits(active=tenants.configured),
        Deadline(settings),
        ResolveModel(settings, tenants),
        AllowedModels(tenants),
    ]


def build_pipeline(settings: Settings, views: Views, codec: Codec) -> list[Stage]:
    """The order, in one place."""
    tenants = Tenants(settings)
    limited = tenants.limited
    return [
        *request_stages(settings, codec, tenants),
        Dedup(views.dedup),
        Fallback(settings, views.health, tenants),
        Overload(views.load, views.health),
        RateLimit(views.accounts, settings.router, active=limited),
        Budget(views.accounts, settings, active=limited),
        Route(settings.kafka.topics),
    ]


class Pipeline:
    """Runs the stages on one record. Never raises: an unexpected failure on these bytes is a refusal."""

    def __init__(self, stages: list[Stage], codec: Codec) -> None:
        self.stages = stages
        # what runs: a stage with nothing configured to do (`active` False: no tenants, no limits) is left out
        self.running = [s for s in stages if getattr(s, "active", True)]
        self._codec = codec

    def run(self, ctx: Context) -> tuple[str, Outcome]:
        """The stage that decided, and its outcome."""
        name = "pipeline"
        try:
            for stage in self.running:
                name = stage.name
                v = stage(ctx)
                if not isinstance(v, Continue):
                    return name, v
                ctx = v.ctx
        except Exception as exc:  # any input that trips the code is refused, never a crash or a skip
            value = ctx.value or b""
            s = self._codec.salvage(value, ContentType.JSON) if len(value) < SALVAGE_MAX_BYTES else {}
            message = f"request could not be processed: {type(exc).__name__}: {str(exc)[:200]}"
            return name, Reject(
                ErrorCode.INVALID_REQUEST,
                message,
                s.get("id"),
                s.get("reply_to"),
                to_dlq=True,
                content_type=s.get("encoding", ContentType.JSON.value),
            )
        return name, Reject(ErrorCode.INTERNAL, "no stage decided", None, None, to_dlq=True)
