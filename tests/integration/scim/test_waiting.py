"""No worker in time: 503 with Retry-After, the command stays queued, and a retry joins its job."""

from __future__ import annotations

from tests.integration.scim.conftest import Scim, new_email, patch_body, running_worker, user_body
from tests.support.processes import wait_until


async def test_no_answer_in_time_is_503_and_a_retry_joins_the_same_job(scim_without_worker: Scim) -> None:
    scim = scim_without_worker
    email = new_email("late")
    body = user_body(email, roles=[{"value": "viewer"}])
    first = await scim.client.post("Users", json=body)
    assert first.status_code == 503, first.text
    assert first.headers["retry-after"] == "1"
    assert first.json()["status"] == "503"
    queued = await scim.queued()
    assert len(queued) == 1
    assert queued[0].startswith(f"{scim.settings.queue_name}:scim:")
    assert queued[0].endswith(":0:provision_user")

    retry = await scim.client.post("Users", json=body)
    assert retry.status_code == 503
    assert await scim.queued() == queued  # joined: no newer command

    async with running_worker(scim.settings):

        async def created() -> bool:
            return await scim.row(email) is not None

        await wait_until(created, within=15, what="the queued create to apply", interval=0.05)
        # The command applied; a POST retried after its job created the user gets 409 (documented).
        after = await scim.client.post("Users", json=body)
        assert after.status_code == 409
        assert after.json()["scimType"] == "uniqueness"
    row = await scim.row(email)
    assert row is not None
    assert row["role"] == "viewer"


async def test_a_patch_retried_after_a_503_joins_the_queued_update(scim_without_worker: Scim) -> None:
    scim = scim_without_worker
    email = new_email()
    async with running_worker(scim.settings):
        created = await scim.client.post("Users", json=user_body(email))
    user_id = created.json()["id"]
    body = patch_body({"op": "replace", "path": "roles", "value": [{"value": "admin", "primary": True}]})
    assert (await scim.client.patch(f"Users/{user_id}", json=body)).status_code == 503
    queued = await scim.queued()
    assert len(queued) == 1
    assert queued[0].endswith(":0:update_user")
    assert (await scim.client.patch(f"Users/{user_id}", json=body)).status_code == 503
    assert await scim.queued() == queued
    async with running_worker(scim.settings):
        answered = await scim.client.patch(f"Users/{user_id}", json=body)
        assert answered.status_code == 200, answered.text
        assert answered.json()["roles"][0]["value"] == "admin"
        again = await scim.client.patch(f"Users/{user_id}", json=body)  # answered before: a new command
        assert again.status_code == 200
    row = await scim.row(email)
    assert row is not None
    assert row["role"] == "admin"
    assert await scim.queued() == []
