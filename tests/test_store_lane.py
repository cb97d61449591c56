# ruff: noqa: F811 (the store fixtures come from test_store.py)
"""The Store contract of page-first, on every backend: the LLM lane's diagnoses, the edits they
owe, and which pending work is taken first."""

from __future__ import annotations

import asyncio

import pytest

from app.incident import Transition
from app.priority import AGING_SECONDS, SEVERITY_RANK
from app.store import LeaseLostError, QueuedDiagnosis
from tests.test_store import backend, columns, opening, store  # noqa: F401 - the shared fixtures

CRITICAL, WARNING = SEVERITY_RANK["critical"], SEVERITY_RANK["warning"]


def later(s, seconds: float) -> None:
    """Move the store's clocks (one object on PostgreSQL, two on SQLite)."""
    s.clock.now += seconds
    if s.lease is not s.clock:
        s.lease.now += seconds


async def page_claimed(s, key: str = "k", group: str = "g", rank: int = CRITICAL):
    await s.accept(key, group, '{"page": true}', 600, rank)
    claimed = await s.claim("page-worker", 30)
    assert claimed is not None and claimed.kind == "alert"
    return claimed


async def test_a_diagnosis_is_queued_once_and_claimed_by_the_lane_with_its_page(store) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, '[{"ctx": 1}]', CRITICAL)
    await store.queue_diagnosis(page.claim, '[{"ctx": 2}]', CRITICAL)  # a retry of the page
    job = await store.claim_diagnosis("lane", 60)
    assert job is not None and job.claim.notification_id == page.id
    assert (job.payload, job.context) == ('{"page": true}', '[{"ctx": 1}]')
    assert await store.claim_diagnosis("lane-2", 60) is None, "queued once"


async def test_the_lane_holds_a_diagnosis_under_its_own_name_and_it_is_not_old_yet(
    store, backend
) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    job = await store.claim_diagnosis("lane-3", 60)
    assert 0 <= job.age < 1, "queued just now"
    assert columns(backend, page.id, "owner", table="diagnoses") == ("lane-3",)


async def test_a_page_purged_before_its_edit_has_no_edit_target(store) -> None:
    assert await store.edit_target(424242) is None


async def test_the_llm_backlog_counts_diagnoses_until_they_are_answered(store) -> None:
    page = await page_claimed(store)
    assert await store.llm_backlog() == 0
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    assert await store.llm_backlog() == 1, "queued"
    job = await store.claim_diagnosis("lane", 60)
    assert await store.llm_backlog() == 1, "running"
    await store.answer_diagnosis(job.claim, '"a"')
    assert await store.llm_backlog() == 0


async def test_a_diagnosis_counts_as_answered_only_once_its_answer_is_stored(store) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    assert await store.diagnosis_answered(page.id) is False, "queued"
    job = await store.claim_diagnosis("lane", 60)
    assert await store.diagnosis_answered(page.id) is False, "running"
    await store.answer_diagnosis(job.claim, '"a"')
    assert await store.diagnosis_answered(page.id) is True
    assert await store.diagnosis_answered(page.id + 1) is False, "no such diagnosis"


async def test_an_answer_ready_before_the_page_decides_is_taken_and_owes_no_edit(store) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    job = await store.claim_diagnosis("lane", 60)
    assert await store.answer_diagnosis(job.claim, '{"answer": 1}') is False
    assert await store.take_diagnosis(page.claim) == '{"answer": 1}'
    await store.finish(page.claim)
    assert await store.claim("w", 30) is None, "no edit was queued"


async def test_an_answer_after_the_page_went_without_it_queues_one_edit_after_the_page(
    store,
) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    assert await store.take_diagnosis(page.claim) is None, "not answered: the page goes now"
    job = await store.claim_diagnosis("lane", 60)
    assert await store.answer_diagnosis(job.claim, '{"answer": 2}') is True
    assert await store.take_diagnosis(page.claim) is None, "once detached, the edit carries it"
    assert await store.claim("w", 30) is None, "the edit waits for its page to finish"
    await store.finish(page.claim)
    edit = await store.claim("w", 30)
    assert edit is not None
    assert (edit.kind, edit.target_id, edit.payload) == ("edit", page.id, '{"answer": 2}')
    assert edit.group_id == page.group_id


async def test_a_page_that_goes_without_waiting_queues_its_diagnosis_owed_with_its_enrichment(
    store,
) -> None:
    page = await page_claimed(store)
    owed = QueuedDiagnosis('[{"ctx": 3}]', CRITICAL)
    await store.save_enrichment(page.claim, '{"preliminary": 1}', opening("g", {"a"}), owed)
    job = await store.claim_diagnosis("lane", 60)
    assert job is not None and (job.claim.notification_id, job.context) == (page.id, owed.context)
    assert await store.answer_diagnosis(job.claim, '{"answer": 3}') is True, "owed as an edit"
    await store.finish(page.claim)
    edit = await store.claim("w", 30)
    assert (edit.kind, edit.target_id, edit.payload) == ("edit", page.id, '{"answer": 3}')


async def test_a_retried_page_going_without_an_answer_it_queued_before_owes_it_as_an_edit(
    store,
) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)  # the first attempt waited...
    job = await store.claim_diagnosis("lane", 60)
    assert await store.answer_diagnosis(job.claim, '{"answer": 4}') is False  # ...and crashed
    owed = QueuedDiagnosis("[]", CRITICAL)  # the retry does not wait
    await store.save_enrichment(page.claim, '{"preliminary": 1}', opening("g", {"a"}), owed)
    assert await store.claim_diagnosis("lane", 60) is None, "answered already: not asked again"
    await store.finish(page.claim)
    edit = await store.claim("w", 30)
    assert edit is not None and (edit.kind, edit.payload) == ("edit", '{"answer": 4}')
    await store.finish(edit.claim)
    assert await store.claim("w", 30) is None, "one edit"


async def test_an_edit_waits_behind_pages_of_its_pages_severity_accepted_after_it(store) -> None:
    page = await page_claimed(store, "k", "first", CRITICAL)
    await store.save_enrichment(
        page.claim, "{}", opening("first", {"a"}), QueuedDiagnosis("[]", CRITICAL)
    )
    await store.finish(page.claim)
    job = await store.claim_diagnosis("lane", 60)
    assert await store.answer_diagnosis(job.claim, '"answer"') is True
    later(store, 1)
    await store.accept("k2", "second", "a later critical page", 600, CRITICAL)
    assert (await store.claim("w", 30)).payload == "a later critical page", "pages first"
    assert (await store.claim("w", 30)).kind == "edit"


async def test_the_page_deciding_and_the_lane_answering_at_once_never_lose_the_answer(
    store,
) -> None:
    for attempt in range(6):
        page = await page_claimed(store, key=f"k{attempt}", group=f"g{attempt}")
        await store.queue_diagnosis(page.claim, "[]", CRITICAL)
        job = await store.claim_diagnosis("lane", 60)
        taken, edit_queued = await asyncio.gather(
            store.take_diagnosis(page.claim), store.answer_diagnosis(job.claim, '"a"')
        )
        assert (taken is not None) != edit_queued, "exactly one of: taken, or owed as an edit"
        await store.finish(page.claim)
        edit = await store.claim("w", 30)
        assert (edit is not None) == edit_queued
        if edit is not None:
            await store.finish(edit.claim)


async def test_a_diagnosis_whose_lane_worker_died_is_taken_again_and_the_dead_one_cannot_answer(
    store,
) -> None:
    page = await page_claimed(store)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    dead = await store.claim_diagnosis("crashed-lane", 50)
    assert await store.claim_diagnosis("lane", 50) is None
    later(store, 51)
    again = await store.claim_diagnosis("lane", 50)
    assert again is not None and again.claim.token > dead.claim.token
    with pytest.raises(LeaseLostError, match=f"^diagnosis of {page.id}: claim taken over$"):
        await store.answer_diagnosis(dead.claim, '"late"')
    assert await store.answer_diagnosis(again.claim, '"fresh"') is False


async def test_the_lane_takes_critical_diagnoses_before_earlier_warnings(store) -> None:
    warning = await page_claimed(store, "k1", "g1", WARNING)
    critical = await page_claimed(store, "k2", "g2", CRITICAL)
    await store.queue_diagnosis(warning.claim, "[]", WARNING)
    await store.queue_diagnosis(critical.claim, "[]", CRITICAL)
    first = await store.claim_diagnosis("lane", 60)
    assert first.claim.notification_id == critical.id


async def test_a_critical_page_is_claimed_before_warnings_accepted_earlier(store) -> None:
    for i in range(3):
        await store.accept(f"w{i}", f"warning-{i}", "warning", 600, WARNING)
    await store.accept("c", "critical", "critical", 600, CRITICAL)
    first = await store.claim("w", 30)
    assert first.payload == "critical"
    assert (await store.claim("w", 30)).payload == "warning", "then the warnings"


async def test_a_warning_that_waited_two_aging_periods_goes_before_a_fresh_critical(
    store,
) -> None:
    await store.accept("w", "warning-group", "warning", 600, WARNING)
    later(store, 2 * AGING_SECONDS + 1)
    await store.accept("c", "critical-group", "critical", 600, CRITICAL)
    assert (await store.claim("w", 30)).payload == "warning", "no starvation"


async def test_severity_never_reorders_one_groups_notifications(store) -> None:
    await store.accept("k1", "g", "warning first", 600, WARNING)
    await store.accept("k2", "g", "critical second", 600, CRITICAL)
    first = await store.claim("w", 30)
    assert first.payload == "warning first"
    assert await store.claim("w", 30) is None


async def test_a_claimed_page_knows_how_long_ago_it_was_accepted(store) -> None:
    await store.accept("k", "g", "{}", 600, CRITICAL)
    later(store, 7)
    claimed = await store.claim("w", 30)
    assert 6.5 <= claimed.age <= 8.5


async def test_an_edit_sees_whether_its_pages_incident_is_still_open(store) -> None:
    page = await page_claimed(store)
    incident = await store.save_enrichment(page.claim, '{"shown": 1}', opening("g", {"a"}))
    target = await store.edit_target(page.id)
    assert target.incident_open and target.enrichment == '{"shown": 1}'
    await store.finish(page.claim)
    await store.accept("k2", "g", "resolved", 600)
    resolve = await store.claim("w", 30)
    ends = Transition(kind="resolved", group_id="g", incident_id=incident, firing=frozenset())
    await store.save_enrichment(resolve.claim, "{}", ends)
    assert (await store.edit_target(page.id)).incident_open is False


async def test_an_edit_saves_what_its_page_shows_now_for_a_later_resolve(store) -> None:
    page = await page_claimed(store)
    await store.save_enrichment(page.claim, '{"preliminary": true}', opening("g", {"a"}))
    await store.finish(page.claim)
    await store.accept("edit", "g", "{}", 600)
    edit = await store.claim("lane-edit", 30)
    await store.revise(edit.claim, page.id, '{"final": true}')
    assert (await store.edit_target(page.id)).enrichment == '{"final": true}'


async def test_an_edit_takes_its_pages_rank_so_a_critical_group_is_not_held_behind_warnings(
    store,
) -> None:
    page = await page_claimed(store, "k", "critical-group", CRITICAL)
    await store.queue_diagnosis(page.claim, "[]", CRITICAL)
    assert await store.take_diagnosis(page.claim) is None
    await store.finish(page.claim)
    for i in range(3):
        await store.accept(f"w{i}", f"warning-{i}", "warning", 600, WARNING)
    job = await store.claim_diagnosis("lane", 60)
    assert await store.answer_diagnosis(job.claim, '"answer"') is True
    first = await store.claim("w", 30)
    assert first.kind == "edit", "the critical page's edit goes before the warnings"
