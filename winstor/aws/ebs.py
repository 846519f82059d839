"""The one EBS write winstor makes itself: deleting a volume a claim left behind.

Everything else about EBS volumes is the cluster's business (the provisioner creates and
deletes them, the attach-detach controller attaches them). A volume of a `Retain` class
outlives its claim by design, so whoever made the claim removes it: the checks that make
such a claim call this, and so does their fixture's teardown when a check could not.
"""

from __future__ import annotations

import time
from typing import Any

from botocore.exceptions import ClientError

from winstor.aws.facts import client, volume_facts

GONE = ("InvalidVolume.NotFound",)


class VolumeStays(Exception):
    """The volume could not be removed; the message says why in one line."""


def delete_volume(session: Any, volume_id: str, timeout: float) -> str:
    """Delete a detached (or detaching) volume and wait until EC2 no longer lists it as
    anything but deleted; returns what happened ("deleted", "already gone")."""
    deadline = time.monotonic() + timeout
    pause = 0.1
    facts = volume_facts(session, volume_id)
    if facts is None or facts.state in ("deleting", "deleted"):
        return "already gone"
    while facts is not None and facts.state not in ("available", "error"):
        if time.monotonic() > deadline:
            raise VolumeStays(f"EBS volume {volume_id} is still {facts.state} after "
                              f"{timeout:.0f}s (attached to "
                              + ", ".join(a.instance_id for a in facts.attachments) + ")")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
        facts = volume_facts(session, volume_id)
    if facts is not None:
        try:
            client(session, "ec2").delete_volume(VolumeId=volume_id)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in GONE:
                raise VolumeStays(f"EBS volume {volume_id} could not be deleted: {code}: "
                                  f"{exc.response.get('Error', {}).get('Message', '')}") \
                    from None
    while True:
        facts = volume_facts(session, volume_id)
        if facts is None or facts.state == "deleted":
            return "deleted"
        if time.monotonic() > deadline:
            raise VolumeStays(f"EBS volume {volume_id} is still {facts.state} after "
                              f"{timeout:.0f}s")
        time.sleep(pause)
        pause = min(pause * 2, 5.0)
