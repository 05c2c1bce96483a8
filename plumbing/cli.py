"""Command-line plumbing shared by the scripts: nanoGPT-style `--key=value` (or `--key value`)
overrides of module-level config, `--help` read from the script's config block, one-line errors.

The config block of a script is the module-level assignments after a line that starts with
`# ----` and contains `config`, up to the first statement that is not an assignment:

    # ---------------------------------------------------------------- config (override: --key=value)
    steps = 1500         # training steps
    # a long value may take its help from the comment line just above it
    prompts_dir = os.path.join(HERE, "prompts")

Names in UPPER case (ALIASES, ...) and names starting with `_` are not options.
"""
import ast
import contextlib
import io
import os
import sys
import tokenize


def parse(config, argv, aliases=None):
    """Override config[key] from argv; the type comes from the default. Returns positionals.
    The options are the names of the config block of the script config["__file__"].

    --help / -h: print the script's docstring and its options, exit 0. A default that is a
    tuple, list, dict or None takes a Python literal (--cache=(8,4)); a None default also takes
    a plain word as a string."""
    aliases = aliases or {}
    if "--help" in argv or "-h" in argv:
        print(usage(config, aliases))
        sys.exit(0)
    block = {name for name, _ in options(config["__file__"])}
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("--"):
            rest.append(arg)
            continue
        key, eq, val = arg[2:].partition("=")
        key = aliases.get(key, key)
        if key not in block:
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
            elif default is None or isinstance(default, (tuple, list, dict)):
                config[key] = _literal(val, default)
            else:
                config[key] = type(default)(val)
        except ValueError:
            kind = "Python literal" if default is None else type(default).__name__
            fail(f"--{key}={val}: expected a {kind}")
    return rest


def _literal(val, default):
    try:
        out = ast.literal_eval(val)
    except (ValueError, SyntaxError):
        if default is None:
            return val  # a plain word
        raise ValueError from None
    if default is not None and not isinstance(out, type(default)):
        raise ValueError
    return out


def options(path):
    """[(name, help)] of the config block of the script at `path`, in order (see the top)."""
    src = open(path, encoding="utf-8").read()
    lines = src.splitlines()
    marker = next((n for n, line in enumerate(lines, 1) if line.startswith("# ----") and "config" in line), None)
    if marker is None:
        return []
    comments = {tok.start[0]: tok.string.lstrip("#").strip()
                for tok in tokenize.generate_tokens(io.StringIO(src).readline) if tok.type == tokenize.COMMENT}
    out = []
    for node in ast.parse(src).body:
        if node.lineno <= marker:
            continue
        if not isinstance(node, (ast.Assign, ast.AnnAssign)):
            break
        above = node.lineno - 1
        own_line = above > marker and lines[above - 1].lstrip().startswith("#")
        text = comments.get(node.end_lineno) or comments.get(node.lineno) or (comments.get(above, "") if own_line else "")
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
            for name in (t.elts if isinstance(t, ast.Tuple) else [t]):
                if isinstance(name, ast.Name) and not name.id.isupper() and not name.id.startswith("_"):
                    out.append((name.id, text))
    return out


def _show(value):
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, str) else str(value)


def usage(config, aliases=None):
    """The script's docstring, then one line per option: --name=default, and its help."""
    shown = {v: k for k, v in (aliases or {}).items()}  # bridge_name is typed --bridge
    opts = [(name, text) for name, text in options(config["__file__"]) if name in config]
    head = (config.get("__doc__") or "").strip()
    rows = [(f"--{shown.get(name, name)}={_show(config[name])}", text) for name, text in opts]
    width = min(max((len(r[0]) for r in rows), default=0), 34)
    body = "\n".join(f"  {flag:<{width}}  {text}".rstrip() for flag, text in rows)
    return (f"{head}\n\noptions (--name=value or --name value; a true/false option alone means true):\n{body}"
            if rows else head)


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
