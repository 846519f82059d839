"""Fault detection: from the cluster's terminal event to the check's failure.

For each scenario that makes a wait fail, the catalog runs against a cluster
broken that way (`--timeouts sim`, the profile for the embedded cluster).
The benchmark takes

- the terminal event: the first event the *cluster* records that settles
  the outcome, defined here per scenario from what the sim's components emit
  (not from winstor's own classifier, which is what is being measured) - for
  an image that cannot be pulled that is the first `Failed to pull image`
  (ErrImagePull), before the kubelet even backs off;
- the check's failure: the end of the deciding phase (pytest's report) of
  the earliest failed check whose message carries the scenario's symptom;
- the timeout of the wait that failed: `pod_start_windows` for pod waits,
  `claim_provision` for claim waits, from the `sim` profile,

and reports (failure - event) / timeout. Both times are wall clock on the
same machine; the event's is the sim's microsecond `eventTime`.

The sim runs EKS latencies at 1/500 but its timeouts at 1/10 (pod start) or
1/5 (claims), so a delay made of *modelled* work - the failing check waiting
for a parallel pull, say - looks 50 times smaller against the sim timeout than
it would on EKS. The row therefore also gives an EKS range against the `eks`
timeout: at least the gap as measured (no modelled work held the failure
back), at most the modelled seconds that passed in the gap (from the sim's
busy runs, unscaled) plus the rest of the gap (all of it did). Which end is
nearer depends on what the check waited for; the sim does not know.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from winstor.config import Timeouts

from .catalog import CatalogRun, run_catalog


@dataclass(frozen=True)
class Fault:
    type: str
    reason: str
    message: str  # a phrase of the terminal event's message
    symptom: str  # a phrase of the failed check's message


FAULTS: dict[str, Fault] = {
    "image-pull-fails": Fault("Warning", "Failed", "Failed to pull image", "ImagePullBackOff"),
    "ebs-attach-fails": Fault("Warning", "FailedAttachVolume", "AttachVolume.Attach failed",
                              "FailedAttachVolume"),
    "wrong-windows-build": Fault("Warning", "Failed", "does not match the host operating system",
                                 "does not match the host operating system"),
    "intree-without-csi-driver": Fault("Normal", "ExternalProvisioning", "external provisioner",
                                       "not installed (no CSIDriver"),
    "no-csi-proxy": Fault("Warning", "FailedAttachVolume", "does not contain driver",
                          "does not contain driver"),
    "smb-mapping-missing": Fault("Warning", "FailedMount", "is not a directory",
                                 "is not a directory"),
}
TARGET_FRACTION = 0.05


def wait_timeout(text: str, timeouts: Timeouts) -> tuple[str, float]:
    """Which wait failed, judged from its message, and that wait's timeout."""
    if "to be Bound" in text:
        return "claim_provision", timeouts.claim_provision
    return "pod_start_windows", timeouts.pod_start_windows


def analyse(scenario: str, run: CatalogRun, timeouts: Timeouts) -> dict[str, Any]:
    fault = FAULTS[scenario]
    cluster = next(iter(run.costs))
    row: dict[str, Any] = {"scenario": scenario, "exit_code": run.exit_code,
                           "event": None, "check": None, "seconds": None, "timeout": None,
                           "wait": None, "fraction": None, "how": None,
                           "modelled_in_gap": None, "eks_seconds": None, "eks_timeout": None,
                           "eks_fraction": None, "eks_low_fraction": None,
                           "event_time_source": None,
                           "problem": run.event_errors.get(cluster)}
    failed = sorted((f for f in run.failures if fault.symptom in f["text"]),
                    key=lambda f: f["stop"])
    if not failed:
        row["problem"] = row["problem"] or (
            f"no failed check mentions {fault.symptom!r}: {run.tail[-500:]}")
        return row
    first = failed[0]
    events = [e for e in run.events.get(cluster, [])
              if e["type"] == fault.type and e["reason"] == fault.reason
              and fault.message in e["message"] and e["time"] is not None
              and e["time"] <= first["stop"]]
    # Prefer the event about the object the failing wait named.
    named = [e for e in events if e["object"].split("/", 1)[-1] in first["text"]]
    chosen = (named or events)[:1]
    check = first["nodeid"].rsplit("[", 1)[-1].rstrip("]").split("@")[0]
    row["check"] = f"{check} ({first['when']})"
    if not chosen:
        row["problem"] = f"no {fault.type} {fault.reason} event before {check} failed"
        return row
    ev = chosen[0]
    wait, timeout = wait_timeout(first["text"], timeouts)
    seconds = first["stop"] - ev["time"]
    busy_real, modelled = run.costs[cluster].modelled_between(ev["time"], first["stop"])
    eks_seconds = modelled + (seconds - busy_real)
    eks_timeout = getattr(Timeouts.profile("eks"), wait)
    row.update(event=f"{ev['type']} {ev['reason']} on {ev['object']}", wait=wait,
               timeout=timeout, seconds=round(seconds, 3),
               fraction=round(seconds / timeout, 4), event_time_source=ev["time_source"],
               modelled_in_gap=round(modelled, 1), eks_seconds=round(eks_seconds, 1),
               eks_timeout=eks_timeout, eks_fraction=round(eks_seconds / eks_timeout, 4),
               eks_low_fraction=round(seconds / eks_timeout, 6),
               how="terminal event" if "cannot happen" in first["text"] else
               "timeout" if "timed out" in first["text"] else "other")
    return row


def measure(scenarios: list[str] | None = None) -> list[dict[str, Any]]:
    timeouts = Timeouts.profile("sim")
    rows = []
    for scenario in scenarios or list(FAULTS):
        run = run_catalog(1, scenarios=(scenario,), record_failures=True, timeouts="sim")
        rows.append(analyse(scenario, run, timeouts))
    return rows
