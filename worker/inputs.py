"""Input processing: a record's content type, and a validated request to prompt token ids (chat
template for `messages`)."""

from __future__ import annotations

from typing import Any

from contracts.messages import ErrorCode, Request
from contracts.validation import InvalidRequest


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
