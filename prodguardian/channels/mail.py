"""Email over SMTP (`type: email`): a text part and an HTML part from the templates
`notification.txt.j2` and `notification.html.j2`, and the service's HTML report attached when the
notification carries it (mail clients do not render inline SVG in a body, so the charts travel there).

Message-ID is the notification's id, so a retried delivery is the same message; every message of an
alert's episode refers to the episode's first firing message (References, In-Reply-To), so a reminder and
the resolution thread under it. Log text is data: the HTML is autoescaped and headers are one line each."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from functools import cache
from pathlib import Path

import jinja2

from prodguardian.channels.config import Spec
from prodguardian.channels.delivery import DEFAULT_TIMEOUT, Route, scrubbed
from prodguardian.channels.message import message, one_line
from prodguardian.notification import DeliveryError, Notification, notification_id
from prodguardian.render import template_environment

ATTACHMENT = "prodguardian-report.html"
SUBMISSION_PORT, SMTPS_PORT = 587, 465
LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
COLOURS = {"CRITICAL": "#cf222e", "DEGRADED": "#bf8700", "UNKNOWN": "#6e7781", "resolved": "#1a7f37"}


@dataclass(frozen=True)
class Envelope:
    """Who a message is from and to, and the subject's prefix."""

    sender: str
    recipients: tuple[str, ...]
    subject_prefix: str = ""

    @property
    def domain(self) -> str:
        """The sender's domain, the right-hand side of the Message-IDs."""
        return parseaddr(self.sender)[1].rpartition("@")[2] or "prodguardian"


@cache
def _html_templates() -> jinja2.Environment:
    return template_environment().overlay(autoescape=True)


def message_id(notification_key: str, domain: str) -> str:
    return f"<{notification_key}.prodguardian@{domain}>"


def email_message(notification: Notification, envelope: Envelope) -> EmailMessage:
    """The whole email: headers, a text and an HTML alternative, and the attached report when given."""
    m = message(notification)
    mail = EmailMessage()
    mail["Subject"] = envelope.subject_prefix + m.subject
    mail["From"] = envelope.sender
    mail["To"] = ", ".join(envelope.recipients)
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = message_id(notification.id, envelope.domain)
    first = notification_id(notification.alert, "firing", notification.started_at)
    if first != notification.id:
        mail["In-Reply-To"] = mail["References"] = message_id(first, envelope.domain)
    mail["X-ProdGuardian-Alert"] = one_line(notification.alert)
    attached = ATTACHMENT if notification.html else None
    mail.set_content(text_part(notification, attached=attached))
    mail.add_alternative(html_part(notification, attached), subtype="html")
    if notification.html:
        mail.add_attachment(
            notification.html.encode("utf-8"), maintype="text", subtype="html", filename=ATTACHMENT
        )
    return mail


def text_part(notification: Notification, *, titled: bool = True, attached: str | None = None) -> str:
    """The notification as plain text in its language, headed by its title unless `titled` is False."""
    return _rendered(template_environment(), "notification.txt.j2", notification, titled, attached)


def html_part(notification: Notification, attached: str | None = None) -> str:
    """The notification as an HTML page for mail clients: inline styles, every value escaped."""
    return _rendered(_html_templates(), "notification.html.j2", notification, True, attached)


def _rendered(
    environment: jinja2.Environment,
    template: str,
    notification: Notification,
    titled: bool,
    attached: str | None,
) -> str:
    m = message(notification)
    colour = COLOURS["resolved" if m.resolved else notification.severity]
    return environment.get_template(template).render(
        m=m, lang=notification.lang, colour=colour, titled=titled, attached=attached
    )


@dataclass
class Email:
    """An SMTP server and who the messages go to."""

    name: str
    host: str
    envelope: Envelope
    port: int = SUBMISSION_PORT
    starttls: bool = True
    tls: bool = False  # TLS from the first byte (SMTPS, port 465) rather than STARTTLS
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None  # a CA bundle to trust besides the system's (a private relay's)
    route: Route = field(default_factory=Route)
    timeout: float = DEFAULT_TIMEOUT

    def wants(self, notification: Notification) -> bool:
        return self.route.wants(notification)

    def send(self, notification: Notification) -> None:
        mail = email_message(notification, self.envelope)
        try:
            with self._connect() as smtp:
                if self.starttls and not self.tls:
                    smtp.starttls(context=self._tls_context())
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(mail)
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(
                scrubbed(f"{self._where()}: {smtp_cause(exc)}", [self.password or ""])
            ) from None

    def _connect(self) -> smtplib.SMTP:
        if self.tls:
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self._tls_context())
        return smtplib.SMTP(self.host, self.port, timeout=self.timeout)

    def _tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def _where(self) -> str:
        return f"{self.name}: SMTP to {self.host}:{self.port}"


def smtp_cause(exc: BaseException) -> str:
    """One line saying what went wrong, in the server's words when it answered."""
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"the server does not offer it: {exc}"
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return f"login refused: {_answer(exc)}"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(f"{who} ({_said(*said)})" for who, said in exc.recipients.items())
        return f"recipients refused: {refused}"
    if isinstance(exc, smtplib.SMTPSenderRefused):
        return f"sender {exc.sender} refused: {_answer(exc)}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return _answer(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return " ".join(str(exc).split()) or type(exc).__name__


def _answer(exc: smtplib.SMTPResponseException) -> str:
    return _said(exc.smtp_code, exc.smtp_error)


def _said(code: int, text: bytes | str) -> str:
    words = text.decode("utf-8", "replace") if isinstance(text, bytes) else str(text)
    return f"{code} {' '.join(words.split())}".strip()


def build(spec: Spec) -> Email:
    """A `type: email` channel (docs/alerting.md lists its fields)."""
    tls = spec.flag("ssl", False)
    starttls = spec.flag("starttls", not tls)
    if tls and starttls:
        raise spec.error("starttls", "give ssl: true (TLS from the start, port 465) or starttls, not both")
    host = spec.text("host", required=True) or ""
    username, password = spec.secret("username", required=False), spec.secret("password", required=False)
    if bool(username) != bool(password):
        raise spec.error(None, "give both username_env/_file and password_env/_file, or neither")
    if username and not (tls or starttls) and host not in LOOPBACK:
        raise spec.error("starttls", "a login is sent over TLS only: set starttls: true or ssl: true")
    return Email(
        name=spec.name,
        host=host,
        envelope=_envelope(spec),
        port=_port(spec, SMTPS_PORT if tls else SUBMISSION_PORT),
        starttls=starttls,
        tls=tls,
        username=username,
        password=password,
        ca_file=_ca_file(spec),
        route=spec.route(),
        timeout=spec.timeout(),
    )


def _envelope(spec: Spec) -> Envelope:
    sender = _address(spec, "from", spec.text("from", required=True) or "")
    recipients = spec.names("to")
    if recipients is None:
        raise spec.error(None, "to is required (an address or a list of addresses)")
    prefix = spec.text("subject_prefix")
    return Envelope(
        sender,
        tuple(_address(spec, "to", recipient) for recipient in recipients),
        f"{prefix.strip()} " if prefix else "",
    )


def _address(spec: Spec, key: str, text: str) -> str:
    """An address as written (`Name <a@b>` or `a@b`), refused unless it holds one plain address."""
    address = parseaddr(text)[1]
    if "@" not in address or " " in address or any(ord(c) < 32 for c in text):
        raise spec.error(key, f"{text!r} is not an email address")
    return text.strip()


def _port(spec: Spec, default: int) -> int:
    port = spec.number("port", default)
    if not port.is_integer() or port > 65535:
        raise spec.error("port", f"{port:g} is not a port number")
    return int(port)


def _ca_file(spec: Spec) -> str | None:
    written = spec.text("ca_file")
    if written is None:
        return None
    path = Path(spec.path).parent / Path(written).expanduser()
    if not path.is_file():
        raise spec.error("ca_file", f"{written}: no such file")
    return str(path)
