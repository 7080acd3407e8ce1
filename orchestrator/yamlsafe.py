"""Moved to ``releases.yamlsafe``; this name stays an alias of that module (same object) so existing imports keep working."""

import sys

import releases.yamlsafe as _module

sys.modules[__name__] = _module
