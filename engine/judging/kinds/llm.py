"""An LLM judge: a model reads the request and the reply and answers one rubric label with a
one-sentence rationale, as JSON constrained to the rubric's labels where the provider allows."""

from __future__ import annotations

from typing import Any

from engine.kernel.errors import SpecError
from engine.execute.parsing import load_json_object
from engine.kernel.records import CallEstimate, Grade, tokens_for
from engine.kernel.contracts import Judge
from engine.kernel.registry import register_judge

RATIONALE_MAX_CHARS = 160


@register_judge
class LLMJudge(Judge):
    kind = "llm"

    def check(self) -> None:
        super().check()
        if self.spec.model is None:
            raise SpecError("an llm judge needs a model (e.g. '/model@judges.<id>.model: gemma3_270m')",
                            key="model")

    def messages(self, request: str, response: str) -> list[dict[str, str]]:
        labels = self.spec.rubric.labels
        cut = self.spec.max_response_chars
        shown = response if len(response) <= cut else response[:cut] + " [...cut for grading]"
        return [
            {"role": "system", "content": self.spec.rubric.instructions.strip()},
            {"role": "user", "content": (
                f"REQUEST:\n<<<\n{request.strip()}\n>>>\n\nREPLY:\n<<<\n{shown.strip()}\n>>>\n\n"
                'Answer with JSON only: {"rationale": one short sentence, "label": one of '
                f"{', '.join(labels)}}}")},
        ]

    def schema(self) -> dict[str, Any]:
        return {"type": "object", "properties": {
            "rationale": {"type": "string", "maxLength": RATIONALE_MAX_CHARS},
            "label": {"type": "string", "enum": list(self.spec.rubric.labels)}},
            "required": ["rationale", "label"]}

    def parse(self, text: str) -> tuple[dict[str, Any] | None, str]:
        """A label outside the rubric is a failed reply (re-asked), never a guess."""
        data, status = load_json_object(text)
        if data is None or not isinstance(data.get("label"), str):
            return None, "failed"
        label = data["label"].strip().upper().replace(" ", "_")
        if label not in self.spec.rubric.labels:
            return None, "failed"
        if label != data["label"]:
            status = "repaired"
        rationale = data.get("rationale")
        return {"label": label, "rationale": rationale if isinstance(rationale, str) else None}, status

    def estimate(self, subjects: int):
        # Request + reply (cut at max_response_chars) + instructions, all re-asks.
        chars = len(self.spec.rubric.instructions) + self.spec.max_response_chars + 600
        return CallEstimate(self.model_key, subjects, subjects * tokens_for(chars), subjects * self.spec.max_tokens)

    async def grade(self, subject, ctx) -> Grade:
        model = self.spec.model
        reply = await ctx.chat(
            model_key=self.model_key, messages=self.messages(subject.request, subject.response),
            purpose=f"judge/{self.judge_id}/{self.fingerprint}",
            generation={"temperature": self.spec.temperature, "top_p": 1.0, "max_tokens": self.spec.max_tokens},
            parse=self.parse, response_schema=self.schema() if model.json_schema_output else None)
        return Grade(reply.value["label"], reply.value["rationale"], call_id=reply.call_id)

    def describe(self) -> str:
        m = self.spec.model
        return (f"{self.spec.display_name}: {m.display_name} ({m.litellm_id}) reads the request and the reply "
                f"(cut at {self.spec.max_response_chars} characters) under rubric {self.rubric_version}, "
                f"temperature {self.spec.temperature:g}, and answers one label with a rationale as JSON.")
