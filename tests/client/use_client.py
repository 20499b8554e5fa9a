"""A program a client team would write with the Python client that
`openapi-python-client` generates from linkhub's OpenAPI document
(scripts/check-generated-client.sh generates it as `linkhub_client`, then
type-checks this file with mypy --strict and runs it).

It registers a user, logs in, adds a link, then makes the cached reads
(the user, the profile, the links list) twice each, and checks that every
answer parses into the resource's own model: `Link`, `PrivateUser`,
`Profile`, never a per-envelope copy of them.

    python3 tests/client/use_client.py http://127.0.0.1:8080
"""

import os
import sys
import time
from typing import TypeVar

from linkhub_client import AuthenticatedClient, Client
from linkhub_client.api.auth import login
from linkhub_client.api.links import create as create_link
from linkhub_client.api.links import list_ as list_links
from linkhub_client.api.profiles import get as get_profile
from linkhub_client.api.users import get as get_user
from linkhub_client.api.users import register
from linkhub_client.models import (
    DataBodyLoginView,
    DataBodyProfile,
    DataBodyPublicUser,
    Link,
    LoginInput,
    MessageBodyLink,
    MessageBodyPrivateUser,
    NewLinkInput,
    NewUserInput,
    PageLink,
    PrivateUser,
)
from linkhub_client.types import Response

T = TypeVar("T")
R = TypeVar("R")

CACHE_RESULTS = {"HIT", "MISS", "BYPASS"}


def expect(response: Response[R], status: int, model: type[T]) -> T:
    """The parsed body of `response`, which must have `status` and parse
    into `model`."""
    if response.status_code != status or not isinstance(response.parsed, model):
        sys.exit(
            f"expected {status} with a {model.__name__}, got {response.status_code}: "
            f"{response.content!r}"
        )
    return response.parsed


def cache_result(response: Response[R]) -> str:
    """The `X-Cache` header of a cached read, which must be there."""
    value = response.headers.get("x-cache", "")
    if value not in CACHE_RESULTS:
        sys.exit(f"a cached read answered without X-Cache (got {value!r})")
    return value


def main(base_url: str) -> None:
    username = f"client_{os.getpid()}_{int(time.time()) % 100000}"
    password = "generated-client-password-1"
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)

    registered = expect(
        register.sync_detailed(
            client=anonymous,
            body=NewUserInput(
                username=username, email=f"{username}@example.com", password=password
            ),
        ),
        201,
        MessageBodyPrivateUser,
    )
    me: PrivateUser = registered.data
    print(f"registered {me.username} (id {me.id}, role {me.role})")

    session = expect(
        login.sync_detailed(client=anonymous, body=LoginInput(login=username, password=password)),
        200,
        DataBodyLoginView,
    ).data
    print(f"logged in; token of type {session.token_type} until {session.expires_at:%Y-%m-%d}")
    client = AuthenticatedClient(
        base_url=base_url, token=session.token, raise_on_unexpected_status=True
    )

    added: Link = expect(
        create_link.sync_detailed(
            me.id,
            client=client,
            body=NewLinkInput(title="Generated client", url="https://example.com/generated"),
        ),
        201,
        MessageBodyLink,
    ).data
    print(f"added link {added.id} at position {added.position}")

    for attempt in (1, 2):
        user_read = get_user.sync_detailed(me.id, client=anonymous)
        user = expect(user_read, 200, DataBodyPublicUser).data
        assert user.username == username, user

        profile_read = get_profile.sync_detailed(username, client=anonymous)
        profile = expect(profile_read, 200, DataBodyProfile).data
        assert [link.id for link in profile.links] == [added.id], profile
        assert isinstance(profile.links[0], Link)

        links_read = list_links.sync_detailed(me.id, client=anonymous, limit=10)
        page = expect(links_read, 200, PageLink)
        assert [link.id for link in page.data] == [added.id], page
        assert page.meta.total == 1, page.meta

        print(
            f"read {attempt}: user {cache_result(user_read)}, "
            f"profile {cache_result(profile_read)}, links {cache_result(links_read)}"
        )
    print("generated client: register, login, a write and the cached reads all parsed")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: use_client.py BASE_URL")
    main(sys.argv[1])
