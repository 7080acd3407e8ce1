"""``ROLLWRIGHT_REGISTRY_MIRRORS`` (releases/mirrors.py): parsing, where requests go, and the start-time error.

Pure logic; the in-cluster worker using it against the real registry is tests/test_in_cluster.py.
"""

from __future__ import annotations

import pytest

from orchestrator.config import ConfigError, load_settings
from releases import mirrors


def test_parse_and_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mirrors.ENV, "127.0.0.1:5000=10.244.0.1:5000, reg.example=https://cache.example:8443")
    monkeypatch.delenv("ROLLWRIGHT_INSECURE_REGISTRIES", raising=False)
    # A loopback name is plain HTTP; its mirror inherits that.
    assert mirrors.registry_url("127.0.0.1:5000") == "http://10.244.0.1:5000"
    assert mirrors.registry_url("reg.example") == "https://cache.example:8443"
    # Unmapped registries are untouched.
    assert mirrors.registry_url("localhost:5001") == "http://localhost:5001"
    assert mirrors.registry_url("ghcr.io") == "https://ghcr.io"
    monkeypatch.setenv("ROLLWRIGHT_INSECURE_REGISTRIES", "10.0.0.9:5000")
    monkeypatch.setenv(mirrors.ENV, "registry.internal=10.0.0.9:5000")
    assert mirrors.registry_url("registry.internal") == "http://10.0.0.9:5000"


def test_bundle_registry_uses_the_mirror_but_keeps_the_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from releases.bundle import Registry

    monkeypatch.setenv(mirrors.ENV, "127.0.0.1:5000=10.244.0.1:5000")
    with Registry("127.0.0.1:5000/rollwright-bundles/demo") as reg:
        assert reg.base == "http://10.244.0.1:5000"
        assert reg.registry == "127.0.0.1:5000"  # credentials and references stay keyed by the name


@pytest.mark.parametrize("value", ["127.0.0.1:5000", "=10.0.0.1", "a=b=c", "a=ftp://b", "a=b,a=c", "a b=c"])
def test_bad_value_stops_the_process_at_start_naming_the_variable(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(mirrors.ENV, value)
    with pytest.raises(ConfigError, match="ROLLWRIGHT_REGISTRY_MIRRORS"):
        load_settings()
