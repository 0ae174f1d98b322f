"""`fleet tenants add` and the client library's tenant options (no broker: what it would send)."""

from __future__ import annotations

import tomllib

from typer.testing import CliRunner

from contracts.topics import Headers
from fleet.cli import app
from fleet.client import FleetClient
from fleet.settings import Settings, load_settings
from fleet.tenants import KeyHash


def test_tenants_add_prints_the_key_once_and_toml_with_only_its_hash(tmp_path: object) -> None:
    result = CliRunner().invoke(app, ["tenants", "add", "billing"])
    assert result.exit_code == 0, result.output
    key = next(line for line in result.stderr.splitlines() if line.startswith("fk_"))
    assert key not in result.stdout  # stdout is the config: `fleet tenants add x >> fleet.toml` never stores it
    data = tomllib.loads(result.stdout)
    (tenant,) = data["tenants"]
    assert tenant["name"] == "billing"
    assert KeyHash.parse(tenant["api_key_hashes"][0]).matches(key.encode())
    path = tmp_path / "fleet.toml"  # type: ignore[operator]
    path.write_text(result.stdout)
    assert load_settings(path, env={}).tenants[0].name == "billing"
    bad = CliRunner().invoke(app, ["tenants", "add", "no spaces"])
    assert bad.exit_code == 2


def test_the_client_sends_its_key_and_reads_its_own_per_tenant_reply_topic() -> None:
    c = FleetClient(Settings(), api_key="fk_k", tenant="billing")
    assert (
        c.reply_topic.startswith("llm.replies.billing.")
        and c.reply_topic != FleetClient(Settings(), tenant="billing").reply_topic
    )
    assert (Headers.API_KEY, b"fk_k") in c._headers(c.content_type)
    r = c.build_request("hi")
    assert r.tenant == "billing" and r.reply_to == c.reply_topic
    plain = FleetClient(Settings())
    assert plain.reply_topic == "llm.replies" and all(
        k != Headers.API_KEY for k, _ in plain._headers(plain.content_type)
    )
