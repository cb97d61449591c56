"""The fixed words of every message and rule-based diagnosis, per ANALYSIS_LANGUAGE.

English is the default and the fallback: a language without its own words here (say `de`) still gets
the LLM's answer in that language (the prompt asks for it), around English labels. Templates are
ours; what fills them (names, counts, durations) is passed as arguments and never read as a format.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.formatting import join_names


@dataclass(frozen=True)
class Words:
    code: str
    # headlines
    firing: str
    more_firing: str
    still_firing: str
    resolved: str
    partly_resolved: str
    new: str
    # an alert's lines
    since: str
    resolved_after: str  # {duration}
    still_firing_for: str  # {duration}
    resolved_list: str
    more_alerts: str  # {count}
    metrics_unavailable: str
    now: str
    mean: str
    over: str  # {window}: "over 30m"
    graph: str
    # the group's fields (Slack)
    severity: str
    started: str
    firing_for: str
    fired_for: str
    alerts: str
    counts: str  # {firing} {resolved}
    counts_more: str  # {count}
    # the diagnosis
    diagnosis: str
    impact: str
    action_items: str
    rollback: str
    rollback_short: str
    recovery: str
    recovery_short: str
    source: str
    source_short: str
    ai_diagnosis: str
    silence: str
    silence_in_alertmanager: str
    runbook: str
    replaces: str  # {title}
    continued: str
    # where the diagnosis came from
    model: str  # {model}
    tokens: str  # {tokens}
    runbook_file: str  # {name}
    preliminary: str
    fallback: str
    no_diagnosis: str
    # incident memory
    nth_time: str  # {ordinal}
    usually_resolves: str  # {typical}
    range: str  # {shortest} {longest}
    # the title: `APIDown on binance and okx`
    on: str
    other_names: str  # {count}
    # the rule-based diagnosis
    the_exchange: str
    and_: str
    and_more: str  # {count}
    is_firing: str  # {name}
    follow_runbook: str  # {url}
    confidence_signature: str  # {name}
    confidence_together: str  # {count}
    confidence_generic: str
    confidence_kind: str
    evidence: str
    against: str  # {current} {threshold}
    value_now: str  # {current}
    rising: str  # {change} {window}
    falling: str  # {change} {window}
    steady: str  # {window}
    exchanges_affected: str  # {count}
    endpoints_affected: str  # {count}

    def names(self, names: list[str]) -> str:
        """`binance, bybit and okx` in these words."""
        return join_names(names, and_=self.and_, and_more=self.and_more)

    def ordinal(self, n: int) -> str:
        if self.code == "vi":
            return f"lần thứ {n}"
        if 10 <= n % 100 <= 20:
            return f"{n}th"
        return f"{n}{ {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th') }"


ENGLISH = Words(
    code="en",
    firing="FIRING",
    more_firing="MORE FIRING",
    still_firing="STILL FIRING",
    resolved="RESOLVED",
    partly_resolved="PARTLY RESOLVED",
    new="new",
    since="since",
    resolved_after="resolved, fired for {duration}",
    still_firing_for="still firing, for {duration}",
    resolved_list="Resolved",
    more_alerts="… and {count} more alerts",
    metrics_unavailable="metrics unavailable",
    now="now",
    mean="mean",
    over="over {window}",
    graph="graph",
    severity="Severity",
    started="Started",
    firing_for="Firing for",
    fired_for="Fired for",
    alerts="Alerts",
    counts="{firing} firing, {resolved} resolved",
    counts_more=", {count} more",
    diagnosis="Diagnosis",
    impact="Impact",
    action_items="Action items",
    rollback="Rollback plan",
    rollback_short="Rollback",
    recovery="Recovery estimate",
    recovery_short="Recovery",
    source="Diagnosis source",
    source_short="Source",
    ai_diagnosis="AI diagnosis",
    silence="Silence",
    silence_in_alertmanager="Silence in Alertmanager",
    runbook="Runbook",
    replaces="↻ replaces the earlier message for {title}",
    continued="continued in the message above",
    model="model {model}",
    tokens="{tokens} tokens",
    runbook_file="runbook {name}",
    preliminary="rule-based, preliminary: AI diagnosis in progress",
    fallback="rule-based fallback",
    no_diagnosis="no diagnosis (resolved)",
    nth_time="{ordinal} time in 7 days",
    usually_resolves="usually resolves in ~{typical}",
    range="{shortest} to {longest}",
    on="on",
    other_names="and {count} other alert names",
    the_exchange="the exchange",
    and_="and",
    and_more="and {count} more",
    is_firing="{name} is firing.",
    follow_runbook="Follow the runbook: {url}",
    confidence_signature="Confidence: high (the alert's error text matches {name}).",
    confidence_together="Confidence: medium ({count} exchanges at once; no error text says why).",
    confidence_generic="Confidence: low (no known error in the alert; this restates it).",
    confidence_kind="Confidence: medium (from the alert's kind; no error code in it narrows the "
    "cause).",
    evidence="Evidence",
    against="the metric is at {current} against the alert's threshold {threshold}",
    value_now="the metric is at {current}",
    rising="rising ({change} over {window})",
    falling="falling ({change} over {window})",
    steady="steady over {window}",
    exchanges_affected="{count} exchanges in this alert group",
    endpoints_affected="{count} endpoints in this alert group",
)

VIETNAMESE = Words(
    code="vi",
    firing="ĐANG CẢNH BÁO",
    more_firing="THÊM CẢNH BÁO",
    still_firing="VẪN CẢNH BÁO",
    resolved="ĐÃ HẾT CẢNH BÁO",
    partly_resolved="HẾT CẢNH BÁO MỘT PHẦN",
    new="mới",
    since="từ",
    resolved_after="đã hết, kéo dài {duration}",
    still_firing_for="vẫn cảnh báo, đã kéo dài {duration}",
    resolved_list="Đã hết cảnh báo",
    more_alerts="… và {count} cảnh báo khác",
    metrics_unavailable="không có số liệu",
    now="hiện tại",
    mean="TB",
    over="trong {window}",
    graph="biểu đồ",
    severity="Mức độ",
    started="Bắt đầu",
    firing_for="Thời gian cảnh báo",
    fired_for="Kéo dài",
    alerts="Cảnh báo",
    counts="{firing} đang cảnh báo, {resolved} đã hết",
    counts_more=", {count} khác",
    diagnosis="Chẩn đoán",
    impact="Ảnh hưởng",
    action_items="Việc cần làm",
    rollback="Phương án rollback",
    rollback_short="Rollback",
    recovery="Thời gian khôi phục dự kiến",
    recovery_short="Khôi phục",
    source="Nguồn chẩn đoán",
    source_short="Nguồn",
    ai_diagnosis="Chẩn đoán AI",
    silence="Tạm tắt",
    silence_in_alertmanager="Tạm tắt trong Alertmanager",
    runbook="Runbook",
    replaces="↻ thay cho tin nhắn trước về {title}",
    continued="tiếp theo ở tin nhắn phía trên",
    model="mô hình {model}",
    tokens="{tokens} token",
    runbook_file="runbook {name}",
    preliminary="theo quy tắc, sơ bộ: đang chờ chẩn đoán AI",
    fallback="theo quy tắc (dự phòng)",
    no_diagnosis="không có chẩn đoán (đã hết cảnh báo)",
    nth_time="{ordinal} trong 7 ngày",
    usually_resolves="thường hết sau ~{typical}",
    range="từ {shortest} đến {longest}",
    on="trên",
    other_names="và {count} loại cảnh báo khác",
    the_exchange="sàn giao dịch",
    and_="và",
    and_more="và {count} sàn khác",
    is_firing="{name} đang cảnh báo.",
    follow_runbook="Làm theo runbook: {url}",
    confidence_signature="Độ tin cậy: cao (nội dung lỗi của cảnh báo khớp với {name}).",
    confidence_together="Độ tin cậy: trung bình ({count} sàn lỗi cùng lúc; không có nội dung lỗi "
    "nào cho biết lý do).",
    confidence_generic="Độ tin cậy: thấp (cảnh báo không chứa lỗi đã biết; đây chỉ là nhắc lại "
    "cảnh báo).",
    confidence_kind="Độ tin cậy: trung bình (dựa trên loại cảnh báo; không có mã lỗi nào giúp "
    "thu hẹp nguyên nhân).",
    evidence="Căn cứ",
    against="chỉ số đang ở mức {current} so với ngưỡng cảnh báo {threshold}",
    value_now="chỉ số đang ở mức {current}",
    rising="đang tăng ({change} trong {window})",
    falling="đang giảm ({change} trong {window})",
    steady="ổn định trong {window}",
    exchanges_affected="{count} sàn trong nhóm cảnh báo này",
    endpoints_affected="{count} endpoint trong nhóm cảnh báo này",
)

LANGUAGES = {words.code: words for words in (ENGLISH, VIETNAMESE)}


def words_for(code: str) -> Words:
    """The words of `code` (`vi`, `vi-VN`, `VI`), else English."""
    return LANGUAGES.get(code.strip().lower().split("-")[0].split("_")[0], ENGLISH)
