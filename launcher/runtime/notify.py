"""Notifications: a Slack-compatible webhook, called by a run's coordinator when the run
finished, failed, was retried or stopped (the spec's `notify:`).

The coordinator calls it (the local supervisor; on Modal the pipeline's driver, or the training
call of a job without stages), so a detached run reports too. The body is Slack's incoming
webhook JSON, `{"text": ...}`, with the run's facts beside it as fields a non-Slack receiver can
read: `run`, `job`, `status`, `objective`, `cost_usd`.

The URL is secret-like (whoever holds it can post): it is never printed, in the plan or in a log
line; it comes from the spec (`notify.url`) or, better, from an environment variable
(`notify.url_env`) that one of the spec's Modal Secrets sets (locally: your environment). A
webhook that fails, refuses or hangs costs at most `TIMEOUT_S` and one warning line: it never
fails the run.

Standard library only (urllib): it runs in the container.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from launcher.runtime import events

if TYPE_CHECKING:
    from launcher.spec.model import JobSpec

TIMEOUT_S = 5.0
EVENTS = ("finished", "failed", "retried", "stopped")


def message(spec: JobSpec, run: str, status: str, objective: dict[str, Any] | None = None,
            cost_usd: float | None = None, detail: str = "") -> dict[str, Any]:
    """The webhook's body: Slack's `text`, and the facts as fields."""
    parts = [f"launch: run {run} of job {spec.name} {status}"]
    if objective and objective.get("last") is not None:
        parts.append(f"{objective.get('name')} {objective['last']:.4g}")
    if cost_usd is not None:
        parts.append(f"est. cost ${cost_usd:,.2f}")
    if detail:
        parts.append(detail)
    return {"text": "; ".join(parts), "run": run, "job": spec.name, "status": status,
            "objective": objective, "cost_usd": cost_usd}


def url(spec: JobSpec) -> str | None:
    """Where to post, or None: no `notify:`, or its variable is not set here."""
    notify = spec.notify
    if notify is None:
        return None
    if notify.url is not None:
        return notify.url
    return os.environ.get(notify.url_env or "") or None


def send(spec: JobSpec, status: str, run: str, *, objective: dict[str, Any] | None = None,
         cost_usd: float | None = None, detail: str = "") -> bool:
    """Post the notification for `status` if the spec asks for it; whether it was delivered.
    Never raises: a failed webhook is one warning line."""
    notify = spec.notify
    if notify is None or status not in notify.on:
        return False
    target = url(spec)
    if target is None:
        events.log(f"warning: notify: {notify.url_env} is not set; no notification sent")
        return False
    import urllib.error  # here: a run without notify never imports http
    import urllib.request

    body = json.dumps(message(spec, run, status, objective, cost_usd, detail)).encode()
    request = urllib.request.Request(target, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:  # noqa: S310  https or http, from the spec
            response.read()
        return True
    except urllib.error.HTTPError as exc:
        why = f"the webhook answered HTTP {exc.code}"
    except ValueError:  # its message would show the URL
        why = "notify's URL is not an http(s) URL"
    except (urllib.error.URLError, OSError) as exc:  # refused, hung, unresolvable
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        # An OSError's text is its errno and strerror; anything else may quote the URL.
        why = f"the webhook could not be reached ({type(reason).__name__}" + \
            (f": {reason})" if isinstance(reason, OSError) else ")")
    events.log(f"warning: notify: {status} of run {run} not delivered: {why}")
    return False


def estimate(spec: JobSpec, seconds: Mapping[str, float]) -> float | None:
    """The GPU cost of `seconds` of each stage (train included) at the plan's prices; None when
    a stage's GPU has no price on file."""
    from launcher.cost import cost_of

    total = 0.0
    for name, spent in seconds.items():
        stage = spec.stage(name)
        found = cost_of(spec.compute if stage is None else stage.compute,
                        spec.retries if stage is None else stage.retries)
        if found.price is None:
            return None
        total += found.price * found.gpus * spent / 3600
    return round(total, 4)


def objective_of(result: Mapping[str, Any]) -> dict[str, Any] | None:
    """The objective a loop's result reports (name, last, best), if it reports one."""
    found = result.get("objective")
    return dict(found) if isinstance(found, Mapping) else None
