"""Four places where moto's server spends the embedded cluster's CPU on work whose answer
cannot change, replaced by equivalents that answer the same.

Measured on 16 clusters in one sim (`python -m bench --parts fleet`, py-spy on the sim):

- `TaggedEC2Resource.get_tags` asks `describe_tags` for the resource's id, which walks
  every tag of every resource in the region and matches each id against a regex. A
  `describe_volumes` with a tag filter does this once per volume, so its cost grows with
  volumes x tags of all 16 clusters: a tenth of the sim's CPU. The filter is the
  resource's own id (no wildcards; `fnmatch.translate` anchors it), so the answer is
  that resource's entry in the backend's tag table, in the same order.
- `moto.backends.list_of_moto_modules` lists moto's package folder (a `stat` per entry)
  for every request, inside the dispatcher's lock, so all 16 clusters' EC2 calls queued
  behind file-system calls. The folder does not change while the sim runs.
- `moto.core.utils.service_name_from_moto_package_name` builds a botocore session and
  lists every service for every error response. The list is the installed botocore's.
- `BaseResponse.call_action` lists the response class's methods with `inspect.getmembers`
  on every request to see whether the action is one. A class's methods are those of
  its definition (the sim adds none later), so they are listed once per class.

`tests/sim/test_motofast.py` compares each with moto's own on a seeded backend.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

_lock = threading.Lock()
# moto's own functions, replaced once per process and kept for the self-tests' comparison
originals: dict[str, Any] = {}


def apply() -> None:
    """Install the four equivalents (once per process)."""
    with _lock:
        if originals:
            return
        import moto.backends
        import moto.core.responses
        import moto.core.utils
        from moto.ec2.models.core import TaggedEC2Resource

        originals.update(get_tags=TaggedEC2Resource.get_tags,
                         list_of_moto_modules=moto.backends.list_of_moto_modules,
                         service_name=moto.core.utils.service_name_from_moto_package_name,
                         method_names=moto.core.responses.method_names_from_class)
        TaggedEC2Resource.get_tags = _get_tags  # type: ignore[method-assign]
        modules = frozenset(moto.backends.list_of_moto_modules())
        moto.backends.list_of_moto_modules = lambda: modules  # type: ignore[assignment]
        moto.core.utils.service_name_from_moto_package_name = functools.cache(
            moto.core.utils.service_name_from_moto_package_name)
        moto.core.responses.method_names_from_class = functools.cache(  # type: ignore[assignment]
            moto.core.responses.method_names_from_class)


def _get_tags(self: Any) -> list[dict[str, str]]:
    """What `describe_tags(filters={"resource-id": [self.id]})` returns, by lookup."""
    from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix

    if not self.id:
        return []
    tags = self.ec2_backend.tags.get(self.id)
    if not tags:
        return []
    kind = EC2_PREFIX_TO_RESOURCE.get(get_prefix(self.id), "")
    return [{"resource_id": self.id, "key": key, "value": value, "resource_type": kind}
            for key, value in list(tags.items())]
