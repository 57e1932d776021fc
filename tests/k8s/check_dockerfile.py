#!/usr/bin/python3
"""Checks a Dockerfile without a Docker engine (tests/k8s/validate.sh).

Usage: check_dockerfile.py DOCKERFILE CONTEXT_DIR
Every FROM image is pinned (a tag other than latest, or a digest) or names an earlier stage; every COPY/ADD
source exists in the build context (globs allowed) or, with --from, names an earlier stage and an absolute
path; the final stage ends with a non-root USER. Exit 0 when all hold, 1 with one line per problem.
"""
import glob
import os
import shlex
import sys


def instructions(path):
    """(line number, keyword, rest) per instruction, continuation lines joined, comments dropped."""
    out, buf, start = [], "", 0
    with open(path) as f:
        for i, line in enumerate(f, 1):
            s = line.rstrip("\n")
            if not buf and (not s.strip() or s.lstrip().startswith("#")):
                continue
            if buf and s.lstrip().startswith("#"):
                continue
            if not buf:
                start = i
            if s.endswith("\\"):
                buf += s[:-1] + " "
                continue
            buf += s
            kw, _, rest = buf.strip().partition(" ")
            out.append((start, kw.upper(), rest.strip()))
            buf = ""
    return out


def main(dockerfile, context):
    problems, stages, user = [], [], None
    for ln, kw, rest in instructions(dockerfile):
        where = f"{dockerfile}:{ln}"
        if kw == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            image = words[0]
            if len(words) >= 3 and words[1].upper() == "AS":
                name = words[2]
            else:
                name = None
            last = image.rsplit("/", 1)[-1]
            if image in stages:
                pass
            elif "@sha256:" in image:
                pass
            elif ":" not in last:
                problems.append(f"{where}: FROM {image} is not pinned (no tag)")
            elif last.rsplit(":", 1)[1] == "latest":
                problems.append(f"{where}: FROM {image} uses the tag latest")
            stages.append(name or image)
            user = None
        elif kw in ("COPY", "ADD"):
            if rest.startswith("["):
                problems.append(f"{where}: JSON-form {kw} is not checked; use the plain form")
                continue
            words = shlex.split(rest)
            opts = [w for w in words if w.startswith("--")]
            args = [w for w in words if not w.startswith("--")]
            if len(args) < 2:
                problems.append(f"{where}: {kw} needs a source and a destination")
                continue
            frm = next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
            for src in args[:-1]:
                if frm is not None:
                    if frm not in stages:
                        problems.append(f"{where}: {kw} --from={frm} names no earlier stage")
                    elif not src.startswith("/"):
                        problems.append(f"{where}: {kw} --from={frm} {src}: use the stage's absolute path")
                elif not glob.glob(os.path.join(context, src)):
                    problems.append(f"{where}: {kw} source {src} does not exist in {context}")
        elif kw == "USER":
            user = rest.split(":", 1)[0]
    if not stages:
        problems.append(f"{dockerfile}: no FROM")
    if user is None:
        problems.append(f"{dockerfile}: the final stage sets no USER (it would run as root)")
    elif user in ("root", "0"):
        problems.append(f"{dockerfile}: the final stage runs as {user}")
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
