"""The Kubernetes reviews the facade sends, and the bearer header it accepts."""

from __future__ import annotations

import pytest

from controller.tmf.auth import User, access_review, bearer_token, user_of
from controller.tmf.conventions import TmfError


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer  ", "Bearer a b", "Bearer " + "x" * 9000])
def test_only_a_bearer_token_is_accepted(header: str | None) -> None:
    with pytest.raises(TmfError) as caught:
        bearer_token(header)
    assert caught.value.status == 401


def test_a_bearer_token_is_read() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer abc") == "abc"


def test_a_token_review_names_the_user_or_nobody() -> None:
    assert user_of({"authenticated": False}) is None
    user = user_of(
        {
            "authenticated": True,
            "user": {"username": "system:serviceaccount:p:x", "uid": "u1", "groups": ["g"], "extra": {"k": ["v"]}},
        }
    )
    assert user == User("system:serviceaccount:p:x", "u1", ("g",), (("k", ("v",)),))


def test_an_access_review_asks_about_the_custom_resource_in_its_namespace() -> None:
    user = User("alice", "u1", ("partners",), (("scopes", ("a",)),))
    review = access_review(user, "create", "subscriptions", "acme")
    assert review["spec"]["resourceAttributes"] == {
        "group": "telco.intent.dev",
        "resource": "subscriptions",
        "verb": "create",
        "namespace": "acme",
    }
    assert review["spec"]["user"] == "alice" and review["spec"]["groups"] == ["partners"]
    assert review["spec"]["extra"] == {"scopes": ["a"]}
    cluster = access_review(User("bob"), "list", "productofferings", None)
    assert "namespace" not in cluster["spec"]["resourceAttributes"] and cluster["spec"]["extra"] is None
