"""Moved to ``contract.models``; this name stays an alias of that module (same object) so existing imports keep working."""

import sys

import contract.models as _module

sys.modules[__name__] = _module
