"""``notify-push-gateway``: parse the configuration once, then run the supervisor.

The only place that turns errors into exit codes: a configuration error is
one line on stderr naming the option, exit status 2.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from shared.config import COMPATIBLE_NOTIFY_PUSH_VERSION, parse_invocation
from shared.errors import ConfigError


def own_version() -> str:
    try:
        return version("notify-push-gateway")
    except PackageNotFoundError:
        return "0.0.0+source"


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        invocation = parse_invocation(args, os.environ)
        if invocation.show_version:
            print(
                f"notify-push-gateway {own_version()} "
                f"(compatible with notify_push {COMPATIBLE_NOTIFY_PUSH_VERSION})"
            )
            return 0
        config = invocation.config
        assert config is not None
        if invocation.dump_config:
            print(json.dumps(config.dump(), indent=2, sort_keys=True))
            return 0
        from router.supervisor import run_supervisor

        return run_supervisor(config)
    except ConfigError as exc:
        print(f"notify-push-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
