#!/usr/bin/env python3
"""The docs check's two halves (driven by .ci/docs, which explains the convention).

  docs_blocks.py script PORT DIR FILE...   prints a bash script that runs every
                                       `sh run` block of FILE... in order, in one
                                       shell, checking each `text output` block;
                                       (expected outputs go to DIR); fails on a shell block that is neither
                                       `run` nor `skip: REASON`
  docs_blocks.py skipped FILE...       lists the `sh skip: REASON` blocks
  docs_blocks.py config-keys TOML DOC  fails unless DOC names every key of TOML
                                       (`section.key`, commented-out keys included)
  docs_blocks.py expect OUT EXPECTED   checks one block's output: every non-empty
                                       line of EXPECTED matches, in order, a
                                       whole line of OUT (`…` matches anything)
"""

import re
import shlex
import sys

SHELL_LANGS = {"sh", "bash", "shell", "console"}


def blocks(path):
    """Yields (line number, info string, body) for every fenced block of a file."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\S.*)?$", lines[i])
        if not m:
            i += 1
            continue
        info = (m.group(1) or "").strip()
        start = i + 1
        i += 1
        body = []
        while i < len(lines) and lines[i] != "```":
            body.append(lines[i])
            i += 1
        yield start, info, "\n".join(body)
        i += 1


def kind(info):
    """'run', 'skip', 'output', 'bad' (an unmarked shell block) or None (other)."""
    words = info.split()
    if not words:
        return None
    lang = words[0]
    rest = info[len(lang):].strip()
    if lang in SHELL_LANGS:
        if rest == "run":
            return "run"
        if rest.startswith("skip:") and rest[5:].strip():
            return "skip"
        return "bad"
    if lang == "text" and rest == "output":
        return "output"
    return None


def substitute(text, port):
    """The docs' port 8080 becomes the check's own free port."""
    return text.replace(":8080", f":{port}")


def script(port, outdir, paths):
    out = ["set -eo pipefail"]
    bad = []
    n = 0
    for path in paths:
        pending = None
        for line, info, body in blocks(path):
            k = kind(info)
            if k == "bad":
                bad.append(f"{path}:{line}: shell block marked neither `run` nor `skip: REASON` (```{info})")
                continue
            if k == "output":
                if pending is None:
                    bad.append(f"{path}:{line}: `text output` block not right after a `sh run` block")
                    continue
                with open(f"{outdir}/{pending}.expect", "w", encoding="utf-8") as f:
                    f.write(substitute(body, port) + "\n")
                out.append(f'python3 .ci/docs_blocks.py expect "$DOCS_OUT/{pending}.out" "$DOCS_OUT/{pending}.expect"')
                pending = None
                continue
            pending = None
            if k != "run":
                continue
            n += 1
            where = f"{path}:{line}"
            base = f'"$DOCS_OUT/{n}"'
            out.append(f"DOCS_BLOCK={shlex.quote(where)}; DOCS_FILE={base}.out")
            out.append(f"echo '--- {where}'")
            out.append("{")
            out.append(substitute(body, port))
            out.append(f"}} >{base}.out 2>&1")
            out.append(f"cat {base}.out")
            pending = n
    if bad:
        sys.stderr.write("\n".join(bad) + "\n")
        sys.exit(1)
    return "\n".join(out) + "\n"


def main():
    cmd = sys.argv[1]
    if cmd == "script":
        port, outdir, paths = sys.argv[2], sys.argv[3], sys.argv[4:]
        text = script(port, outdir, paths)
        sys.stdout.write(text)
    elif cmd == "skipped":
        for path in sys.argv[2:]:
            for line, info, body in blocks(path):
                if kind(info) == "skip":
                    reason = info.split(None, 1)[1][5:].strip()
                    first = body.strip().split("\n")[0]
                    print(f"  {path}:{line}: {first}  [{reason}]")
    elif cmd == "config-keys":
        check_config_keys(sys.argv[2], sys.argv[3])
    elif cmd == "expect":
        check_expect(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {cmd}")


def check_config_keys(toml_path, doc_path):
    section, keys = None, []
    for line in open(toml_path, encoding="utf-8"):
        m = re.match(r"^\[([a-z_]+)\]", line)
        if m:
            section = m.group(1)
            continue
        m = re.match(r"^#? ?([a-z_]+) = ", line)
        if m and section:
            keys.append(f"{section}.{m.group(1)}")
    doc = open(doc_path, encoding="utf-8").read()
    missing = [k for k in keys if f"`{k}`" not in doc]
    if missing:
        sys.exit(f"docs check: {doc_path} does not describe {', '.join(missing)} (keys of {toml_path})")
    print(f"docs: {doc_path} describes all {len(keys)} keys of {toml_path}")


def check_expect(out_path, expect_path):
    actual = [l.rstrip() for l in open(out_path, encoding="utf-8", errors="replace").read().split("\n")]
    at = 0
    for want in open(expect_path, encoding="utf-8").read().split("\n"):
        want = want.rstrip()
        if not want:
            continue
        pattern = re.compile(".*".join(re.escape(p) for p in want.split("…")))
        while at < len(actual) and not pattern.fullmatch(actual[at]):
            at += 1
        if at == len(actual):
            sys.exit(f"docs check: expected output line not found (in order):\n  {want}")
        at += 1


if __name__ == "__main__":
    main()
