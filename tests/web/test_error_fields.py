"""A page rendered with an error names the field at fault (issue #32, item 3), so
static/js/core/errors.js says the error beside it: the message's data-field is the id
of the form's field with an error of its own, or of the field a refusal names."""

from __future__ import annotations

import re

from tests.conftest import PASSWORD


def form_token(client, url: str) -> str:
    page = client.get(url).get_data(as_text=True)
    return re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)


def error_of(page: str, box_id: str) -> str:
    return re.search(rf'<p id="{box_id}" class="form-error" role="alert"[^>]*>', page).group(0)


def test_the_users_page_names_the_field_of_a_refusal_and_of_a_form_error(auth, client):
    auth.create("root", PASSWORD, "admin")
    auth.create("alice")
    auth.login("root")
    token = form_token(client, "/admin/users")
    taken = client.post("/admin/users", data={"username": "alice", "password": PASSWORD,
                                              "role": "viewer", "csrf_token": token})
    empty = client.post("/admin/users", data={"username": "", "password": PASSWORD,
                                              "role": "viewer", "csrf_token": token})

    assert taken.status_code == empty.status_code == 400
    assert 'data-field="username"' in error_of(taken.get_data(as_text=True), "admin-error")
    assert 'data-field="username"' in error_of(empty.get_data(as_text=True), "admin-error")


def test_the_account_page_names_the_field_of_its_form_error(auth, client):
    auth.create("alice")
    auth.login("alice")
    token = form_token(client, "/account")
    answer = client.post("/account/tokens", data={"name": "laptop", "expires_in_days": "0",
                                                  "role": "viewer", "csrf_token": token})

    assert answer.status_code == 400
    assert 'data-field="expires_in_days"' in error_of(answer.get_data(as_text=True),
                                                      "account-error")


def test_an_error_of_no_field_names_none(auth, client):
    auth.create("root", PASSWORD, "admin")
    auth.login("root")
    token = form_token(client, "/admin/users")
    answer = client.post("/admin/users/999", data={"action": "role", "role": "viewer",
                                                   "csrf_token": token})

    assert answer.status_code == 404
    assert "data-field" not in error_of(answer.get_data(as_text=True), "admin-error")
