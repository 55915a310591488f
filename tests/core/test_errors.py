"""The project's one exception hierarchy, and the exit codes the command line gives each kind."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import tlsrpt_reporter
from tlsrpt_reporter.cli.app import exit_code
from tlsrpt_reporter.deliver.https import HttpsDeliveryError
from tlsrpt_reporter.deliver.mail import MailCompositionError
from tlsrpt_reporter.deliver.record import RecordError
from tlsrpt_reporter.deliver.smtp import SmtpDeliveryError
from tlsrpt_reporter.errors import (
    CollectorError,
    ConfigError,
    DatagramRejected,
    DeliveryError,
    InputError,
    StoreError,
    TlsRptError,
)
from tlsrpt_reporter.report.reading import ReportFileError

KINDS = (ConfigError, InputError, StoreError, DeliveryError, CollectorError)


def _public_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for module in pkgutil.walk_packages(tlsrpt_reporter.__path__, "tlsrpt_reporter."):
        if module.name.endswith("__main__"):
            continue
        loaded = importlib.import_module(module.name)
        for name, value in vars(loaded).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.name
                and not name.startswith("_")
            ):
                found[f"{module.name}.{name}"] = value
    return found


def test_every_public_exception_of_the_project_is_a_tlsrpt_error() -> None:
    found = _public_exceptions()
    assert len(found) > 10
    strays = [name for name, cls in found.items() if not issubclass(cls, TlsRptError)]
    assert strays == []


def test_there_is_one_delivery_error_and_both_transports_derive_from_it() -> None:
    names = [name.rsplit(".", 1)[1] for name in _public_exceptions()]
    assert names.count("DeliveryError") == 1
    assert issubclass(SmtpDeliveryError, DeliveryError)
    assert issubclass(HttpsDeliveryError, DeliveryError)
    smtp_error = SmtpDeliveryError("x", permanent=True, server="relay a:25", stage="connect")
    https_error = HttpsDeliveryError("x", url="https://a/", status=503)
    assert smtp_error.permanent and not https_error.permanent


def test_a_mail_that_cannot_be_composed_is_a_permanent_delivery_failure() -> None:
    assert MailCompositionError("bad header").permanent


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad key"), 2),
        (InputError("bad file"), 2),
        (DatagramRejected("not-json", "x"), 2),
        (RecordError("no rua"), 2),
        (ReportFileError("not a report"), 2),
        (StoreError("locked"), 1),
        (DeliveryError("relay down"), 1),
        (CollectorError("socket in use"), 1),
        (TlsRptError("anything else"), 1),
    ],
)
def test_exit_code_is_2_for_the_operators_input_and_1_at_run_time(
    error: TlsRptError, code: int
) -> None:
    assert exit_code(error) == code


def test_each_kind_is_distinct() -> None:
    for kind in KINDS:
        others = [other for other in KINDS if other is not kind]
        assert not any(issubclass(kind, other) for other in others), kind
