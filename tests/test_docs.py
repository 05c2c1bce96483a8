"""Every command the README and docs/ show names a script that exists and only options it has
(a renamed or removed option would otherwise leave a command that fails as written)."""
import ast
import glob
import os
import re
import shlex

from conftest import ROOT
from plumbing import cli

OWN_ARGV = {"notebooks/build.py": {"out", "only", "backbone"}, "examples/make.py": {"sheet", "help"}}


def commands():
    """(file, line, script, [--option names]) of each `python X.py ...` / `torchrun ... X.py ...`
    in the README's and docs' code blocks."""
    found = []
    for path in ["README.md"] + sorted(glob.glob(os.path.join(ROOT, "docs", "*.md"))):
        text = open(os.path.join(ROOT, path), encoding="utf-8").read()
        for block in re.findall(r"```bash\n(.*?)```", text, re.S):
            for line in block.replace("\\\n", " ").splitlines():  # continued lines joined
                words = shlex.split(re.sub(r"(^|\s)#.*", "", line))  # comments may hold a lone quote
                scripts = [i for i, w in enumerate(words) if w.endswith(".py")]
                if not scripts or not {"python", "torchrun"} & set(words[:scripts[0]]):
                    continue
                i = scripts[0]
                keys = [w[2:].split("=")[0] for w in words[i + 1:] if w.startswith("--")]
                found.append((os.path.basename(path), line.strip(), words[i], keys))
    return found


def test_every_documented_command_uses_options_its_script_has():
    seen = commands()
    assert len(seen) > 40  # the README alone shows about forty
    bad = []
    for doc, line, script, keys in seen:
        path = os.path.join(ROOT, script)
        if not os.path.isfile(path):
            bad.append(f"{doc}: {line}: no {script}")
            continue
        if script in OWN_ARGV:
            known = OWN_ARGV[script]
        else:
            m = re.search(r"^ALIASES = (\{.*\})$", open(path, encoding="utf-8").read(), re.M)
            aliases = ast.literal_eval(m.group(1)) if m else {}
            known = {n for n, _ in cli.options(path)} | set(aliases) | {"help"}
        bad += [f"{doc}: {line}: --{k} is not an option of {script}" for k in keys if k not in known]
    assert not bad, "\n".join(bad)
