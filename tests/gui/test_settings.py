"""Settings page: profile editing, validation messages, secrets only in the keyring."""

from __future__ import annotations

import json

import pytest

from fleetdesk.config import Profiles
from fleetdesk_gui.app import build_window

pytestmark = [pytest.mark.gui, pytest.mark.timeout(60)]


@pytest.fixture
def page(qtbot, qsettings):
    ctx, win = build_window(Profiles(), qsettings)
    qtbot.addWidget(win)
    win.show()
    return ctx, win, win.show_page("Settings")


def fill_aws(page, name="prod", endpoint="abc123-ats.iot.eu-west-1.amazonaws.com", region="eu-west-1"):
    page.profile_combo.setCurrentIndex(page.profile_combo.findData(None))
    page.name_edit.setText(name)
    page.kind_combo.setCurrentIndex(page.kind_combo.findData("aws"))
    page.endpoint_edit.setText(endpoint)
    page.region_edit.setText(region)


def test_empty_endpoint_is_refused_with_advice(page):
    ctx, win, p = page
    fill_aws(p, endpoint="")
    assert not p.save()
    assert "endpoint is empty" in p.message.text()
    assert "describe-endpoint" in p.message.text()
    assert not Profiles.path().exists()
    assert p.name_edit.text() == "prod", "the form lost what was typed"


@pytest.mark.parametrize(
    "field,value,needle",
    [
        ("endpoint", "https://abc.iot.eu-west-1.amazonaws.com", "not a host name"),
        ("region", "Europe", "not an AWS region"),
        ("name", "my profile!", "profile name"),
    ],
)
def test_bad_fields_are_named(page, field, value, needle):
    ctx, win, p = page
    kw = {field: value}
    fill_aws(p, **kw)
    assert not p.save()
    assert needle in p.message.text()


def test_keyring_secret_is_stored_in_keyring_not_in_the_file(page, memory_keyring, qtbot):
    ctx, win, p = page
    fill_aws(p)
    p.cred_combo.setCurrentIndex(p.cred_combo.findData("keyring"))
    p.key_id_edit.setText("AKIAEXAMPLE")
    p.secret_edit.setText("s3cr3t-value")
    with qtbot.waitSignal(ctx.profile_changed, timeout=2000):
        assert p.save(), p.message.text()
    text = Profiles.path().read_text()
    assert "s3cr3t-value" not in text
    saved = json.loads(text)
    assert saved["active"] == "prod"
    assert saved["profiles"]["prod"]["endpoint"] == "abc123-ats.iot.eu-west-1.amazonaws.com"
    assert memory_keyring.store[("fleetdesk", "prod:AKIAEXAMPLE")] == "s3cr3t-value"
    assert Profiles.load().current.secret_key() == "s3cr3t-value"
    assert p.secret_edit.text() == ""
    assert win.status_label.text().startswith("Profile prod · AWS eu-west-1")
    assert "Saved" in p.message.text()


def test_keyring_credentials_need_a_secret(page, memory_keyring):
    ctx, win, p = page
    fill_aws(p)
    p.cred_combo.setCurrentIndex(p.cred_combo.findData("keyring"))
    p.key_id_edit.setText("AKIAEXAMPLE")
    assert not p.save()
    assert "no secret access key is stored" in p.message.text()


def test_no_os_keyring_gives_a_clear_message(page):
    import keyring
    from keyring.backends.fail import Keyring as FailKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(FailKeyring())
    try:
        ctx, win, p = page
        fill_aws(p)
        p.cred_combo.setCurrentIndex(p.cred_combo.findData("keyring"))
        p.key_id_edit.setText("AKIAEXAMPLE")
        p.secret_edit.setText("x")
        assert not p.save()
        assert "OS keyring is not available" in p.message.text()
        assert not Profiles.path().exists()
    finally:
        keyring.set_keyring(previous)


def test_sandbox_state_dir_edit_round_trips(page, tmp_path, shot):
    ctx, win, p = page
    assert p.kind_stack.currentIndex() == 0
    p.state_dir_edit.setText(str(tmp_path / "sb"))
    assert p.save(), p.message.text()
    assert Profiles.load().current.state_dir == str(tmp_path / "sb")
    assert ctx.profile.state_dir == str(tmp_path / "sb")
    shot(win, "settings-sandbox")


def test_aws_form_screenshot(page, shot, memory_keyring):
    ctx, win, p = page
    fill_aws(p)
    p.cred_combo.setCurrentIndex(p.cred_combo.findData("aws-profile"))
    assert not p.save()  # no AWS CLI profile named yet
    assert "name the AWS profile" in p.message.text()
    shot(win, "settings-aws")


@pytest.mark.parametrize(
    "setup,field",
    [
        (dict(endpoint=""), "endpoint_edit"),
        (dict(region="Europe"), "region_edit"),
        (dict(name="my profile!"), "name_edit"),
        (dict(cred="aws-profile"), "aws_profile_edit"),
    ],
)
def test_the_field_a_message_names_is_marked(page, setup, field):
    ctx, win, p = page
    cred = setup.pop("cred", None)
    fill_aws(p, **setup)
    if cred:
        p.cred_combo.setCurrentIndex(p.cred_combo.findData(cred))
    assert not p.save()
    marked = [n for n in ("name_edit", "endpoint_edit", "region_edit", "aws_profile_edit", "key_id_edit",
                          "secret_edit", "state_dir_edit") if getattr(p, n).property("problem")]
    assert marked == [field], p.message.text()
    assert "  -> " not in p.message.text()  # advice on its own line, as elsewhere in the app
    p.load_profile(ctx.profile)  # another profile shown: no stale mark
    assert not getattr(p, field).property("problem")


def test_sandbox_form_says_what_the_sandbox_does_now(page):
    from fleetdesk.sandbox.launcher import LauncherState

    ctx, win, p = page
    assert p.sandbox_status.text().startswith("stopped — profile sandbox, state in ")
    ctx.set_cloud_state(LauncherState("running", {"mqtt_host": "127.0.0.1", "mqtt_port": 28883, "state_dir": "/x/sb"}))
    assert p.sandbox_status.text() == "running, mqtt 127.0.0.1:28883 — profile sandbox, state in /x/sb"
    ctx.set_cloud_state(LauncherState("failed", reason="port 28883 in use"))
    assert p.sandbox_status.text().startswith("failed: port 28883 in use")
