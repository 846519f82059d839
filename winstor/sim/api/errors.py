"""`Status` errors shaped exactly like kube-apiserver's.

Clients key on `code`, `reason` and `details`; kubectl prints `message`
verbatim, so messages follow the apiserver's wording ("pods \\"x\\" not found").
"""

from __future__ import annotations

from typing import Any


def status_body(code: int, reason: str, message: str, details: dict | None = None,
                list_meta: dict | None = None) -> dict:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": dict(list_meta or {}),
        "status": "Failure" if code >= 300 else "Success",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}
        # The Status's own ListMeta: a 410 for an expired continue token carries a
        # fresh token there.
        self.list_meta: dict | None = None

    def body(self) -> dict:
        return status_body(self.code, self.reason, self.message, self.details, self.list_meta)

    @staticmethod
    def _details(resource: str, name: str, group: str = "") -> dict:
        d: dict[str, Any] = {"name": name, "kind": resource}
        if group:
            d["group"] = group
        return d

    @classmethod
    def not_found(cls, resource: str, name: str, group: str = "") -> ApiError:
        full = f"{resource}.{group}" if group else resource
        return cls(404, "NotFound", f'{full} "{name}" not found',
                   cls._details(resource, name, group))

    @classmethod
    def already_exists(cls, resource: str, name: str, group: str = "") -> ApiError:
        full = f"{resource}.{group}" if group else resource
        return cls(409, "AlreadyExists", f'{full} "{name}" already exists',
                   cls._details(resource, name, group))

    @classmethod
    def conflict(cls, resource: str, name: str, why: str, group: str = "") -> ApiError:
        full = f"{resource}.{group}" if group else resource
        return cls(409, "Conflict", f'Operation cannot be fulfilled on {full} "{name}": {why}',
                   cls._details(resource, name, group))

    @classmethod
    def invalid(cls, kind: str, name: str, causes: list[dict], group: str = "") -> ApiError:
        # One cause is printed bare, several as a bracketed list (an aggregate error).
        listed = [f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                  for c in causes]
        msgs = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
        full = f"{kind}.{group}" if group else kind
        details: dict[str, Any] = {"name": name, "kind": kind, "causes": causes}
        if group:
            details["group"] = group  # the core group is left out, as the real server does
        return cls(422, "Invalid", f'{full} "{name}" is invalid: {msgs}', details)

    @classmethod
    def forbidden(cls, message: str, resource: str = "", name: str = "",
                  group: str = "") -> ApiError:
        return cls(403, "Forbidden", message,
                   cls._details(resource, name, group) if resource else None)

    @classmethod
    def bad_request(cls, message: str) -> ApiError:
        return cls(400, "BadRequest", message)

    @classmethod
    def gone(cls, message: str) -> ApiError:
        return cls(410, "Expired", message)

    @classmethod
    def method_not_allowed(cls, message: str) -> ApiError:
        return cls(405, "MethodNotAllowed", message)
