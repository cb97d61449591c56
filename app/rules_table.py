"""The rule-based diagnosis's knowledge, as data (app/rules.py applies it; no logic here).

- ALERT_PLAYBOOKS: what to think and do per exchange-API alert name.
- SIGNATURES: error texts (exchange codes and messages, client-library and network errors), in the
  order they are tried: the first whose pattern matches the failure's description names its cause.
  A more specific signature comes before a more general one (an order-rate limit before rate limits,
  a DNS failure before timeouts). Each is exercised by an incident of evals/incidents.yml, which
  `make test` checks.
- ALL_AT_ONCE: several exchanges failing together with no error text; GENERIC: nothing known.

To add one: a Signature (name, pattern, Playbook) in the right place, and an incident in
evals/incidents.yml whose alert says it the way your systems do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Playbook:
    """Texts may use `{exchanges}`, `{severity}` and `{singular|plural}` forms that agree with the
    number of exchanges; nothing else is substituted."""

    diagnosis: str
    impact: str
    actions: tuple[str, ...]
    rollback: str
    recovery: str


ALERT_PLAYBOOKS: dict[str, Playbook] = {
    "APIDown": Playbook(
        diagnosis="The {exchanges} {API is|APIs are} not answering health checks: the "
        "{exchange is|exchanges are} down or in maintenance, or the path to {it|them} (DNS, "
        "egress proxy, network, TLS) is broken.",
        impact="No market data or order placement through {exchanges}: open positions cannot be "
        "adjusted and strategies depending on {it|them} are blind.",
        actions=(
            "Check the exchange's status page and announcement channel for maintenance or incidents.",
            "From the monitoring host, curl the exchange's ping endpoint to separate our network "
            "from theirs (DNS, TLS, egress proxy).",
            "If only one region or host fails, fail over to a healthy egress or API domain.",
            "Pause or reduce strategies that depend on {exchanges}; confirm open positions manually.",
        ),
        rollback="Revert any recent network, proxy, DNS or API-endpoint change; switch traffic back "
        "to the last known good endpoint.",
        recovery="Exchange maintenance: as announced (often 30-120 min); network faults: 5-15 min "
        "after failover.",
    ),
    "APILatencyHigh": Playbook(
        diagnosis="Requests to {exchanges} are slow: exchange-side load (volatility spikes), "
        "network path degradation, or our own client saturation (connection pool, CPU, GC).",
        impact="Orders and cancels land late; quotes go stale and slippage grows.",
        actions=(
            "Compare latency across exchanges: one slow exchange points at them, all slow at us.",
            "Check the client's connection pool, CPU and event-loop lag on the trading hosts.",
            "Check network latency and packet loss to the exchange's endpoints.",
            "Widen quotes or cut order rate until latency is back under the threshold.",
        ),
        rollback="Roll back the latest deploy or config change of the API client if latency rose "
        "right after it.",
        recovery="Usually 5-30 minutes; volatility-driven latency follows the market.",
    ),
    "RateLimitExhausted": Playbook(
        diagnosis="The request-weight budget for {exchanges} is nearly or fully used: a retry storm, "
        "a new or misbehaving strategy, or polling that should be a websocket stream.",
        impact="Further requests get 429 and, if ignored, 418 IP bans lasting minutes to days.",
        actions=(
            "Find the caller spending the weight: per-endpoint request counts in the last 15 minutes.",
            "Honour Retry-After and stop retry loops; add backoff with jitter.",
            "Move polling of prices and order state to websocket streams.",
            "Spread load across API keys or IPs only where the exchange's terms allow it.",
        ),
        rollback="Disable or roll back the strategy or deploy that raised the request rate.",
        recovery="The weight window resets within about a minute once the rate drops; an IP ban "
        "lasts from 2 minutes to 3 days.",
    ),
    "APIErrorRateHigh": Playbook(
        diagnosis="A high share of requests to {exchanges} fail: rejected requests (signature, "
        "timestamp, permissions, parameters) or exchange-side 5xx errors.",
        impact="Orders and account queries fail; positions may drift from what strategies believe.",
        actions=(
            "Break the errors down by HTTP status and exchange error code.",
            "4xx: check the API key, its permissions and IP allow-list, and the clock (NTP).",
            "5xx: check the exchange's status page; retry idempotent reads with backoff only.",
            "Reconcile open orders and positions against the exchange after errors clear.",
        ),
        rollback="Roll back the latest client release or API-key rotation if errors began with it.",
        recovery="Client-side causes: minutes after the fix; exchange-side: as announced.",
    ),
}

_NUM = r"(?<![\w.:-]){}(?![\w.:])"


@dataclass(frozen=True)
class Signature:
    name: str
    pattern: re.Pattern[str]
    playbook: Playbook


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "a timestamp outside recvWindow (Binance -1021, OKX 50102, Bybit 10002)",
        re.compile(
            r"-1021\b|"
            + _NUM.format("50102")
            + "|"
            + _NUM.format("10002")
            + r"|outside (of )?the recvwindow|timestamp for this request|timestamp request expired"
            r"|\brecv_?window\b|server timestamp",
            re.I,
        ),
        Playbook(
            diagnosis="Requests to {exchanges} are rejected because their timestamp is outside the "
            "receive window (Binance -1021, OKX 50102, Bybit 10002): the host clock has drifted "
            "or requests wait too long before they are sent.",
            impact="Signed requests (orders, cancels, account) fail while public data still works.",
            actions=(
                "Sync the clock: check `chronyc tracking` or `timedatectl` and restart NTP.",
                "Compare local time with the exchange's server time endpoint.",
                "Widen recvWindow (for example 5000 to 10000 ms) while the clock is fixed.",
            ),
            rollback="Restore the previous NTP or host configuration if it changed.",
            recovery="Minutes once the clock is synced.",
        ),
    ),
    Signature(
        "IP ban (HTTP 418)",
        re.compile(
            # "HTTP 418", not a bare 418: rule texts explain that the exchange *would* ban at 418.
            r"\b(http|status|code)[ :=]*418\b|\b418 (from|on|i'?m a teapot)\b"
            r"|ip (has been )?(auto-)?banned|banned until|way too many requests",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges} {has|have} banned this IP (HTTP 418) after rate limits kept "
            "being hit.",
            impact="All requests from this IP fail until the ban expires.",
            actions=(
                "Stop all traffic from the banned IP now: further requests extend the ban.",
                "Read the ban's expiry from the error body or Retry-After.",
                "Fail over to another allowed IP only after the request rate is fixed.",
            ),
            rollback="Roll back the change that raised the request rate.",
            recovery="As the exchange sets: 2 minutes to 3 days, growing with repeat offences.",
        ),
    ),
    Signature(
        "order-rate limit (Binance -1015)",
        re.compile(r"-1015\b|too many (new )?orders|order count limit", re.I),
        Playbook(
            diagnosis="{exchanges} {rejects|reject} new orders for the account's order rate limit "
            "(Binance -1015: orders per 10 seconds and per day), not the IP's request weight: a "
            "strategy is placing or amending orders faster than the account may.",
            impact="New orders are refused until the window rolls over; cancels still work.",
            actions=(
                "Find the strategy whose order count jumped; pause it or cut its order rate.",
                "Replace cancel-and-replace loops with order amendments where the exchange has them.",
                "Check the account's limits with the exchange's rateLimit/order endpoint.",
            ),
            rollback="Roll back the strategy or parameter change that raised the order rate.",
            recovery="Seconds for the 10-second window; the daily order count resets at 00:00 UTC.",
        ),
    ),
    Signature(
        "rate limit (HTTP 429 / -1003 / 50011 / 10006)",
        re.compile(
            _NUM.format("429")
            + r"|-1003\b|"
            + _NUM.format("50011")
            + "|"
            + _NUM.format("10006")
            + "|"
            + _NUM.format("10018")
            + r"|too many (requests|visits)|frequency limit|rate limit (exceeded|reached)",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges} {is|are} rate-limiting us (HTTP 429, Binance -1003, OKX 50011, "
            "Bybit 10006/10018): our request rate or weight is over the exchange's limit, "
            "typically a retry storm or polling that should be a stream.",
            impact="Requests are rejected; continuing risks an IP ban (418).",
            actions=(
                "Back off now and honour Retry-After.",
                "Cut request weight: batch endpoints, websocket streams instead of polling.",
            ),
            rollback="Roll back the strategy or deploy that raised the request rate.",
            recovery="About a minute once the request rate drops.",
        ),
    ),
    Signature(
        "IP not on the key's allow-list (OKX 50110 / Bybit 10010)",
        re.compile(
            _NUM.format("50110")
            + "|"
            + _NUM.format("10010")
            + r"|not included in your api key'?s ip whitelist|unmatched ip|bound ip",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges} {refuses|refuse} our requests because the egress IP they come "
            "from is not on the API key's IP allow-list: the egress (NAT gateway, proxy, new host) "
            "changed, or the key's allow-list was edited.",
            impact="Every signed request from this host fails; public market data still works.",
            actions=(
                "Find the current egress IP (curl ifconfig.me from the trading host).",
                "Compare it with the key's IP allow-list in the exchange's API management page.",
                "Add the new IP, or route traffic back through the allowed egress.",
            ),
            rollback="Move traffic back to the previous egress IP or NAT gateway.",
            recovery="Minutes after the allow-list or egress is fixed.",
        ),
    ),
    Signature(
        "bad request signature (Binance -1022 / OKX 50113 / Bybit 10004)",
        re.compile(
            r"-1022\b|"
            + _NUM.format("50113")
            + "|"
            + _NUM.format("10004")
            + r"|signature for this request is not valid|invalid sign\b|error sign\b",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges} {rejects|reject} the request signature: the API secret in use "
            "does not belong to the key (a rotation half done, stray whitespace), or the string "
            "we sign differs from what is sent (parameter order, URL encoding, body vs query).",
            impact="Every signed request fails: no orders, cancels or account data.",
            actions=(
                "Check that the key and secret come from the same pair (compare the key's fingerprint).",
                "Look for whitespace or newlines in the secret as loaded from the secret store.",
                "Log the exact string being signed (never the secret) and compare it with what is sent.",
            ),
            rollback="Restore the previous key pair or client release if the errors began with it.",
            recovery="Minutes once the right secret or signing code is deployed.",
        ),
    ),
    Signature(
        "invalid API key (401 / -2015)",
        re.compile(
            _NUM.format("401")
            + r"|-2015\b|-2014\b|-2008\b|"
            + _NUM.format("50111")
            + "|"
            + _NUM.format("10003")
            + r"|invalid api.?key|api key is invalid|invalid ok-access-key|unauthori[sz]ed",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges} {rejects|reject} our API key (401, Binance -2015, OKX 50111, "
            "Bybit 10003): the key is wrong, expired or revoked, lacks the permission used, or "
            "the egress IP is not on its allow-list.",
            impact="Signed requests fail: no orders, cancels or account data.",
            actions=(
                "Check which key the service loaded (fingerprint, not the secret) and that it is active.",
                "Check the key's permissions (spot, futures, trading) in the exchange console.",
                "Check the key's IP restriction against the egress IP in use.",
            ),
            rollback="Restore the previous key from the secret store if a rotation just happened.",
            recovery="Minutes once a valid key is deployed.",
        ),
    ),
    Signature(
        "forbidden (HTTP 403)",
        re.compile(_NUM.format("403") + r"|forbidden|not whitelisted|allow.?list", re.I),
        Playbook(
            diagnosis="{exchanges} {answers|answer} 403 Forbidden: the egress IP is not on the "
            "key's allow-list, the key lacks the permission, or a WAF or region block applies.",
            impact="Affected endpoints fail for every request from this host.",
            actions=(
                "Compare the current egress IP with the API key's IP allow-list.",
                "Check the key's permissions for the failing endpoint.",
                "Check for a WAF or geo block: the response body and headers name it.",
            ),
            rollback="Move traffic back to the previous egress IP or proxy.",
            recovery="Minutes after the allow-list or egress is fixed.",
        ),
    ),
    Signature(
        "market-data sequence gap",
        re.compile(r"sequence gap|out of sync|missed updates?|gap in (the )?sequence", re.I),
        Playbook(
            diagnosis="The local order book of {exchanges} missed updates (a sequence gap in the "
            "depth stream): messages were dropped by a reconnect or a slow consumer, so the book "
            "no longer matches the exchange's until it is rebuilt from a REST snapshot.",
            impact="Prices and depth the strategies see are wrong until the book is rebuilt.",
            actions=(
                "Rebuild the book: fetch a REST depth snapshot, then apply buffered updates after "
                "its lastUpdateId.",
                "Check the consumer's lag and CPU: a slow reader makes the exchange drop messages.",
                "Pause quoting on the affected market until the book is rebuilt.",
            ),
            rollback="Roll back the market-data client if gaps began with a release.",
            recovery="Seconds once the book is rebuilt from a snapshot.",
        ),
    ),
    Signature(
        "websocket heartbeat lost",
        re.compile(r"\bpong\b|ping timeout|heartbeat|keep-?alive", re.I),
        Playbook(
            diagnosis="The websocket connection to {exchanges} is half-dead: the heartbeat "
            "(ping/pong) stopped, so the socket looks open but carries nothing; a NAT or load "
            "balancer idle timeout, or a client that stopped answering pings, drops it silently.",
            impact="Market data and order updates from the stream stop while REST still works.",
            actions=(
                "Reconnect and resubscribe; treat a missed pong as a dead connection.",
                "Send pings more often than the shortest idle timeout on the path (NAT, proxy).",
                "Check the client's event loop lag: a blocked loop misses pings.",
            ),
            rollback="Revert recent proxy, NAT or websocket-client changes.",
            recovery="Seconds after a reconnect.",
        ),
    ),
    Signature(
        "stale market data",
        re.compile(
            r"\bno (trade|tick|message|update|data)s?\b|\bstale\b|not received|no messages", re.I
        ),
        Playbook(
            diagnosis="The market-data stream from {exchanges} went quiet while the REST API "
            "answers: the websocket subscription was dropped (exchanges close connections every "
            "24 hours and on subscription limits) or our consumer stalled.",
            impact="Strategies trade on stale prices; quotes may be picked off.",
            actions=(
                "Check the stream's last message time and the consumer's process and lag.",
                "Reconnect and resubscribe; confirm the subscription ack arrives.",
                "Pause quoting on the affected markets until fresh data flows.",
            ),
            rollback="Roll back the market-data client if the silence began with a release.",
            recovery="Seconds after a resubscribe; longer if the exchange's stream is down.",
        ),
    ),
    Signature(
        "TLS interception or missing CA",
        re.compile(
            r"unknown authority|self[- ]signed|unable to get local issuer|certificate_verify_failed",
            re.I,
        ),
        Playbook(
            diagnosis="The TLS certificate presented for {exchanges} is not signed by a trusted "
            "authority: something on our path intercepts TLS (a corporate proxy, antivirus, "
            "captive portal) or the host's CA bundle is missing or outdated.",
            impact="Every HTTPS request to the exchange fails, or worse, goes through a middlebox.",
            actions=(
                "Inspect the certificate chain seen from the host: openssl s_client -connect "
                "<api host>:443 -showcerts.",
                "If the issuer is a proxy or security appliance, exempt the exchange's hosts from "
                "TLS inspection.",
                "Update the CA bundle (ca-certificates) on the host or in the image.",
            ),
            rollback="Revert the proxy, firewall or base-image change that brought the new chain.",
            recovery="Minutes after the inspection exemption or CA update.",
        ),
    ),
    Signature(
        "TLS certificate not valid now",
        re.compile(r"x509|certificate (has )?expired|not yet valid|tls handshake", re.I),
        Playbook(
            diagnosis="TLS to {exchanges} fails on the certificate's validity period: the "
            "exchange's certificate really expired (rare), or, more often, our host's clock is "
            "wrong, which makes a valid certificate look expired or not yet valid.",
            impact="Every HTTPS request from this host fails.",
            actions=(
                "Check the host clock: timedatectl, chronyc tracking.",
                "Check the certificate dates the exchange serves: openssl s_client -connect "
                "<api host>:443 | openssl x509 -noout -dates.",
            ),
            rollback="Restore NTP configuration if it changed.",
            recovery="Minutes once the clock is right; the exchange's own fix otherwise.",
        ),
    ),
    Signature(
        "API key expiring",
        re.compile(
            r"\b(api[ -]?key|key|token)\b[^.]*\bexpir|left of validity|expir\w* (in|within) \d",
            re.I,
        ),
        Playbook(
            diagnosis="An API key for {exchanges} is about to expire (exchanges expire keys by "
            "policy, Bybit those without an IP binding after 90 days): rotate it before then, or "
            "every signed request fails at expiry.",
            impact="None yet; at expiry, no orders, cancels or account data.",
            actions=(
                "Create the replacement key with the same permissions and IP allow-list.",
                "Rotate it into the secret store and restart the clients that hold the old one.",
                "Bind the key to the egress IPs so it does not expire again.",
            ),
            rollback="Keep the old key until the new one is confirmed working, then revoke it.",
            recovery="Minutes to rotate; plan it before the expiry date.",
        ),
    ),
    Signature(
        "DNS resolution failure",
        re.compile(
            r"no such host|name resolution|getaddrinfo|nxdomain|servfail|name or service not known"
            r"|could not resolve|lookup \S+ on \S+:53",
            re.I,
        ),
        Playbook(
            diagnosis="DNS resolution of the {exchanges} API hostname fails on our side: our "
            "resolver is down or unreachable, or the lookup is refused; the exchange itself may "
            "be fine.",
            impact="No request can even start from hosts using that resolver.",
            actions=(
                "Resolve the host from the monitoring host: dig api.<exchange>.com, then against "
                "another resolver (dig @1.1.1.1).",
                "Check the resolver named in the error (its :53 address) and /etc/resolv.conf.",
                "Fail over to a secondary resolver if the primary is down.",
            ),
            rollback="Revert recent DNS, resolv.conf or VPC DNS changes.",
            recovery="Minutes once a working resolver is in use.",
        ),
    ),
    Signature(
        "connection refused",
        re.compile(r"connection refused|econnrefused", re.I),
        Playbook(
            diagnosis="Nothing is listening at the address we connect to for {exchanges}: a "
            "local proxy or gateway in the path is down (the port in the error, such as 3128 or "
            "8080, points at one), or the configured base URL or port is wrong.",
            impact="Every request through that address fails immediately.",
            actions=(
                "Check which host and port the error names; is it the exchange, or our proxy?",
                "Restart or fail over the proxy; test a direct request bypassing it.",
                "Check the configured base URL and HTTPS_PROXY settings for a recent change.",
            ),
            rollback="Revert the latest proxy or endpoint configuration change.",
            recovery="Minutes after the proxy is back or bypassed.",
        ),
    ),
    Signature(
        "partial outage",
        re.compile(
            r"\b(endpoint|market|symbol|pair)s?\b[^.;]*\bonly\b|\bonly\b[^.;]*\b(endpoint|market"
            r"|symbol|pair)s?\b|/\S+ only\b|\bother (endpoints|markets|symbols|pairs)\b"
            r"|\banswer\w* normally\b",
            re.I,
        ),
        Playbook(
            diagnosis="A partial outage: one endpoint or market of {exchanges} fails while the "
            "rest answer, which points at an exchange-side incident in that one service (market "
            "data, matching engine) or a suspended market, not at our network or keys.",
            impact="Only what depends on the failing endpoint or market is affected.",
            actions=(
                "Check the exchange's status page and announcements for that service or market.",
                "Fall back to another source for that data (a websocket stream, another endpoint).",
                "Pause strategies on the affected market only; keep the rest running.",
            ),
            rollback="None on our side unless a client change began using the failing endpoint.",
            recovery="As the exchange announces; single-service incidents are often 5-30 min.",
        ),
    ),
    Signature(
        "exchange maintenance or retired endpoint",
        re.compile(r"-1016\b|no longer available|maintenance|service (is )?suspended", re.I),
        Playbook(
            diagnosis="{exchanges} {is|are} in maintenance or {has|have} retired this endpoint "
            "(Binance -1016): the request is fine, the service behind it is not there.",
            impact="The affected endpoint fails until maintenance ends or the client migrates.",
            actions=(
                "Check the exchange's announcements for a maintenance window or an endpoint "
                "deprecation.",
                "If the endpoint was retired, migrate to its replacement.",
            ),
            rollback="None on our side; pin to the previous endpoint only if it still works.",
            recovery="Maintenance: as announced; a retired endpoint: after migration.",
        ),
    ),
    Signature(
        "exchange-side error",
        re.compile(
            r"-1001\b|"
            + _NUM.format("50001")
            + "|"
            + _NUM.format("50013")
            + "|"
            + _NUM.format("10016")
            + r"|internal error|system(s)? (is|are) busy|server error|service unavailable"
            r"|temporarily unavailable",
            re.I,
        ),
        Playbook(
            diagnosis="{exchanges}' own systems are failing or overloaded (exchange-side: internal "
            "error, system busy), not rejecting our requests: typical of volatility spikes and "
            "incidents.",
            impact="Requests fail at random; order state may be unknown for some.",
            actions=(
                "Check the exchange's status page and announcements.",
                "Retry reads with backoff; never blindly retry orders: query their state first.",
                "Reconcile open orders and positions once errors stop.",
            ),
            rollback="None on our side.",
            recovery="Usually minutes; as announced for a declared incident.",
        ),
    ),
    Signature(
        "connection reset or timeout",
        re.compile(
            r"connection reset|econnreset|broken pipe|timed? ?out\b|deadline exceeded|timeout", re.I
        ),
        Playbook(
            diagnosis="Connections to {exchanges} are dropped or stall: packet loss or a middlebox "
            "(NAT, firewall, load balancer) on the network path resetting them, or the "
            "exchange's edge overloaded and slow to answer.",
            impact="Requests fail or hang; orders may be placed without us seeing the answer.",
            actions=(
                "Compare with other exchanges: all affected points at our network, one at theirs.",
                "Run mtr to the exchange's API host from the trading host to find loss.",
                "Check NAT gateway connection limits and idle timeouts on our side.",
                "Query the state of orders placed during the failures before retrying them.",
            ),
            rollback="Revert recent network, NAT or firewall changes.",
            recovery="Minutes for a network fault; as announced for an exchange incident.",
        ),
    ),
    Signature(
        "CORS or proxy failure",
        re.compile(r"\bcors\b|access-control-allow-origin|\bproxy\b|" + _NUM.format("407"), re.I),
        Playbook(
            diagnosis="Requests to {exchanges} fail in a proxy or CORS layer before they reach the "
            "exchange (proxy down or misconfigured, 407, CORS headers missing).",
            impact="Everything routed through that proxy fails.",
            actions=(
                "Check the proxy's health and logs; test a direct request bypassing it.",
                "For browser clients, check the CORS headers the proxy returns.",
            ),
            rollback="Revert the latest proxy configuration change.",
            recovery="Minutes after the proxy is fixed or bypassed.",
        ),
    ),
)

# Alerts about one exchange's API; the same alert on this many exchanges at once points at us.
EXCHANGE_ALERTS = frozenset({"APIDown", "APIErrorRateHigh", "APILatencyHigh"})
MANY_EXCHANGES = 3

ALL_AT_ONCE = Playbook(
    diagnosis="The {exchanges} APIs fail at the same time. Independent exchanges rarely fail "
    "together, so "
    "the cause is most likely our own: the egress (NAT gateway, proxy, firewall), the DNS "
    "resolver or the network of the host that probes them.",
    impact="Everything this host does on every exchange is affected.",
    actions=(
        "From the probing host, curl an unrelated site: if it fails too, our egress is down.",
        "Check the NAT gateway, proxy and firewall for a recent change or saturation.",
        "Resolve the exchanges' hosts with dig against another resolver.",
    ),
    rollback="Revert the latest network, proxy, firewall or DNS change.",
    recovery="Minutes once our egress is restored.",
)

GENERIC = Playbook(
    diagnosis="",
    impact="See the alert's description; severity {severity}.",
    actions=(
        "Open the graph link and check when the metric crossed its threshold.",
        "Check deploys and configuration changes made shortly before the alert started.",
    ),
    rollback="Roll back the most recent change to the affected service if the alert began with it.",
    recovery="Unknown: depends on the cause; re-evaluate after the first action items.",
)
