"""The email channel against a real local SMTP server (aiosmtpd): STARTTLS or TLS on a certificate made
here, logins checked by the server, the received message parsed with `email`; the notifications come from
checks of the simulator's scenarios."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from prodguardian.channels import load_channels
from prodguardian.channels.mail import Email
from prodguardian.errors import ConfigError
from prodguardian.notification import DeliveryError, Notification, notification_id
from tests.notifications import notification
from tests.smtp_receiver import Certificate, Mailbox, free_port, self_signed, smtp_receiver

PASSWORD = "pa55-W0RD-never-shown"
USERS = {"alerts@example.com": PASSWORD}
HTML_REPORT = "<!DOCTYPE html><html><body><h1>Report</h1><svg><path d='M0 0'/></svg></body></html>"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return self_signed(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def firing() -> Notification:
    """The db-outage's firing notification, with the id the alert lifecycle gives it."""
    found = notification("firing")
    return replace(found, id=notification_id(found.alert, "firing", found.started_at))


@pytest.fixture
def mailbox(certificate: Certificate) -> Iterator[Mailbox]:
    with smtp_receiver(certificate, users=USERS) as server:
        yield server


@pytest.fixture(name="channel")
def starttls_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate, mailbox: Mailbox
) -> Email:
    return email_channel(tmp_path, monkeypatch, mailbox.port, certificate)


def email_channel(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    certificate: Certificate | None,
    extra: str = "",
) -> Email:
    """An email channel loaded from a channels file, its login from the environment and a file."""
    monkeypatch.setenv("SMTP_USERNAME", "alerts@example.com")
    (tmp_path / "smtp.password").write_text(PASSWORD + "\n", encoding="utf-8")
    ca = f"    ca_file: {certificate.cert}\n" if certificate else ""
    path = tmp_path / "channels.yaml"
    path.write_text(
        "channels:\n"
        "  - name: oncall-mail\n    type: email\n    host: 127.0.0.1\n"
        f"    port: {port}\n{ca}"
        "    username_env: SMTP_USERNAME\n    password_file: smtp.password\n"
        '    from: "ProdGuardian <alerts@example.com>"\n'
        "    to: [oncall@example.com, sre@example.org]\n"
        "    subject_prefix: '[prod]'\n    timeout: 5\n" + extra,
        encoding="utf-8",
    )
    [channel] = load_channels(path)
    assert isinstance(channel, Email)
    return channel


def received_one(mailbox: Mailbox) -> EmailMessage:
    [got] = mailbox.received
    assert PASSWORD not in got.data.decode("utf-8", "replace")
    return got.message


def parts(mail: EmailMessage) -> tuple[str, str]:
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


# ------------------------------------------------------------------------------------------ the message


@pytest.mark.parametrize("mechanism", ["LOGIN", "PLAIN"])
def test_an_email_over_starttls_carries_the_findings_symptoms_and_commands(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certificate: Certificate,
    firing: Notification,
    mechanism: str,
) -> None:
    with smtp_receiver(certificate, users=USERS, mechanisms=(mechanism,)) as mailbox:
        email_channel(tmp_path, monkeypatch, mailbox.port, certificate).send(firing)
    assert mailbox.logins == [(mechanism, "alerts@example.com", PASSWORD)]
    assert mailbox.received[0].recipients == ["oncall@example.com", "sre@example.org"]
    mail = received_one(mailbox)
    assert mail["Subject"].startswith("[prod] [CRITICAL] 🔴 emergence-app")
    assert mail["From"] == "ProdGuardian <alerts@example.com>"
    assert mail["Message-ID"] == f"<{firing.id}.prodguardian@example.com>"
    assert mail["In-Reply-To"] is None  # the episode's first message starts the thread
    text, html = parts(mail)
    for body in (text, html):
        assert "Database unavailable" in body and "manager.py" in body
        assert "prodguardian check --service emergence-app" in body
        assert "Also affected (not sent separately)" in body
        assert "Firing · emergence-app · since" in body
    symptom = firing.symptoms[0]["summary"]
    assert symptom.split()[0] in text
    assert "attached" not in text and not list(mail.iter_attachments())


def test_the_html_report_travels_as_an_attachment(
    channel: Email, mailbox: Mailbox, firing: Notification
) -> None:
    channel.send(replace(firing, html=HTML_REPORT))
    mail = received_one(mailbox)
    [attachment] = mail.iter_attachments()
    assert isinstance(attachment, EmailMessage)
    assert attachment.get_filename() == "prodguardian-report.html"
    assert attachment.get_content_type() == "text/html"
    assert attachment.get_content() == HTML_REPORT
    text, html = parts(mail)
    assert "attached: prodguardian-report.html" in text and "<svg" not in html


def test_a_reminder_and_the_resolution_thread_under_the_first_firing(
    channel: Email, mailbox: Mailbox, firing: Notification
) -> None:
    later = firing.at + timedelta(hours=4)
    reminder = replace(
        firing, id=notification_id(firing.alert, "reminder", later), event="reminder", at=later
    )
    resolved = replace(
        firing, id=notification_id(firing.alert, "resolved", later), event="resolved", at=later, commands=[]
    )
    for sent in (firing, reminder, resolved):
        channel.send(sent)
    first, *replies = (got.message for got in mailbox.received)
    assert [mail["In-Reply-To"] for mail in replies] == [first["Message-ID"]] * 2
    assert [mail["References"] for mail in replies] == [first["Message-ID"]] * 2
    assert len({mail["Message-ID"] for mail in (first, *replies)}) == 3
    assert replies[1]["Subject"].startswith("[prod] [CRITICAL] ✅ Resolved")
    assert "Resolved · emergence-app" in parts(replies[1])[0]


def test_a_retry_is_the_same_message(channel: Email, mailbox: Mailbox, firing: Notification) -> None:
    channel.send(firing)
    channel.send(firing)
    assert len({got.message["Message-ID"] for got in mailbox.received}) == 1


def test_a_french_notification_is_worded_in_french(
    channel: Email, mailbox: Mailbox, firing: Notification
) -> None:
    french = replace(notification("firing", lang="fr"), html=HTML_REPORT)
    channel.send(french)
    text, html = parts(received_one(mailbox))
    assert "Constats" in text and "À lancer" in text and "Envoyé par ProdGuardian." in text
    assert 'lang="fr"' in html and "est joint" in html


def test_log_text_in_the_title_and_findings_is_data(
    channel: Email, mailbox: Mailbox, firing: Notification
) -> None:
    hostile = replace(
        firing,
        title="🔴 down\r\nBcc: attacker@evil.example\r\n\r\n<script>alert(1)</script>",
        alert="emergence-app/db\r\nBcc: attacker@evil.example",
        findings=[{**firing.findings[0], "examples": ["<script>alert(2)</script>\r\nBcc: x@evil.example"]}],
    )
    channel.send(hostile)
    assert mailbox.received[0].recipients == ["oncall@example.com", "sre@example.org"]
    mail = received_one(mailbox)
    assert mail["Bcc"] is None
    assert "attacker@evil.example" in mail["Subject"]  # shown as text, on the subject's one line
    _, html = parts(mail)
    assert "<script>" not in html and "&lt;script&gt;alert(2)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------------------ transports


def test_tls_from_the_start_on_port_465_style(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate, firing: Notification
) -> None:
    with smtp_receiver(certificate, tls_from_start=True, users=USERS) as mailbox:
        email_channel(tmp_path, monkeypatch, mailbox.port, certificate, "    ssl: true\n").send(firing)
    assert mailbox.logins[0][1:] == ("alerts@example.com", PASSWORD)
    assert "Database unavailable" in parts(received_one(mailbox))[0]


def test_without_login_on_a_local_relay(tmp_path: Path, firing: Notification) -> None:
    path = tmp_path / "channels.yaml"
    with smtp_receiver() as mailbox:
        path.write_text(
            "channels:\n  - name: relay\n    type: email\n    host: localhost\n"
            f"    port: {mailbox.port}\n    starttls: false\n"
            "    from: alerts@example.com\n    to: oncall@example.com\n",
            encoding="utf-8",
        )
        [channel] = load_channels(path)
        channel.send(firing)
    assert received_one(mailbox)["To"] == "oncall@example.com"


# ------------------------------------------------------------------------------------------ failures


def delivery_error(channel: Email, firing: Notification) -> str:
    with pytest.raises(DeliveryError) as caught:
        channel.send(firing)
    message = str(caught.value)
    assert PASSWORD not in message and "\n" not in message
    return message


def test_a_wrong_password_is_a_login_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate, firing: Notification
) -> None:
    with smtp_receiver(certificate, users={"alerts@example.com": "another"}) as mailbox:
        wrong = email_channel(tmp_path, monkeypatch, mailbox.port, certificate)
        message = delivery_error(wrong, firing)
    assert message.startswith(f"oncall-mail: SMTP to 127.0.0.1:{mailbox.port}: login refused: 535")
    assert not mailbox.received


def test_a_refused_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate, firing: Notification
) -> None:
    port = free_port()
    channel = email_channel(tmp_path, monkeypatch, port, certificate)
    assert delivery_error(channel, firing) == f"oncall-mail: SMTP to 127.0.0.1:{port}: Connection refused"


def test_a_server_without_starttls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate, firing: Notification
) -> None:
    with smtp_receiver() as mailbox:
        message = delivery_error(email_channel(tmp_path, monkeypatch, mailbox.port, certificate), firing)
    assert message.endswith("the server does not offer it: STARTTLS extension not supported by server.")
    assert not mailbox.received


def test_an_untrusted_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mailbox: Mailbox, firing: Notification
) -> None:
    message = delivery_error(email_channel(tmp_path, monkeypatch, mailbox.port, None), firing)
    assert "TLS: self-signed certificate" in message
    assert not mailbox.received and not mailbox.logins


def test_refused_recipients(channel: Email, mailbox: Mailbox, firing: Notification) -> None:
    mailbox.refuse = {"oncall@example.com", "sre@example.org"}
    message = delivery_error(channel, firing)
    assert "recipients refused: oncall@example.com (550 5.1.1 no such mailbox here)" in message


def test_the_channel_repr_shows_no_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certificate: Certificate
) -> None:
    assert PASSWORD not in repr(email_channel(tmp_path, monkeypatch, 2525, certificate))


# ------------------------------------------------------------------------------------------ channels file

BASE = "channels:\n  - name: m\n    type: email\n    host: smtp.example.com\n"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (BASE + "    from: a@example.com\n", ":2:5", "channel 'm': to is required"),
        (BASE + "    from: not an address\n    to: b@example.com\n", ":5:5", "channel 'm': from: 'not an"),
        (
            BASE + "    from: a@example.com\n    to: [b@example.com, '']\n",
            ":6:5",
            "channel 'm': to: expected",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    username_env: U\n",
            ":2:5",
            "channel 'm': give both username_env/_file and password_env/_file, or neither",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    username_env: U\n"
            "    password_env: P\n    starttls: false\n",
            ":9:5",
            "channel 'm': starttls: a login is sent over TLS only",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    ssl: true\n    starttls: true\n",
            ":8:5",
            "channel 'm': starttls: give ssl: true (TLS from the start, port 465) or starttls, not both",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    port: 70000\n",
            ":7:5",
            "channel 'm': port: 70000 is not a port number",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    password: hunter2\n",
            ":7:5",
            "channel 'm': password: a secret is not written in the file",
        ),
        (
            BASE + "    from: a@example.com\n    to: b@example.com\n    ca_file: nowhere.pem\n",
            ":7:5",
            "channel 'm': ca_file: nowhere.pem: no such file",
        ),
    ],
)
def test_a_bad_email_channel_is_a_config_error_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, where: str, message: str
) -> None:
    monkeypatch.setenv("U", "user")
    monkeypatch.setenv("P", "hunter2")
    path = tmp_path / "channels.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_channels(path)
    assert str(caught.value.where) == f"{path}{where}"
    assert caught.value.message.startswith(message)
    assert "hunter2" not in str(caught.value)


def test_the_defaults_are_submission_with_starttls_or_smtps(tmp_path: Path) -> None:
    path = tmp_path / "channels.yaml"
    path.write_text(
        BASE + "    from: a@example.com\n    to: b@example.com\n"
        "  - name: s\n    type: email\n    host: smtp.example.com\n    ssl: true\n"
        "    from: a@example.com\n    to: b@example.com\n",
        encoding="utf-8",
    )
    submission, smtps = load_channels(path)
    assert isinstance(submission, Email) and isinstance(smtps, Email)
    assert (submission.port, submission.starttls, submission.tls) == (587, True, False)
    assert (smtps.port, smtps.starttls, smtps.tls) == (465, False, True)


# ------------------------------------------------------------------------------------------ the outbox's form


def test_the_html_report_round_trips_and_old_rows_still_load(firing: Notification) -> None:
    with_html = replace(firing, html=HTML_REPORT)
    assert Notification.from_dict(with_html.to_dict()) == with_html
    old = {k: v for k, v in firing.to_dict().items() if k != "html"}
    assert Notification.from_dict(old) == firing
