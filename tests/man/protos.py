#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Compare the prototypes in the man pages' SYNOPSIS sections with the
public headers' declarations (gcc -aux-info output), so that a page does not
drift from the API: same return type, parameter types and count.

usage: protos.py AUX PAGE...   prints one line per mismatch, exits 1 if any
"""
import re
import sys


def norm(t):
    """One spelling of a C type: single spaces, none around '*'."""
    t = re.sub(r'\s+', ' ', t).strip()
    t = re.sub(r'\s*\*\s*', '*', t)
    return t


def drop_name(param):
    """A declaration's type without its parameter name ("size_t len" ->
    "size_t"); "void" and unnamed types stay as they are."""
    p = param.strip()
    if p in ('void', '...'):
        return p
    m = re.match(r'^(.*?[\s*])([A-Za-z_][A-Za-z0-9_]*)$', p)
    if not m or not m.group(1).strip():
        return p
    return m.group(1)


def roff_text(line):
    """The text of a .B/.BI/.BR/.I line of a SYNOPSIS: its quoted and
    unquoted arguments joined (these macros print them without blanks)."""
    line = line.replace('\\-', '-').replace('\\&', '')
    line = re.sub(r'\\f[BIRP]', '', line)
    m = re.match(r'^\.(B|I|BI|IB|BR|RB|IR|RI)\s+(.*)$', line)
    if not m:
        return None if line.startswith('.') else line
    args = re.findall(r'"([^"]*)"|(\S+)', m.group(2))
    if m.group(1) in ('B', 'I'):
        return ' '.join(a or b for a, b in args)
    return ''.join(a or b for a, b in args)


def synopsis_protos(path):
    text, on = [], False
    for line in open(path, encoding='utf-8'):
        line = line.rstrip('\n')
        if line.startswith('.SH'):
            on = 'SYNOPSIS' in line
            continue
        if on:
            t = roff_text(line)
            if t is not None:
                text.append(t)
    protos = {}
    for stmt in ' '.join(text).split(';'):
        m = re.search(r'([A-Za-z_][A-Za-z0-9_ \t*]*?)\b(xfer_[A-Za-z0-9_]+)\s*\(([^()]*)\)\s*$',
                      stmt)
        if not m or 'typedef' in stmt or '#' in m.group(1):
            continue
        ret = norm(m.group(1))
        params = [norm(drop_name(p)) for p in m.group(3).split(',')] if m.group(3).strip() else []
        protos.setdefault(m.group(2), (ret, params, path))
    return protos


def header_protos(aux):
    out = {}
    for line in open(aux, encoding='utf-8'):
        m = re.match(r'^/\* include/[^:]*\.h:\d+:[A-Z]+ \*/ extern (.*?)\b(xfer_[A-Za-z0-9_]+) \((.*)\);',
                     line)
        if m:
            params = [norm(p) for p in m.group(3).split(',')] if m.group(3).strip() else []
            out[m.group(2)] = (norm(m.group(1)), params)
    return out


def main():
    decl = header_protos(sys.argv[1])
    pages = {}
    for p in sys.argv[2:]:
        for k, v in synopsis_protos(p).items():
            pages.setdefault(k, v)
    bad = 0
    for name, (ret, params) in sorted(decl.items()):
        if name not in pages:
            continue   # the suite's other check names what is missing
        pret, pparams, path = pages[name]
        if pparams == ['void']:
            pparams = []
        if params == ['void']:
            params = []
        if (pret, pparams) != (ret, params):
            print(f'{path}: {name}: page says {pret} ({", ".join(pparams)}), '
                  f'header says {ret} ({", ".join(params)})')
            bad = 1
    sys.exit(bad)


main()
