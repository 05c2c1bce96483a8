"""Command-line plumbing shared by train.py, sample.py, eval.py, bench.py: nanoGPT-style
`--key=value` (or `--key value`) overrides of module-level config, and one-line errors."""
import contextlib
import os
import sys


def parse(config, argv, aliases=None):
    """Override config[key] from argv; the type comes from the default. Returns positionals."""
    aliases = aliases or {}
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        key, eq, val = arg[2:].partition("=")
        key = aliases.get(key, key)
        if key.startswith("_") or key not in config or callable(config[key]) or key.isupper():
            fail(f"unknown option --{key}")
        default = config[key]
        if not eq:
            if isinstance(default, bool):
                val = "true"
            elif i < len(argv):
                val, i = argv[i], i + 1
            else:
                fail(f"--{key} needs a value")
        try:
            if isinstance(default, bool):
                if val.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                config[key] = val.lower() in ("1", "true", "yes")
            else:
                config[key] = type(default)(val)
        except ValueError:
            fail(f"--{key}={val}: expected a {type(default).__name__}")
    return rest


class _Fail:
    """fail(msg): print `error: msg` on one line and exit 2. fail.guard(): turn the errors a user
    can cause (bad files, wrong checkpoints, unknown names) into that one line."""

    def __call__(self, msg, code=2):
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(code)

    @contextlib.contextmanager
    def guard(self):
        try:
            yield
        except KeyboardInterrupt:
            self("interrupted", 130)
        except (ValueError, RuntimeError, OSError, TypeError) as e:
            if os.environ.get("YPT_DEBUG"):
                raise
            self(" ".join(str(e).split()) or type(e).__name__)


fail = _Fail()
