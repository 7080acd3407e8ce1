"""Payload encryption: an AES-256-GCM payload codec with a key ID in each payload, so keys rotate safely.

Called by ``orchestrator.connect`` (every client: CLI, Python API, worker) and ``orchestrator.codec_server`` (the
``/encode`` and ``/decode`` endpoints the Web UI and ``temporal --codec-endpoint`` use). Never imported by workflow
code: ``cryptography`` is a native extension that the workflow sandbox cannot re-import.

What gets encrypted is everything the SDK passes through a payload codec: workflow input (the release spec),
results, signal and update arguments (abort reasons, approvals), activity inputs and results, memos, user metadata
(summaries, details) and, with ``encoded_failure_converter``, failure messages and stack traces. Search
attributes are *not* payloads the codec sees: they stay readable, which is what makes them queryable.

Payload layout: metadata ``encoding=binary/encrypted``, ``encryption-key-id=<id>``,
``encryption-cipher=AES-256-GCM``; data = 12-byte random nonce + ciphertext of the serialized original payload
(its own metadata included) + 16-byte tag. The key ID is bound as associated data, so a payload cannot be
decrypted under a different ID even if two IDs shared a key.

Keys (``KeyRing.from_sources``): ``ROLLWRIGHT_CODEC_KEYS`` (``id=base64key,id2=base64key``) and/or
``ROLLWRIGHT_CODEC_KEYS_FILE``: a file of ``id=base64key`` lines, or a directory with one file per key ID holding
the base64 key (how a Kubernetes Secret is mounted). ``ROLLWRIGHT_CODEC_KEY_ID`` picks the encrypting key; the
others only decrypt, which is how rotation works: add the new key, switch the ID, keep the old key for as long
as histories written with it are retained. Generate a key with ``openssl rand -base64 32``.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
CIPHER = b"AES-256-GCM"
KEY_ID_META = "encryption-key-id"
KEY_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
NONCE_BYTES = 12


class CodecError(Exception):
    """A payload cannot be decrypted (unknown key ID, wrong key, tampered data) or keys are misconfigured."""


@dataclass(frozen=True)
class KeyRing:
    """All known keys by ID, and the ID of the one that encrypts."""

    keys: Mapping[str, bytes]
    encrypt_id: str

    def __post_init__(self) -> None:
        for kid, key in self.keys.items():
            if not KEY_ID_RE.match(kid):
                raise CodecError(f"key ID {kid!r}: only letters, digits, '.', '_', '-' (at most 64)")
            if len(key) != 32:
                raise CodecError(f"key {kid!r}: AES-256 needs 32 bytes, got {len(key)} "
                                 "(generate one with `openssl rand -base64 32`)")
        if self.encrypt_id not in self.keys:
            raise CodecError(f"encrypting key ID {self.encrypt_id!r} is not among the keys ({', '.join(self.keys)})")

    @classmethod
    def from_sources(cls, inline: str | None, path: Path | None, encrypt_id: str | None) -> KeyRing | None:
        """Builds the ring from the configured sources; None when no key is configured (encryption off).

        Raises:
            CodecError: naming the source (variable or file) and what is wrong with it.
        """
        keys: dict[str, bytes] = {}
        if inline:
            for i, item in enumerate(x.strip() for x in inline.split(",")):
                if item:
                    kid, key = _parse_entry(item, f"ROLLWRIGHT_CODEC_KEYS entry {i + 1}")
                    keys[kid] = key
        if path is not None:
            keys.update(_read_key_path(path))
        if not keys:
            if encrypt_id:
                raise CodecError("ROLLWRIGHT_CODEC_KEY_ID is set but no key is configured "
                                 "(ROLLWRIGHT_CODEC_KEYS or ROLLWRIGHT_CODEC_KEYS_FILE)")
            return None
        if encrypt_id is None:
            if len(keys) > 1:
                raise CodecError(f"{len(keys)} codec keys configured ({', '.join(sorted(keys))}): set "
                                 "ROLLWRIGHT_CODEC_KEY_ID to the one that encrypts")
            encrypt_id = next(iter(keys))
        if encrypt_id not in keys:
            raise CodecError(f"ROLLWRIGHT_CODEC_KEY_ID={encrypt_id!r} is not among the configured keys "
                             f"({', '.join(sorted(keys))})")
        return cls(keys, encrypt_id)


def _decode_key(text: str, where: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise CodecError(f"{where}: not valid base64") from None
    if len(key) != 32:
        raise CodecError(f"{where}: AES-256 needs 32 bytes, got {len(key)} (generate with `openssl rand -base64 32`)")
    return key


def _parse_entry(item: str, where: str) -> tuple[str, bytes]:
    kid, sep, key = item.partition("=")
    kid = kid.strip()
    if not sep or not kid:
        raise CodecError(f"{where}: expected <key-id>=<base64 key>")
    if not KEY_ID_RE.match(kid):
        raise CodecError(f"{where}: key ID {kid!r} may only hold letters, digits, '.', '_', '-'")
    return kid, _decode_key(key, f"{where} (key {kid!r})")


def _read_key_path(path: Path) -> dict[str, bytes]:
    where = f"ROLLWRIGHT_CODEC_KEYS_FILE {path}"
    if path.is_dir():
        # A mounted Secret: one file per key; Kubernetes adds hidden ..data/..<timestamp> entries, skipped here.
        keys = {f.name: _decode_key(f.read_text(), f"{where}/{f.name}") for f in sorted(path.iterdir())
                if not f.name.startswith(".") and f.is_file() and KEY_ID_RE.match(f.name)}
        if not keys:
            raise CodecError(f"{where}: directory holds no key files")
        return keys
    if not path.is_file():
        raise CodecError(f"{where}: no such file or directory")
    keys = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            kid, key = _parse_entry(line, f"{where} line {n}")
            keys[kid] = key
    if not keys:
        raise CodecError(f"{where}: no keys in the file")
    return keys


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM: encrypts with the ring's current key, decrypts with whichever key a payload names."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring
        self._aead = {kid: AESGCM(key) for kid, key in ring.keys.items()}

    @property
    def key_id(self) -> str:
        return self.ring.encrypt_id

    def encrypt(self, p: Payload) -> Payload:
        kid = self.ring.encrypt_id
        nonce = os.urandom(NONCE_BYTES)
        data = nonce + self._aead[kid].encrypt(nonce, p.SerializeToString(), kid.encode())
        return Payload(metadata={"encoding": ENCODING, KEY_ID_META: kid.encode(), "encryption-cipher": CIPHER},
                       data=data)

    def decrypt(self, p: Payload) -> Payload:
        if p.metadata.get("encoding") != ENCODING:
            # Plain payloads pass through: histories written before encryption was turned on, and starts by
            # tools without the codec (`temporal workflow start` without --codec-endpoint) stay readable.
            return p
        kid = p.metadata.get(KEY_ID_META, b"").decode()
        aead = self._aead.get(kid)
        if aead is None:
            raise CodecError(f"payload encrypted with key ID {kid!r}, which is not configured "
                             f"(known: {', '.join(sorted(self._aead))}); keep retired keys for decryption")
        try:
            plain = aead.decrypt(p.data[:NONCE_BYTES], p.data[NONCE_BYTES:], kid.encode())
        except InvalidTag:
            raise CodecError(f"payload under key ID {kid!r} failed authentication: wrong key or tampered data") from None
        return Payload.FromString(plain)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]
