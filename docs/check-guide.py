#!/usr/bin/env python3
"""Checks the guide (docs/guide) without mdbook: every chapter is in SUMMARY.md, every
{{#include}} / {{#rustdoc_include}} names an existing file and, if given, an existing anchor
(`ANCHOR: name` ... `ANCHOR_END: name`), and every relative markdown link points at an
existing file (and, for a link into another chapter, an existing heading); the README's
links too. Exits 1 with one
line per problem otherwise. Python 3 standard library only."""

import os
import re
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(ROOT, "guide", "src")

INCLUDE = re.compile(r"\{\{#(include|rustdoc_include)\s+([^}\s]+)\s*\}\}")
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(([^)\s]+)\)")
CODE_FENCE = re.compile(r"^\s*(```|~~~)")


def slug(heading):
    """The anchor mdbook (and GitHub) gives a heading."""
    text = re.sub(r"`([^`]*)`", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def headings(path):
    found, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if CODE_FENCE.match(line):
                fenced = not fenced
            elif not fenced and line.startswith("#"):
                found.add(slug(line.lstrip("#")))
    return found


def check_include(chapter, target, problems):
    path, _, spec = target.partition(":")
    full = os.path.normpath(os.path.join(os.path.dirname(chapter), path))
    where = os.path.relpath(chapter, ROOT)
    if not os.path.isfile(full):
        problems.append(f"{where}: included file {path} does not exist ({full})")
        return
    if not spec or spec[0].isdigit():
        return  # whole file, or a line range
    with open(full, encoding="utf-8") as f:
        text = f.read()
    start = re.search(r"ANCHOR:\s*" + re.escape(spec) + r"\b", text)
    end = re.search(r"ANCHOR_END:\s*" + re.escape(spec) + r"\b", text)
    if not start:
        problems.append(f"{where}: anchor '{spec}' not found in {path}")
    elif not end or end.start() < start.start():
        problems.append(f"{where}: anchor '{spec}' in {path} has no ANCHOR_END after it")


def check_link(chapter, target, problems):
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
        return  # absolute URL (https:, mailto:)
    where = os.path.relpath(chapter, ROOT)
    path, _, fragment = target.partition("#")
    full = os.path.normpath(os.path.join(os.path.dirname(chapter), path)) if path else chapter
    if not os.path.exists(full):
        problems.append(f"{where}: link target {target} does not exist ({full})")
        return
    if fragment and full.endswith(".md") and fragment not in headings(full):
        problems.append(f"{where}: link {target}: no heading '#{fragment}' in {path or 'this chapter'}")


def main():
    problems = []
    summary = os.path.join(SRC, "SUMMARY.md")
    if not os.path.isfile(summary):
        print(f"check-guide: {summary} is missing", file=sys.stderr)
        return 1
    with open(summary, encoding="utf-8") as f:
        listed = {os.path.normpath(os.path.join(SRC, t)) for t in LINK.findall(f.read())}
    chapters = []
    for dirpath, _, files in os.walk(SRC):
        chapters += [os.path.join(dirpath, n) for n in files if n.endswith(".md")]
    for chapter in sorted(chapters):
        if chapter != summary and chapter not in listed:
            problems.append(f"{os.path.relpath(chapter, ROOT)}: not listed in SUMMARY.md")
        with open(chapter, encoding="utf-8") as f:
            text = f.read()
        for kind, target in INCLUDE.findall(text):
            check_include(chapter, target, problems)
        # Links outside code blocks (a listing may contain brackets and parentheses).
        prose, fenced = [], False
        for line in text.splitlines():
            if CODE_FENCE.match(line):
                fenced = not fenced
            elif not fenced:
                prose.append(re.sub(r"`[^`]*`", "", line))
        for target in LINK.findall("\n".join(prose)):
            check_link(chapter, target, problems)
    # The README's links into the guide.
    readme = os.path.join(os.path.dirname(ROOT), "README.md")
    with open(readme, encoding="utf-8") as f:
        prose = re.sub(r"```.*?```", "", f.read(), flags=re.S)
    for target in LINK.findall(re.sub(r"`[^`]*`", "", prose)):
        check_link(readme, target, problems)
    for t in listed:
        if not os.path.isfile(t):
            problems.append(f"SUMMARY.md: chapter {os.path.relpath(t, ROOT)} does not exist")
    if problems:
        print("check-guide: the guide has broken includes or links:", file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print(f"check-guide: {len(chapters)} chapters, every include, anchor and link resolves")
    return 0


if __name__ == "__main__":
    sys.exit(main())
