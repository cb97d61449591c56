"""`make eval`: the labelled incidents of evals/incidents.yml through the service's own diagnosis path
(Enricher.diagnose: prompt, budget, model or rules), printing the hit rate and each miss.

Without LLM_API_KEY the rules answer; with it, the configured model does (LLM_BASE_URL, LLM_MODEL as
for the service), and the tokens and cost are printed too.

    python -m evals [--rules] [--min PERCENT] [--only ID ...]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import httpx

from app.config import Settings
from app.cost import Ledger, PriceTable
from app.enrich import Enricher
from app.llm import LLMClient
from app.metrics import Metrics
from app.models import Diagnosis, DiagnosisSource
from app.prometheus import ContextBuilder, PrometheusClient
from app.prompts import Prompts
from app.store import DailySpend
from evals.incidents import Incident, load


@dataclass(frozen=True)
class Outcome:
    incident: Incident
    diagnosis: Diagnosis
    source: DiagnosisSource

    @property
    def missing(self) -> list[str]:
        return self.incident.missing(self.diagnosis.diagnosis)

    @property
    def hit(self) -> bool:
        return not self.missing


class NoSpend:
    """The eval's spend is its own: it neither reads nor adds to the service's store."""

    def __init__(self) -> None:
        self.usd = 0.0

    async def add_llm_spend(self, day: str, usd: float, prompt: int, completion: int) -> None:
        self.usd += usd

    async def llm_spend(self, day: str) -> DailySpend:
        return DailySpend(usd=self.usd)


def enricher(settings: Settings, http: httpx.AsyncClient, rules_only: bool) -> Enricher:
    metrics = Metrics()
    key = None if rules_only or settings.llm_api_key is None else settings.llm_api_key
    llm = LLMClient(
        http,
        base_url=settings.llm_base_url,
        api_key=key.get_secret_value() if key else None,
        model=settings.llm_model,
        timeout=settings.llm_timeout_seconds,
        max_attempts=settings.llm_max_attempts,
        concurrency=settings.llm_concurrency,
        max_tokens=settings.llm_max_tokens,
        metrics=metrics,
    )
    # The incidents carry no metric history: the context step is not asked (see diagnose below).
    contexts = ContextBuilder(PrometheusClient(http, "http://127.0.0.1:9"), 30, "", 1, 1)
    ledger = Ledger(NoSpend(), PriceTable(settings.price_overrides), metrics, daily_budget_usd=None)
    return Enricher(
        contexts,
        llm,
        Prompts.load(settings.prompts_dir),
        metrics,
        language=settings.analysis_language,
        window_minutes=settings.context_window_minutes,
        prompt_budget=settings.llm_prompt_budget_chars,
        ledger=ledger,
    )


async def run(incidents: list[Incident], settings: Settings, rules_only: bool) -> list[Outcome]:
    async with httpx.AsyncClient(timeout=settings.llm_timeout_seconds) as http:
        diagnoser = enricher(settings, http, rules_only)

        async def one(incident: Incident) -> Outcome:
            diagnosis, source = await diagnoser.diagnose(incident.payload(), [])
            return Outcome(incident, diagnosis, source)

        return list(await asyncio.gather(*(one(i) for i in incidents)))


def report(outcomes: list[Outcome], out: object = sys.stdout) -> float:
    write = out.write  # type: ignore[attr-defined]
    hits = sum(o.hit for o in outcomes)
    for outcome in outcomes:
        mark = "hit " if outcome.hit else "MISS"
        write(f"{mark} {outcome.incident.id:<34} {outcome.source.label}\n")
        if not outcome.hit:
            write(f"     expected {', '.join(outcome.missing)} in: {outcome.diagnosis.diagnosis}\n")
    tokens = sum(o.source.tokens or 0 for o in outcomes)
    cost = sum(o.source.cost_usd or 0 for o in outcomes)
    rate = 100 * hits / len(outcomes) if outcomes else 0.0
    write(f"\n{hits} of {len(outcomes)} diagnoses name the known cause: {rate:.1f} %\n")
    if tokens:
        write(f"LLM: {tokens:,} tokens, ${cost:.4f}\n")
    return rate


def main(argv: list[str] | None = None) -> int:
    args = argparse.ArgumentParser(prog="make eval", description=__doc__.split("\n\n")[0])
    args.add_argument("--rules", action="store_true", help="the rules even with LLM_API_KEY set")
    args.add_argument("--min", type=float, default=0, help="exit 1 below this hit rate (percent)")
    args.add_argument("--only", nargs="*", default=None, help="incident ids to run")
    parsed = args.parse_args(argv)
    incidents = load()
    if parsed.only:
        incidents = [i for i in incidents if i.id in parsed.only]
    settings = Settings()
    rate = report(asyncio.run(run(incidents, settings, parsed.rules)))
    return 1 if rate < parsed.min else 0


if __name__ == "__main__":
    sys.exit(main())
