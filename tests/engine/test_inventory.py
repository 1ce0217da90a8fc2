"""Inventory files: parsing with line numbers, importing into the database, the CLI."""

from __future__ import annotations

import textwrap

import pytest
from sqlalchemy import func, select

from extensions import db
from models import Server
from services.console import console_services
from tasks.planning.inventory import InventoryError, apply_inventory, parse_inventory

GOOD = textwrap.dedent("""\
    known_hosts: /etc/patchbay/known_hosts
    servers:
      - name: gs-01
        host: 10.0.0.11
        port: 2222
        user: deploy
        key: ~/.ssh/id_ed25519
        known_hosts: /etc/patchbay/gs-01.known_hosts
        tags: [eu, canary]
        vars: {root: /srv/game, game_port: 27015}
      - name: gs-02
        host: gs-02.example.net
        user: deploy
    """)


def parse_error(text: str) -> str:
    with pytest.raises(InventoryError) as caught:
        parse_inventory(text, "fleet.yml")
    return str(caught.value)


# --- parsing -------------------------------------------------------------------------


def test_good_inventory_parses_with_every_field():
    inventory = parse_inventory(GOOD, "fleet.yml")

    first = inventory.servers[0]
    assert [s.name for s in inventory.servers] == ["gs-01", "gs-02"]
    assert (first.host, first.port, first.user) == ("10.0.0.11", 2222, "deploy")
    assert first.key == "~/.ssh/id_ed25519"
    assert first.known_hosts == "/etc/patchbay/gs-01.known_hosts"
    assert first.tags == ["eu", "canary"]
    assert first.vars == {"root": "/srv/game", "game_port": 27015}


def test_defaults_port_22_and_top_level_known_hosts():
    inventory = parse_inventory(GOOD, "fleet.yml")

    second = inventory.servers[1]
    assert second.port == 22
    assert second.known_hosts == "/etc/patchbay/known_hosts"
    assert (second.key, second.tags, second.vars) == (None, [], {})


def test_without_top_level_known_hosts_servers_have_none():
    inventory = parse_inventory("servers:\n  - {name: a, host: h, user: u}\n")

    assert inventory.servers[0].known_hosts is None


def test_line_bookkeeping_does_not_leak_into_nested_vars():
    text = textwrap.dedent("""\
        servers:
          - name: gs-01
            host: 10.0.0.11
            user: deploy
            vars:
              game:
                port: 27015
                maps: [{name: dust}]
        """)

    inventory = parse_inventory(text)

    assert inventory.servers[0].vars == {"game": {"port": 27015, "maps": [{"name": "dust"}]}}


def test_empty_servers_list_is_an_empty_inventory():
    assert parse_inventory("servers: []\n").servers == []


def test_invalid_yaml_names_the_file():
    message = parse_error("servers:\n  - name: [gs-01\n")

    assert message.startswith("fleet.yml: not valid YAML")
    assert "line" in message


@pytest.mark.parametrize("text", ["", "- gs-01\n", "servers: gs-01\n", "hosts: []\n",
                                  "servers:\n  gs-01: {}\n"],
                         ids=["empty", "list", "servers-scalar", "no-servers", "servers-map"])
def test_without_a_servers_list(text):
    message = parse_error(text)

    assert message == "fleet.yml: expected a mapping with a 'servers' list"


def test_unknown_top_level_field_names_its_line_and_name():
    text = "# production fleet\n\nservers: []\nknown_host: /etc/known_hosts\n"

    message = parse_error(text)

    assert "'known_host'" in message
    assert "line 4" in message


def test_server_missing_host_names_its_line_and_field():
    text = textwrap.dedent("""\
        servers:
          - name: gs-01
            host: 10.0.0.11
            user: deploy

          - name: gs-02
            user: deploy
        """)

    message = parse_error(text)

    assert "line 6" in message
    assert "servers[1].host" in message
    assert "Field required" in message


@pytest.mark.parametrize("port", [0, 70000, "abc", -22, 65536])
def test_bad_port(port):
    text = f"servers:\n  - name: gs-01\n    host: h\n    user: u\n    port: {port}\n"

    message = parse_error(text)

    assert "line 2" in message
    assert "servers[0].port" in message


@pytest.mark.parametrize("port", [1, 65535, "2222"])
def test_port_edges_are_accepted(port):
    text = f"servers:\n  - name: gs-01\n    host: h\n    user: u\n    port: {port}\n"

    assert parse_inventory(text).servers[0].port == int(port)


def test_duplicate_name_names_both_lines():
    text = textwrap.dedent("""\
        servers:
          - {name: gs-01, host: 10.0.0.11, user: deploy}
          - {name: gs-02, host: 10.0.0.12, user: deploy}
          - {name: gs-01, host: 10.0.0.13, user: deploy}
        """)

    message = parse_error(text)

    assert "line 4" in message
    assert "first on line 2" in message
    assert "'gs-01'" in message
    assert "servers[2].name" in message


@pytest.mark.parametrize("tag", ["has space", "-leading", "semi;colon", "x" * 65])
def test_bad_tag_names_line_and_field(tag):
    text = f"servers:\n  - name: gs-01\n    host: h\n    user: u\n    tags: ['{tag}']\n"

    message = parse_error(text)

    assert "line 2" in message
    assert "servers[0].tags" in message
    assert repr(tag) in message


@pytest.mark.parametrize("var", ["1st", "game-port", "with space"])
def test_bad_var_name_names_line_and_field(var):
    text = f"servers:\n  - name: gs-01\n    host: h\n    user: u\n    vars: {{'{var}': 1}}\n"

    message = parse_error(text)

    assert "line 2" in message
    assert "servers[0].vars" in message
    assert repr(var) in message


def test_unknown_field_in_a_server_entry():
    text = "servers:\n  - name: gs-01\n    host: h\n    user: u\n    password: hunter2\n"

    message = parse_error(text)

    assert "line 2" in message
    assert "servers[0].password" in message


@pytest.mark.parametrize(("field", "value"), [
    ("name", "'gs 01'"), ("name", "'-gs'"), ("host", "'10.0.0.1; reboot'"),
    ("host", "''"), ("user", "'root; id'"),
])
def test_bad_values_name_the_field(field, value):
    entry = {"name": "gs-01", "host": "h", "user": "u", field: value}
    text = "servers:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in entry.items()) + "\n"

    message = parse_error(text)

    assert "line 2" in message
    assert f"servers[0].{field}" in message


def test_a_server_that_is_not_a_mapping():
    message = parse_error("servers:\n  - gs-01\n")

    assert "servers[0]" in message


# --- importing -----------------------------------------------------------------------


def server_count() -> int:
    return db.session.scalar(select(func.count()).select_from(Server))


def test_apply_creates_servers(app):
    inventory = parse_inventory(GOOD, "fleet.yml")

    with app.app_context():
        created, updated = apply_inventory(db.session, inventory)
        db.session.commit()
        stored = db.session.scalar(select(Server).where(Server.name == "gs-01"))

        assert (created, updated) == (2, 0)
        assert server_count() == 2
        assert (stored.host, stored.port, stored.user) == ("10.0.0.11", 2222, "deploy")
        assert stored.key_path == "~/.ssh/id_ed25519"
        assert stored.known_hosts == "/etc/patchbay/gs-01.known_hosts"
        assert stored.tags == ["eu", "canary"]
        assert stored.vars == {"root": "/srv/game", "game_port": 27015}


def test_reimport_updates_by_name(app):
    changed = GOOD.replace("10.0.0.11", "10.0.0.99") + textwrap.indent(
        "- {name: gs-03, host: 10.0.0.13, user: deploy}\n", "  ")

    with app.app_context():
        apply_inventory(db.session, parse_inventory(GOOD))
        db.session.commit()
        created, updated = apply_inventory(db.session, parse_inventory(changed))
        db.session.commit()
        moved = db.session.scalar(select(Server).where(Server.name == "gs-01"))

        assert (created, updated) == (1, 2)
        assert server_count() == 3
        assert moved.host == "10.0.0.99"


def test_cli_imports_a_good_file(app, tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(GOOD)

    result = app.test_cli_runner().invoke(args=["import-inventory", str(path)])

    assert result.exit_code == 0, result.output
    assert "2 server(s) created, 0 updated" in result.output
    with app.app_context():
        assert server_count() == 2


def test_cli_refuses_a_bad_file_and_imports_nothing(app, tmp_path):
    runner = app.test_cli_runner()
    good = tmp_path / "fleet.yml"
    good.write_text(GOOD)
    assert runner.invoke(args=["import-inventory", str(good)]).exit_code == 0
    with app.app_context():
        before = server_count()
    bad = tmp_path / "bad.yml"
    bad.write_text(GOOD.replace("10.0.0.11", "10.0.0.77")
                   + "  - {name: gs-09, host: 10.0.0.19, user: deploy, port: 70000}\n")

    result = runner.invoke(args=["import-inventory", str(bad)])

    assert result.exit_code != 0
    assert "servers[2].port" in result.output
    assert "nothing imported" in result.output
    with app.app_context():
        assert server_count() == before
        first = db.session.scalar(select(Server).where(Server.name == "gs-01"))
        assert first.host == "10.0.0.11"


def test_cli_reports_a_missing_file(app, tmp_path):
    result = app.test_cli_runner().invoke(
        args=["import-inventory", str(tmp_path / "missing.yml")])

    assert result.exit_code != 0
    assert "missing.yml" in result.output


def test_host_key_policy_defaults_to_strict_and_can_be_set_per_file_or_server():
    text = textwrap.dedent("""\
        host_key_policy: accept-new
        servers:
          - {name: a, host: 10.0.0.1, user: u}
          - {name: b, host: 10.0.0.2, user: u, host_key_policy: strict}
        """)

    inventory = parse_inventory(text)

    assert [s.host_key_policy for s in inventory.servers] == ["accept-new", "strict"]
    assert parse_inventory("servers: [{name: c, host: h, user: u}]").servers[0] \
        .host_key_policy == "strict"


@pytest.mark.parametrize("text", [
    "host_key_policy: yolo\nservers: []\n",
    "servers:\n  - {name: a, host: h, user: u, host_key_policy: yolo}\n",
])
def test_an_unknown_host_key_policy_is_refused(text):
    with pytest.raises(InventoryError, match="host_key_policy"):
        parse_inventory(text)


# --- secrets: secret_vars, defaults, {env: NAME} (issue #12, finding 3) ---------------

SECRET_FLEET = textwrap.dedent("""\
    defaults:
      vars: {root: /srv/game, token: {env: PB_TOKEN}, rcon: default-rcon}
      secret_vars: [rcon, missing_here]
    servers:
      - name: gs-01
        host: 10.0.0.11
        user: deploy
        vars: {rcon: own-rcon-value, db_password: s3cret-db}
        secret_vars: [db_password]
      - name: gs-02
        host: 10.0.0.12
        user: deploy
        vars: {root: /srv/other}
    """)


def test_defaults_give_every_server_vars_and_secret_names_its_own_vars_override():
    first, second = parse_inventory(SECRET_FLEET).servers

    assert first.vars == {"root": "/srv/game", "token": {"env": "PB_TOKEN"},
                          "rcon": "own-rcon-value", "db_password": "s3cret-db"}
    assert first.secret_vars == ["db_password", "rcon"]
    assert second.vars == {"root": "/srv/other", "token": {"env": "PB_TOKEN"},
                           "rcon": "default-rcon"}
    assert second.secret_vars == ["rcon"]


@pytest.mark.parametrize(("entry", "where"), [
    ("vars: {token: {env: 1}}", "servers[0].vars"),
    ("vars: {token: {env: 'has space'}}", "servers[0].vars"),
    ("vars: {token: {env: A, default: b}}", "servers[0].vars"),
    ("vars: {token: {$sealed: abc}}", "servers[0].vars"),
    ("secret_vars: [nope]", "servers[0].secret_vars"),
    ("secret_vars: ['not-an-identifier']", "servers[0].secret_vars"),
])
def test_a_bad_secret_or_environment_reference_names_its_line_and_field(entry, where):
    message = parse_error(f"servers:\n  - name: gs-01\n    host: h\n    user: u\n    {entry}\n")

    assert "line 2" in message
    assert where in message


@pytest.mark.parametrize(("defaults", "where"), [
    ("defaults: [a]", "defaults"),
    ("defaults: {vars: {token: {env: 1}}}", "defaults.vars"),
    ("defaults: {secret: [a]}", "defaults.secret"),
])
def test_bad_defaults_are_refused(defaults, where):
    message = parse_error(f"{defaults}\nservers: []\n")

    assert f"{where}" in message


def test_apply_seals_written_out_secrets_and_keeps_environment_references(app):
    from tasks.planning.secrets import SecretBox

    box = SecretBox("inventory-key")
    with app.app_context():
        apply_inventory(db.session, parse_inventory(SECRET_FLEET), seal=box.seal)
        db.session.commit()
        stored = db.session.scalar(select(Server).where(Server.name == "gs-01")).vars

    assert stored["root"] == "/srv/game"
    assert stored["token"] == {"env": "PB_TOKEN"}
    assert box.open(stored["rcon"]["$sealed"]) == "own-rcon-value"
    assert box.open(stored["db_password"]["$sealed"]) == "s3cret-db"
    assert "s3cret-db" not in repr(stored) and "own-rcon-value" not in repr(stored)


def test_apply_without_a_key_refuses_written_out_secrets(app):
    with app.app_context(), pytest.raises(InventoryError,
                                          match="is secret: import it with the console"):
        apply_inventory(db.session, parse_inventory(SECRET_FLEET))


def test_the_cli_import_seals_secrets_with_the_console_key(app, tmp_path):
    path = tmp_path / "fleet.yml"
    path.write_text(SECRET_FLEET)

    result = app.test_cli_runner().invoke(args=["import-inventory", str(path)])

    assert result.exit_code == 0, result.output
    with app.app_context():
        stored = db.session.scalar(select(Server).where(Server.name == "gs-01")).vars
        box = console_services(app).engine.secrets
        assert box.open(stored["db_password"]["$sealed"]) == "s3cret-db"


def test_vars_resolve_at_plan_time_from_the_environment_and_sealed_values():
    from tasks.planning.inventory import resolve_vars
    from tasks.planning.secrets import SecretBox

    box = SecretBox("inventory-key")
    stored = {"root": "/srv", "token": {"env": "PB_TOKEN"}, "rcon": {"$sealed": box.seal("r")},
              "gone": {"env": "PB_UNSET"}}

    resolved = resolve_vars("gs-01", stored, {"PB_TOKEN": "t0ken"}, box)
    unreadable = resolve_vars("gs-01", stored, {}, SecretBox("another-key"))

    assert resolved.values == {"root": "/srv", "token": "t0ken", "rcon": "r"}
    assert resolved.secret == {"token", "rcon", "gone"}
    assert sorted(resolved.secret_values()) == ["r", "t0ken"]
    assert resolved.unavailable == {"gone": "server gs-01 variable 'gone' reads the "
                                    "environment variable PB_UNSET, which is not set in "
                                    "the console's environment"}
    assert set(unreadable.unavailable) == {"token", "rcon", "gone"}
    assert "cannot be decrypted" in unreadable.unavailable["rcon"]
    assert "import the inventory again" in unreadable.unavailable["rcon"]
