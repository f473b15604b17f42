"""Check mutmut mutants against chosen tests, each with its mutant really active (README, "Mutation testing").

    .venv/bin/python scripts/mutant_check.py tests/unit/test_digit.py -k recipe -- cnn_core.digit.x_mnist_style__mutmut_34 …

Copies the repository (without .venv, mutants/, .git) to a scratch folder, applies each mutant's diff
(``mutmut show NAME``) to its module there, runs pytest with the given arguments, and prints KILLED, SURVIVED or
TIMEOUT per mutant (SKIPPED when the diff no longer applies: its function changed since mutmut's run). The tests
must pass once without a mutant first. mutmut's own verdicts stay as they were: it keeps a verdict until that mutant
is run again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python")


def mutant_diff(name: str) -> list[str]:
    out = subprocess.run([PY, "-m", "mutmut", "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    return out.splitlines()


def mutated_source(name: str) -> tuple[str, str]:
    """(module file relative to the root, its text with the mutant applied). mutmut's diff is relative to the
    function, so the function is found by its ``def`` line and the hunk applied inside it."""
    module = name.split(".")[1]
    path = f"cnn_core/{module}.py"
    src = (ROOT / path).read_text().splitlines(keepends=True)
    func = name.split(".")[-1].split("__mutmut_")[0][2:]  # x_name or xǁClassǁmethod → name / ǁClassǁmethod
    indent, fname = ("    ", func.split("ǁ")[-1]) if "ǁ" in func else ("", func)
    start = next(i for i, line in enumerate(src) if line.startswith(f"{indent}def {fname}("))
    end = start + 1
    while src[start - 1].startswith(f"{indent}#"):  # mutmut's function text starts at the comments just above it
        start -= 1
    while end < len(src) and (not src[end].strip() or src[end].startswith((indent + " ", indent + ")"))):
        end += 1
    body = [line[len(indent):] if line.startswith(indent) else line for line in src[start:end]]
    lines = iter(mutant_diff(name))
    hunk = next(re.match(r"@@ -(\d+)", line) for line in lines if line.startswith("@@"))
    pos = int(hunk.group(1)) - 1
    out = body[:pos]
    for line in lines:
        tag, text = line[:1], line[1:]
        if tag in " -":
            if body[pos].strip() != text.strip():
                raise ValueError("the diff does not apply")
            if tag == " ":
                out.append(body[pos])
            pos += 1
        elif tag == "+":
            out.append(text + "\n")
    out += body[pos:]
    return path, "".join(src[:start] + [indent + line if line.strip() else line for line in out] + src[end:])


def main(argv: list[str]) -> None:
    cut = argv.index("--")
    pytest_args, names = argv[:cut], argv[cut + 1:]
    scratch = Path(tempfile.mkdtemp(prefix="mutant-check-"))
    shutil.copytree(ROOT, scratch, dirs_exist_ok=True, ignore=shutil.ignore_patterns(".venv", "mutants", ".git"))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    pytest = [PY, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *pytest_args]
    # Without a mutant the tests must run and pass: a -k that selects nothing (exit 5) or a failing test would
    # otherwise report every mutant KILLED.
    clean = subprocess.run(pytest, cwd=scratch, capture_output=True, text=True, env=env)
    if clean.returncode != 0:
        shutil.rmtree(scratch)
        sys.exit(f"the tests do not pass without a mutant (pytest exit {clean.returncode}):\n{clean.stdout[-2000:]}")
    for name in names:
        try:
            path, text = mutated_source(name)
        except (ValueError, IndexError, StopIteration):
            print("SKIPPED ", name, flush=True)
            continue
        (scratch / path).write_text(text)
        try:
            done = subprocess.run(pytest, cwd=scratch, capture_output=True, env=env, timeout=150)
            print("KILLED  " if done.returncode else "SURVIVED", name, flush=True)
        except subprocess.TimeoutExpired:  # a mutant that hangs (e.g. a bisection that never narrows) is caught
            print("TIMEOUT ", name, flush=True)
        shutil.copy(ROOT / path, scratch / path)
    shutil.rmtree(scratch)


if __name__ == "__main__":
    main(sys.argv[1:])
