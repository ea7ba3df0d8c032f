"""Secrets the parts need in clear (webhook signing secrets, later feature-payload keys),
sealed under the master key wherever they are stored.

The master key is ``SEXTANT_SECRET_KEY``: one or more Fernet keys (32 random bytes, url-safe
base64), comma-separated, newest first. A value is sealed with the first key and opened with
any of them (``cryptography``'s ``MultiFernet``), so a key is rotated by putting a new one in
front, running ``sextant secrets rotate`` (which re-seals every stored value under it), and
then dropping the old one. A sealed value reads ``sealed:v1:<Fernet token>``: AES-128-CBC
with an HMAC-SHA256 over it, so a value that was altered, or sealed under another key, is
refused rather than misread.

Which fields are secrets is said once, in the schemas: a field annotated ``Sealed`` (see
``sextant.schemas.config.SealedSecret``). :func:`seal_secrets`, :func:`reseal_secrets` and
:func:`map_secrets` find them in any document.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pydantic import BaseModel, SecretStr

from sextant.schemas.config import SEALED_PREFIX, Sealed

__all__ = [
    "SEALED_PREFIX",
    "MissingSecretKey",
    "SecretBox",
    "SecretKeyInvalid",
    "UnreadableSecret",
    "encrypt_payload",
    "generate_secret_key",
    "has_clear_secrets",
    "is_sealed",
    "map_secrets",
    "new_payload_key",
    "open_secret",
    "reseal_secrets",
    "seal_documents",
    "seal_secrets",
]

ModelT = TypeVar("ModelT", bound=BaseModel)
MAKE_ONE = "`sextant bootstrap --secret-key` makes one"


class MissingSecretKey(RuntimeError):  # noqa: N818 - the name says what is missing
    """A secret must be sealed or opened, and ``SEXTANT_SECRET_KEY`` is not set."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs the master key, and SEXTANT_SECRET_KEY is not set: set it to the "
            f"key this deployment uses (the one `sextant bootstrap` printed or your .env "
            f"holds; {MAKE_ONE} for a new deployment)"
        )


class SecretKeyInvalid(ValueError):  # noqa: N818 - the name says what is wrong
    """``SEXTANT_SECRET_KEY`` is set but is not a list of Fernet keys."""


class UnreadableSecret(ValueError):  # noqa: N818 - the name says what is wrong
    """A sealed value that none of the keys opens (sealed under another key, or altered);
    ``field`` names where it sits in a document, when known."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.reason = message
        self.field = field


def generate_secret_key() -> str:
    """A new master key: 32 random bytes, url-safe base64 (what ``Fernet`` expects)."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode()


def is_sealed(value: str) -> bool:
    return value.startswith(SEALED_PREFIX)


def _fernet(key: str, position: int) -> Fernet:
    try:
        return Fernet(key.strip().encode())
    except (ValueError, binascii.Error):
        raise SecretKeyInvalid(
            f"SEXTANT_SECRET_KEY: key {position} of the list is not a Fernet key (32 random "
            f"bytes, url-safe base64, 44 characters); {MAKE_ONE}"
        ) from None


class SecretBox:
    """Seals and opens values under the master key; safe to share between threads."""

    def __init__(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        fernets = [_fernet(k, i) for i, k in enumerate(keys, start=1) if k.strip()]
        if not fernets:
            raise SecretKeyInvalid(f"SEXTANT_SECRET_KEY is empty; {MAKE_ONE}")
        self._fernet = MultiFernet(fernets)
        self.key_count = len(fernets)
        self._newest = next(k.strip() for k in keys if k.strip()).encode()

    def derive(self, purpose: str) -> bytes:
        """A key for ``purpose`` (e.g. hashing personal data), derived from the newest master
        key: stable while that key is, never the key itself."""
        return hmac.new(self._newest, purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_setting(cls, value: SecretStr | None) -> SecretBox | None:
        """The box of a ``secret_key`` setting (comma-separated keys); ``None`` when unset."""
        if value is None or not value.get_secret_value().strip():
            return None
        return cls(value.get_secret_value().split(","))

    def seal(self, clear: str) -> str:
        """``clear`` sealed under the newest key."""
        return SEALED_PREFIX + self._fernet.encrypt(clear.encode()).decode()

    def open(self, sealed: str) -> str:
        """The clear value of ``sealed``; :class:`UnreadableSecret` if no key opens it."""
        if not is_sealed(sealed):
            raise UnreadableSecret("not a sealed value")
        try:
            return self._fernet.decrypt(sealed[len(SEALED_PREFIX) :].encode()).decode()
        except (InvalidToken, UnicodeDecodeError):
            raise UnreadableSecret(
                "a sealed secret opens with none of the keys in SEXTANT_SECRET_KEY (sealed "
                "under another key, or altered)"
            ) from None

    def reseal(self, value: str) -> str:
        """``value`` sealed under the newest key: a sealed value is re-encrypted (rotation),
        a clear one (left by an older writer) sealed."""
        if not is_sealed(value):
            return self.seal(value)
        try:
            token = self._fernet.rotate(value[len(SEALED_PREFIX) :].encode())
        except InvalidToken:
            raise UnreadableSecret(
                "a sealed secret opens with none of the keys in SEXTANT_SECRET_KEY"
            ) from None
        return SEALED_PREFIX + token.decode()


def open_secret(value: str, box: SecretBox | None, what: str = "a sealed secret") -> str:
    """The clear value of a stored secret: sealed values are opened (a
    :class:`MissingSecretKey` without a key); a clear value (written before secrets were
    sealed) is returned as it is."""
    if not is_sealed(value):
        return value
    if box is None:
        raise MissingSecretKey(f"opening {what}")
    return box.open(value)


# --- finding the secrets in documents -----------------------------------------------------

FieldPath = tuple[str | int, ...]
"""Where a value sits in a document: field names and list positions."""


def _is_secret_field(model: type[BaseModel], name: str) -> bool:
    return any(isinstance(m, Sealed) for m in model.model_fields[name].metadata)


def _walk(value: Any, path: FieldPath, change: Callable[[FieldPath, str], str]) -> Any:
    if isinstance(value, BaseModel):
        return map_secrets(value, change, path)
    if isinstance(value, list | tuple):
        items = [_walk(item, (*path, i), change) for i, item in enumerate(value)]
        changed = any(new is not old for new, old in zip(items, value, strict=True))
        return type(value)(items) if changed else value
    if isinstance(value, dict):
        entries = {k: _walk(v, (*path, str(k)), change) for k, v in value.items()}
        changed = any(entries[k] is not v for k, v in value.items())
        return entries if changed else value
    return value


def map_secrets(
    model: ModelT, change: Callable[[FieldPath, str], str], path: FieldPath = ()
) -> ModelT:
    """``model`` with every ``Sealed`` field's value replaced by ``change(path, value)``
    (nested models, lists and dicts included); the same object when nothing changed."""
    updates: dict[str, Any] = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, str) and _is_secret_field(type(model), name):
            new: Any = change((*path, name), value)
        else:
            new = _walk(value, (*path, name), change)
        if new is not value:
            updates[name] = new
    return model.model_copy(update=updates) if updates else model


def _where(path: FieldPath) -> str:
    return ".".join(str(p) for p in path)


def seal_secrets(document: ModelT, box: SecretBox | None) -> ModelT:
    """``document`` with every clear secret sealed, ready to be stored.

    A value already sealed is kept as it is, after checking that the key opens it (so a
    sealed value read from the admin API can be written back). Raises
    :class:`MissingSecretKey` when there is a clear secret to seal and no key, and
    :class:`UnreadableSecret` (its message names the field) for a sealed value the key
    does not open.
    """

    def seal(path: FieldPath, value: str) -> str:
        if not value:
            return value
        if is_sealed(value):
            if box is not None:
                try:
                    box.open(value)
                except UnreadableSecret as error:
                    raise UnreadableSecret(error.reason, _where(path)) from None
            return value
        if box is None:
            raise MissingSecretKey(f"storing the secret at '{_where(path)}'")
        return box.seal(value)

    return map_secrets(document, seal)


def seal_documents(documents: Iterable[ModelT], box: SecretBox | None) -> list[ModelT]:
    """:func:`seal_secrets` of each document."""
    return [seal_secrets(document, box) for document in documents]


def reseal_secrets(document: ModelT, box: SecretBox) -> ModelT:
    """``document`` with every secret sealed under the newest key (``sextant secrets
    rotate``); :class:`UnreadableSecret` names a field no key opens."""

    def reseal(path: FieldPath, value: str) -> str:
        if not value:
            return value
        try:
            return box.reseal(value)
        except UnreadableSecret as error:
            raise UnreadableSecret(error.reason, _where(path)) from None

    return map_secrets(document, reseal)


def has_clear_secrets(document: BaseModel) -> bool:
    """Whether a secret of ``document`` is stored in clear (by a writer older than sealing)."""
    found: list[FieldPath] = []

    def look(path: FieldPath, value: str) -> str:
        if value and not is_sealed(value):
            found.append(path)
        return value

    map_secrets(document, look)
    return bool(found)


# --- GrowthBook's encrypted SDK payloads --------------------------------------------------


def new_payload_key() -> str:
    """A payload encryption key as GrowthBook's SDKs take it: 128 random bits, base64."""
    return base64.b64encode(os.urandom(16)).decode()


def encrypt_payload(clear: str, key: str) -> str:
    """``clear`` encrypted as GrowthBook encrypts its SDK payloads: AES-128-CBC with PKCS#7
    padding, written ``base64(iv).base64(ciphertext)``.

    The IV is derived from the key and the text (an HMAC), not drawn at random: the same
    payload encrypts to the same text, so its ETag stays the same until it changes. An IV
    must never repeat for two different texts under one key, and this one changes with the
    text; equal texts giving equal ciphertexts shows only that nothing changed, which the
    ETag says anyway.
    """
    raw_key = base64.b64decode(key)
    data = clear.encode()
    iv = hmac.new(raw_key, data, hashlib.sha256).digest()[:16]
    padder = padding.PKCS7(128).padder()
    padded = padder.update(data) + padder.finalize()
    encryptor = Cipher(algorithms.AES(raw_key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padded) + encryptor.finalize()
    return f"{base64.b64encode(iv).decode()}.{base64.b64encode(body).decode()}"
