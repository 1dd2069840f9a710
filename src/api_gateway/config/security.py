"""Security response headers: Helmet's defaults, with each header replaceable or removable.

security_headers:
  content-security-policy: "default-src 'none'"   # replace
  x-frame-options: null                           # remove
  permissions-policy: "camera=()"                 # add
"""

from __future__ import annotations

import re

from api_gateway.config.sections import Section
from api_gateway.config.settings import ConfigError

HEADER_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def build_security_headers(s: Section) -> tuple[tuple[str, str | None], ...]:
    overrides = []
    for name in s.data:
        key = s.key(str(name))
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name.lower()):
            raise ConfigError(key, "is not a valid header name")
        value = s.raw(name)
        if value is not None and not (isinstance(value, str) and HEADER_VALUE.fullmatch(value)):
            raise ConfigError(key, "must be a printable ASCII string, or null to remove it")
        overrides.append((name.lower(), value))
    return tuple(overrides)
