"""Admin auth, runtime canary/shadow switches, hot reload, and the sticky canary split."""

from __future__ import annotations

import asyncio

import pytest

from zadanie4.rollout.traffic_router import assign_variant, user_bucket
from zadanie4.tests.conftest import admin_headers, make_settings, running_service
from zadanie4.tests.service_fakes import DictModelProvider, make_dependencies, model

pytestmark = pytest.mark.anyio
ADMIN_CALLS = [
    ("/admin/canary", {"weight": 0.5}),
    ("/admin/shadow", {"enabled": True}),
    ("/admin/reload", None),
]


def test_canary_split_over_10000_users_is_within_one_point_of_the_weight():
    users = range(1_000_000, 1_010_000)
    for weight in (0.01, 0.1, 0.25, 0.5, 0.9):
        share = sum(assign_variant(u, weight, "salt-a") == "challenger" for u in users) / 10_000
        assert abs(share - weight) <= 0.01, (weight, share)


def test_canary_assignment_is_sticky_and_monotone_in_the_weight():
    users = range(10_000)
    first = [assign_variant(u, 0.2, "s") for u in users]
    assert first == [assign_variant(u, 0.2, "s") for u in users]
    # raising the weight moves users champion -> challenger only, never back
    higher = [assign_variant(u, 0.4, "s") for u in users]
    assert all(h == "challenger" for f, h in zip(first, higher, strict=True) if f == "challenger")
    # edge weights and salt
    assert {assign_variant(u, 0.0, "s") for u in users} == {"champion"}
    assert {assign_variant(u, 1.0, "s") for u in users} == {"challenger"}
    assert [user_bucket(u, "s") for u in range(50)] != [user_bucket(u, "other") for u in range(50)]


async def test_admin_endpoints_answer_401_to_everyone_when_no_token_is_configured(shop, tmp_path):
    settings = make_settings(tmp_path, admin_token=None)
    async with running_service(settings, make_dependencies(shop)) as svc:
        for path, body in ADMIN_CALLS:
            for headers in ({}, admin_headers(), admin_headers(""), {"Authorization": "Bearer "}):
                response = await svc.client.post(path, json=body, headers=headers)
                assert response.status_code == 401, (path, headers)
        state = (await svc.client.get("/model")).json()
    assert state["canary_weight"] == 0.0 and state["shadow_enabled"] is False


async def test_missing_or_wrong_tokens_get_401_and_change_nothing(shop, settings):
    deps = make_dependencies(shop)
    async with running_service(settings, deps) as svc:
        loads_before = len(deps.models.loads)
        bad = [{}, admin_headers("wrong"), {"Authorization": "test-admin-token"}, {"Authorization": "Basic x"}]
        for path, body in ADMIN_CALLS:
            for headers in bad:
                response = await svc.client.post(path, json=body, headers=headers)
                assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"
            # a malformed body without a token is still 401, not 422
            junk = await svc.client.post(path, content=b"{oops", headers={"content-type": "application/json"})
            assert junk.status_code == 401
        state = (await svc.client.get("/model")).json()
    assert state["canary_weight"] == 0.0 and state["shadow_enabled"] is False
    assert len(deps.models.loads) == loads_before


async def test_canary_weight_routes_that_share_of_users_to_the_challenger(shop, settings):
    models = DictModelProvider({"champion": model("1"), "challenger": model("2", seed=5)})
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        response = await svc.client.post("/admin/canary", json={"weight": 0.3}, headers=admin_headers())
        assert response.json() == {
            "canary_weight": 0.3,
            "shadow_enabled": False,
            "champion_version": "1",
            "challenger_version": "2",
        }
        users = range(5_000_000, 5_000_600)
        bodies = [(await svc.client.get("/recommend", params={"user_id": u, "k": 3})).json() for u in users]
        again = [(await svc.client.get("/recommend", params={"user_id": u, "k": 3})).json() for u in users[:50]]
    variants = [b["variant"] for b in bodies]
    odd = [b for b in bodies if b["model_version"] != ("2" if b["variant"] == "challenger" else "1")]
    assert not odd, odd[:3]
    expected = [assign_variant(u, 0.3, settings.canary_salt) for u in users]
    assert variants == expected
    assert 0.2 < variants.count("challenger") / len(variants) < 0.4
    assert [b["variant"] for b in again] == variants[:50]


async def test_invalid_canary_weight_is_422(shop, settings):
    async with running_service(settings, make_dependencies(shop)) as svc:
        for weight in (-0.1, 1.5, "x", None):
            response = await svc.client.post("/admin/canary", json={"weight": weight}, headers=admin_headers())
            assert response.status_code == 422


async def test_reload_swaps_in_new_alias_versions_without_failing_concurrent_requests(shop, settings):
    models = DictModelProvider({"champion": model("1")})
    user = shop.users_with_events(10)[0]
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        models.models["champion"] = model("7", seed=3)
        models.models["challenger"] = model("8", seed=4)

        async def traffic() -> list[int]:
            codes = []
            for _ in range(60):
                codes.append((await svc.client.get("/recommend", params={"user_id": user})).status_code)
                await asyncio.sleep(0)
            return codes

        async def reloads() -> list[int]:
            return [(await svc.client.post("/admin/reload", headers=admin_headers())).status_code for _ in range(5)]

        codes, reload_codes = await asyncio.gather(traffic(), reloads())
        after = (await svc.client.get("/recommend", params={"user_id": user})).json()
        info = (await svc.client.get("/model")).json()
    assert set(codes) == {200} and set(reload_codes) == {200}
    assert after["model_version"] == "7"
    assert info["champion"]["version"] == "7" and info["challenger"]["version"] == "8"


async def test_failed_reload_keeps_the_old_model_and_reports_502(shop, settings):
    models = DictModelProvider({"champion": model("1")})
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        models.models["champion"] = ValueError("corrupt LightGBM model")
        response = await svc.client.post("/admin/reload", headers=admin_headers())
        served = (await svc.client.get("/recommend", params={"user_id": shop.users_with_events(10)[0]})).json()
    assert response.status_code == 502
    body = response.json()
    assert body["champion_version"] == "1" and "corrupt LightGBM model" in body["errors"][0]
    assert served["model_version"] == "1" and served["degraded"] is False


async def test_turning_shadow_on_loads_a_missing_challenger(shop, tmp_path):
    settings = make_settings(tmp_path, load_challenger=False)
    models = DictModelProvider({"champion": model("1"), "challenger": model("2")})
    async with running_service(settings, make_dependencies(shop, models=models)) as svc:
        before = (await svc.client.get("/model")).json()
        response = await svc.client.post("/admin/shadow", json={"enabled": True}, headers=admin_headers())
    assert before["challenger"]["version"] is None
    assert response.status_code == 200
    assert response.json()["shadow_enabled"] is True and response.json()["challenger_version"] == "2"
