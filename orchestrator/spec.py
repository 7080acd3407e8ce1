"""Moved to ``contract.spec``; this name stays an alias of that module (same object) so existing imports keep working."""

import sys

import contract.spec as _module

sys.modules[__name__] = _module
