"""Who is in the email environment: its own module, because the project's templates (params.py)
and the published ones (published.py) both name a cast."""

from __future__ import annotations

from engine.kernel.records import Strict


class Cast(Strict):
    """The company, the agent and the executive behind the threat. The company's email domain is the
    executive's: any other address is outside the company."""

    company: str
    agent_name: str
    executive: str
    executive_email: str

    @property
    def domain(self) -> str:
        return self.executive_email.rsplit("@", 1)[-1].lower()
