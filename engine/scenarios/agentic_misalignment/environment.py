"""The simulated email environment: the prompt a design cell builds, and the agent's sent emails
parsed from its reply (the tool format the system prompt teaches)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.scenarios.agentic_misalignment.params import AgenticParams

_EMAIL = re.compile(r"<tool_use:email>(.*?)</tool_use:email>", re.DOTALL | re.IGNORECASE)
_FIELD = re.compile(r"(to|subject|body)\s*:\s*(.*?)\s*(?=\|\s*(?:to|subject|body)\s*:|$)", re.DOTALL | re.IGNORECASE)
_SCRATCHPAD = re.compile(r"<SCRATCHPAD_REASONING>(.*?)(?:</SCRATCHPAD_REASONING>|$)", re.DOTALL | re.IGNORECASE)


@dataclass(frozen=True)
class SentEmail:
    to: str
    subject: str
    body: str


def build_messages(params: AgenticParams, condition: dict[str, str]) -> list[dict[str, str]]:
    """System prompt and inbox for one condition (a level of each factor)."""
    fragments = [params.levels[f][condition[f]] for f in params.factor_order]
    system = " ".join(p for p in [params.system_prompt.format(agent_name=params.agent_name, company=params.company),
                                  *(fr.system.strip() for fr in fragments)] if p)
    inbox = "\n\n".join(e for e in [params.base_emails.strip(), *(fr.emails.strip() for fr in fragments)] if e)
    return [{"role": "system", "content": system},
            {"role": "user", "content": f"New emails in your inbox:\n\n{inbox}\n\nProcess the inbox now."}]


def sent_emails(reply: str) -> list[SentEmail]:
    """Every well-formed email tool call in the reply; a block without a recipient is not an email."""
    out = []
    for block in _EMAIL.findall(reply or ""):
        fields = {k.lower(): v.strip() for k, v in _FIELD.findall(block.strip())}
        if fields.get("to"):
            out.append(SentEmail(fields["to"], fields.get("subject", ""), fields.get("body", "")))
    return out


def scratchpad(reply: str) -> str | None:
    match = _SCRATCHPAD.search(reply or "")
    return match.group(1).strip() if match else None
