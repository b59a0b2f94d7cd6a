"""``notify-push-gateway``: parse the configuration once, then run the supervisor.

The only place that turns errors into exit codes: a configuration error is
one line on stderr naming the option, exit status 2.

The only module of ``shared/`` that imports ``router/`` and ``gateway/``: it
hands the supervisor the router's and the workers' entry points, imported
after the configuration is parsed so that ``--version`` and ``--dump-config``
load neither.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from shared.config import COMPATIBLE_NOTIFY_PUSH_VERSION, Config, parse_invocation
from shared.errors import ConfigError


def own_version() -> str:
    try:
        return version("notify-push-gateway")
    except PackageNotFoundError:
        return "0.0.0+source"


def require_database_driver(config: Config) -> None:
    """Raise ConfigError (exit 2) before any child starts if the database's driver is missing.

    A router that lacks its driver would otherwise be restarted forever.
    """
    if config.database is None:
        return
    from router.databases import require_driver

    require_driver(config.database)


def check_setup(config: Config) -> int:
    """``--check``: one line per setup check; 0 when all pass, 1 otherwise."""
    from shared.diagnostics import run_checks

    results = asyncio.run(run_checks(config))
    for result in results:
        print(result.line())
    return 0 if results and all(r.ok for r in results) else 1


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
        if invocation.check:
            return check_setup(config)
        from gateway.worker import run_worker
        from router.router import run_router
        from shared.supervisor import run_supervisor

        require_database_driver(config)
        return run_supervisor(config, router=run_router, worker=run_worker)
    except ConfigError as exc:
        print(f"notify-push-gateway: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
