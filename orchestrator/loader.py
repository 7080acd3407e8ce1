"""Moved to ``releases.loader``; this name stays an alias of that module (same object) so existing imports keep working."""

import sys

import releases.loader as _module

sys.modules[__name__] = _module
