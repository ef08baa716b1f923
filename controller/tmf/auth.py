"""Authentication and authorization delegated to Kubernetes.

A bearer token is checked with a TokenReview; every request is then authorized with a
SubjectAccessReview of the user it names on the custom resource behind the TMF resource (group
telco.intent.dev, its plural, the namespace the id names, the verb), so the cluster's RBAC decides which
partner may order for which customer. Answers are cached for a few seconds: a revoked binding takes
effect within CACHE_SECONDS.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kubernetes

from ..api import GROUP
from .conventions import TmfError

CACHE_SECONDS = 10.0
MAX_CACHED = 10_000
MAX_TOKEN = 8192


@dataclass(frozen=True)
class User:
    username: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = field(default_factory=tuple)


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; 401 naming what is missing otherwise."""
    if not header:
        raise TmfError(401, "missing Authorization header: expected 'Bearer <token>' (a Kubernetes token)")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token or len(token) > MAX_TOKEN:
        raise TmfError(401, "Authorization header: expected 'Bearer <token>' (a Kubernetes token)")
    return token


def token_review(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def user_of(review_status: dict[str, Any]) -> User | None:
    """The user a TokenReview's status names, or None when it did not authenticate."""
    if not review_status.get("authenticated"):
        return None
    info = review_status.get("user") or {}
    extra = info.get("extra") or {}
    return User(
        username=info.get("username") or "",
        uid=info.get("uid") or "",
        groups=tuple(info.get("groups") or ()),
        extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())),
    )


def access_review(user: User, verb: str, plural: str, namespace: str | None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"group": GROUP, "resource": plural, "verb": verb}
    if namespace is not None:
        attributes["namespace"] = namespace
    return {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": user.username,
            "uid": user.uid or None,
            "groups": list(user.groups),
            "extra": {k: list(v) for k, v in user.extra} or None,
            "resourceAttributes": attributes,
        },
    }


class Authorizer:
    """TokenReview and SubjectAccessReview through the facade's own client, cached briefly."""

    def __init__(self, api_client: kubernetes.client.ApiClient, workers: int = 4) -> None:
        self._authn = kubernetes.client.AuthenticationV1Api(api_client)
        self._authz = kubernetes.client.AuthorizationV1Api(api_client)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tmf-auth")
        self._users: dict[str, tuple[float, User | None]] = {}
        self._decisions: dict[tuple[User, str, str, str | None], tuple[float, bool]] = {}
        self.reviews = 0  # reviews sent, for tests and benchmarks

    async def _call(self, fn: Any, body: dict[str, Any]) -> dict[str, Any]:
        self.reviews += 1
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._pool, lambda: fn(body))
        return dict(result.status.to_dict()) if result.status is not None else {}

    async def authenticate(self, header: str | None) -> User:
        token = bearer_token(header)
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._users.get(key)
        if cached is None or cached[0] < now:
            try:
                status = await self._call(self._authn.create_token_review, token_review(token))
            except kubernetes.client.ApiException as exc:
                raise TmfError(
                    503, f"the token could not be checked (TokenReview: {exc.status} {exc.reason})"
                ) from None
            cached = (now + CACHE_SECONDS, user_of(status))
            _bounded(self._users)[key] = cached
        if cached[1] is None:
            raise TmfError(401, "the bearer token was not accepted by the Kubernetes API server")
        return cached[1]

    async def allowed(self, user: User, verb: str, plural: str, namespace: str | None) -> bool:
        key = (user, verb, plural, namespace)
        now = time.monotonic()
        cached = self._decisions.get(key)
        if cached is None or cached[0] < now:
            try:
                status = await self._call(
                    self._authz.create_subject_access_review, access_review(user, verb, plural, namespace)
                )
            except kubernetes.client.ApiException as exc:
                raise TmfError(503, f"access could not be checked (SubjectAccessReview: {exc.status})") from None
            cached = (now + CACHE_SECONDS, bool(status.get("allowed")))
            _bounded(self._decisions)[key] = cached
        return cached[1]

    async def require(self, user: User, verb: str, plural: str, namespace: str | None) -> None:
        if not await self.allowed(user, verb, plural, namespace):
            where = f" in namespace {namespace}" if namespace else ""
            raise TmfError(403, f"{user.username} may not {verb} {plural}.{GROUP}{where}")

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    if len(cache) >= MAX_CACHED:
        cache.clear()
    return cache
