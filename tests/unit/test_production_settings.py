"""A4: production mode refuses every default or empty credential and names it; a
credential that would travel in clear is refused in every mode."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from services.api.settings import ApiSettings
from services.archiver.settings import ArchiverSettings
from services.notifier.settings import NotifierSettings
from services.processor.settings import ProcessorSettings
from shared.runtime import EXIT_UNSAFE_SETTINGS, refuse_unsafe
from shared.settings import CommonSettings

pytestmark = pytest.mark.unit

# What a production deployment sets (docs/security.md).
SAFE: dict[str, Any] = {
    "env": "production",
    "database_url": "postgresql://leadwire_archiver:pg-Str0ng@db.internal:5432/leadwire",
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_username": "leadwire-archiver",
    "kafka_sasl_password": SecretStr("kafka-Str0ng"),
    "s3_access_key": "AKIAARCHIVER",
    "s3_secret_key": SecretStr("s3-Str0ng"),
}


def test_the_defaults_are_fine_for_development() -> None:
    for cls in (CommonSettings, ArchiverSettings, NotifierSettings, ApiSettings):
        assert cls().problems() == []


def test_a_production_deployment_with_its_own_credentials_starts() -> None:
    for cls in (ProcessorSettings, ArchiverSettings, NotifierSettings, ApiSettings):
        assert cls(**SAFE).problems() == []


def test_production_with_the_defaults_names_each_problem() -> None:
    problems = ArchiverSettings(env="production").problems()
    named = " ".join(problems)
    assert len(problems) == 4, problems
    for setting in (
        "LEADWIRE_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        "LEADWIRE_DATABASE_URL: no password",
        "LEADWIRE_S3_ACCESS_KEY: the default",
        "LEADWIRE_S3_SECRET_KEY: the default",
    ):
        assert setting in named


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"database_url": "postgresql://postgres:postgres@db/leadwire"}, "default password"),
        ({"database_url": "postgresql://leadwire@db/leadwire"}, "LEADWIRE_DATABASE_URL: no pass"),
        ({"database_url": "postgresql://app:@db/leadwire"}, "LEADWIRE_DATABASE_URL: no pass"),
        ({"s3_access_key": ""}, "LEADWIRE_S3_ACCESS_KEY: empty"),
        ({"s3_secret_key": SecretStr("leadwire-secret-key")}, "LEADWIRE_S3_SECRET_KEY: the def"),
        ({"kafka_security_protocol": "SSL"}, "Kafka without SASL"),
        ({"kafka_sasl_password": SecretStr("")}, "LEADWIRE_KAFKA_SASL_PASSWORD: empty"),
        ({"kafka_sasl_username": ""}, "LEADWIRE_KAFKA_SASL_USERNAME"),
    ],
)
def test_production_refuses_each_default_or_empty_credential(
    change: dict[str, Any], named: str
) -> None:
    problems = ArchiverSettings(**{**SAFE, **change}).problems()
    assert len(problems) == 1 and named in problems[0], problems


def test_a_password_may_come_as_a_dsn_parameter() -> None:
    url = "postgresql://leadwire_api@db/leadwire?password=pg-Str0ng&sslmode=verify-full"
    assert ApiSettings(**{**SAFE, "database_url": url}).problems() == []


def test_s3_keys_are_checked_only_where_the_bucket_is_used() -> None:
    keys = {"s3_access_key": "leadwire", "s3_secret_key": SecretStr("leadwire-secret-key")}
    assert ProcessorSettings(**{**SAFE, **keys}).problems() == []
    assert len(ApiSettings(**{**SAFE, **keys}).problems()) == 2


def test_sasl_plain_without_tls_is_refused_in_every_mode() -> None:
    plain = {
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "PLAIN",
        "kafka_sasl_username": "u",
        "kafka_sasl_password": SecretStr("p"),
    }
    (problem,) = CommonSettings(**plain).problems()
    assert "PLAIN over SASL_PLAINTEXT" in problem
    assert CommonSettings(**{**plain, "kafka_security_protocol": "SASL_SSL"}).problems() == []


SMTP = {"smtp_host": "mail.internal", "smtp_username": "leadwire", "smtp_password": "pw"}


@pytest.mark.parametrize("env", ["development", "production"])
def test_smtp_credentials_without_tls_are_refused_in_every_mode(env: str) -> None:
    base = {**SAFE, "env": env}
    problems = NotifierSettings(**base, **SMTP, smtp_starttls=False).problems()
    assert (
        len(problems) == 1 and "LEADWIRE_SMTP_STARTTLS=false with SMTP credentials" in problems[0]
    )
    # Implicit TLS, or STARTTLS (required), is fine.
    assert NotifierSettings(**base, **SMTP, smtp_starttls=False, smtp_tls=True).problems() == []
    assert NotifierSettings(**base, **SMTP, smtp_starttls=True).problems() == []


def test_with_credentials_starttls_is_required_unless_tls_is_implicit() -> None:
    assert NotifierSettings(**SMTP).smtp_start_tls() is True  # unset: required, not "if offered"
    assert NotifierSettings(**SMTP, smtp_tls=True).smtp_start_tls() is None
    # Without credentials nothing secret travels: STARTTLS when offered, as configured.
    assert NotifierSettings(smtp_host="mail.internal").smtp_start_tls() is None
    assert (
        NotifierSettings(smtp_host="mail.internal", smtp_starttls=False).smtp_start_tls() is False
    )


def test_production_smtp_needs_a_password_and_certificate_checks() -> None:
    problems = NotifierSettings(
        **SAFE, smtp_host="mail.internal", smtp_username="leadwire", smtp_validate_certs=False
    ).problems()
    assert problems == [
        "LEADWIRE_SMTP_PASSWORD: empty",
        "LEADWIRE_SMTP_VALIDATE_CERTS=false: the server's certificate unchecked",
    ]


def test_refusing_names_every_problem_and_exits_78(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        refuse_unsafe("archiver", ArchiverSettings(env="production"))
    assert exited.value.code == EXIT_UNSAFE_SETTINGS == 78
    err = capsys.readouterr().err
    assert err.startswith("leadwire archiver refuses to start (LEADWIRE_ENV=production):")
    assert err.count("\n  - ") == 4 and "docs/security.md" in err
    refuse_unsafe("archiver", ArchiverSettings(**SAFE))  # returns: nothing to refuse
