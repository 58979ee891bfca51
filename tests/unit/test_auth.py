"""Kraken REST signing, nonces and credential hygiene (token fetching is tested end to end)."""

from __future__ import annotations

import threading

import pytest

from kbook.trading.auth import (
    AuthError,
    Credentials,
    InvalidKey,
    InvalidNonce,
    InvalidSignature,
    NonceSource,
    PermissionDenied,
    TokenProvider,
    error_for,
    sign,
)
from tests.data import vector


def test_sign_published_example_matches_byte_for_byte() -> None:
    fields = vector("rest_signature_example.json")["fields"]
    got = sign(
        fields["uri_path"], fields["nonce"], fields["encoded_payload"], fields["private_key"]
    )
    assert got == fields["api_sign"]


def test_sign_any_change_of_the_body_changes_the_signature() -> None:
    fields = vector("rest_signature_example.json")["fields"]
    altered = fields["encoded_payload"].replace("volume=1.25", "volume=1.26")
    assert (
        sign(fields["uri_path"], fields["nonce"], altered, fields["private_key"])
        != fields["api_sign"]
    )


@pytest.mark.parametrize(
    ("errors", "cls"),
    [
        (["EAPI:Invalid key"], InvalidKey),
        (["EAPI:Invalid signature"], InvalidSignature),
        (["EAPI:Invalid nonce"], InvalidNonce),
        (["EGeneral:Permission denied"], PermissionDenied),
        (["EService:Unavailable"], AuthError),
    ],
)
def test_error_for_kraken_strings_typed(errors: list[str], cls: type[AuthError]) -> None:
    exc = error_for(errors)
    assert type(exc) is cls
    assert exc.errors == errors


def test_nonces_strictly_increase_across_threads() -> None:
    nonces = NonceSource()
    seen: list[int] = []
    lock = threading.Lock()

    def take() -> None:
        local = [nonces() for _ in range(2000)]
        with lock:
            seen.extend(local)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == len(seen) == 8000


def test_credentials_secret_never_in_repr_or_provider_repr() -> None:
    secret = vector("rest_signature_example.json")["fields"]["private_key"]
    credentials = Credentials("PUBLICKEY", secret, otp="123456")
    assert secret not in repr(credentials) and "123456" not in repr(credentials)
    assert secret not in repr(TokenProvider(credentials, rest_url="http://127.0.0.1:1"))


def test_credentials_bad_secret_rejected_without_echoing_it() -> None:
    with pytest.raises(AuthError) as info:
        Credentials("KEY", "not base64 !!")
    assert "not base64 !!" not in str(info.value)
