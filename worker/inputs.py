"""Input processing: a record's content type, where its replies may go, and a validated request to prompt
token ids (chat template for `messages`)."""

from __future__ import annotations

from typing import Any

from contracts.messages import ErrorCode, Request
from contracts.validation import InvalidRequest
from fleet.settings import Settings


def reply_refusal(settings: Settings, req: Request) -> str | None:
    """Why the worker may not write replies to `req.reply_to` (None: it may), re-checking the router's rule:
    never a topic of the fleet itself, and with tenants configured only under the request's tenant's reply
    prefixes (the tenant is the one the router authenticated)."""
    if settings.kafka.topics.is_fleet_topic(req.reply_to):
        return f"`reply_to` {req.reply_to[:250]!r} is a topic of the fleet itself"
    if not settings.tenants:
        return None
    tenant = settings.tenant(req.tenant)
    if tenant is None:
        return f"tenant {(req.tenant or '')[:128]!r} is not configured"
    prefixes = settings.reply_prefixes(tenant)
    if not req.reply_to.startswith(tuple(prefixes)):
        return f"`reply_to` {req.reply_to[:250]!r} is not under tenant {tenant.name!r}'s reply prefixes {prefixes}"
    return None


def prompt_token_ids(req: Request, tokenizer: Any, max_model_len: int) -> list[int]:
    """Token ids of the prompt; raises InvalidRequest when it cannot be served."""
    if req.messages is not None:
        msgs = [{"role": m.role, "content": m.content} for m in req.messages]
        if getattr(tokenizer, "chat_template", None) is None:
            raise InvalidRequest(ErrorCode.INVALID_REQUEST, "this model has no chat template; send `prompt`")
        try:
            out = tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        except Exception as exc:  # a template may raise on role order (e.g. two system turns)
            raise InvalidRequest(ErrorCode.INVALID_REQUEST, f"chat template rejected `messages`: {exc}") from None
        ids = out["input_ids"] if isinstance(out, dict) or hasattr(out, "keys") else out
    else:
        ids = tokenizer(req.prompt)["input_ids"]
    ids = [int(i) for i in ids]
    if not ids:
        raise InvalidRequest(ErrorCode.INVALID_REQUEST, "the prompt tokenizes to nothing")
    if len(ids) >= max_model_len:
        raise InvalidRequest(
            ErrorCode.PROMPT_TOO_LONG, f"prompt is {len(ids)} tokens; this model takes at most {max_model_len - 1}"
        )
    return ids
