"""The ``mcp-connector`` command (also the container entrypoint): ``mcp-connector serve [flags]``.

options → validate (every error, with flag names) → config → run; exit status 2 for bad
flags, 1 when the clusters cannot be used, so a crash-looping pod says which.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from mcp_connector.connector import config, logs, options, server


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: mcp-connector serve [flags]   (mcp-connector serve --help lists the flags)")
        return 0 if args else 2
    if args[0] != "serve":
        print(f"mcp-connector: unknown command {args[0]!r}; the only command is 'serve'", file=sys.stderr)
        return 2
    opts = options.parse(args[1:])
    problems = options.validate(opts)
    if problems:
        for problem in problems:
            print(f"mcp-connector serve: {problem}", file=sys.stderr)
        return 2
    logs.setup(opts.get("log-level") or "info")
    try:
        cfg = config.build(opts)
        asyncio.run(server.run(cfg))
    except config.ConfigError as e:
        print(f"mcp-connector serve: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
