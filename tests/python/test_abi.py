# SPDX-License-Identifier: MIT
"""The ctypes structs against the C headers: sizes and field offsets as a
C compiler lays them out (skipped without one), and the constants."""

import ctypes
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT
from xfer import _lib as L

STRUCTS = {
    "xfer_engine_attr": L.EngineAttr, "xfer_engine_info": L.EngineInfo,
    "xfer_rail_stats": L.RailStats, "xfer_mem": L.Mem, "xfer_done": L.Done,
    "xfer_paged": L.Paged, "xfer_scatter_dst": L.ScatterDst, "xfer_notify": L.Notify,
    "xfer_watch_attr": L.WatchAttr, "xfer_rdzv_attr": L.RdzvAttr,
    "xfer_rdzv_blob": L.RdzvBlob, "xfer_launch": L.Launch,
}


def test_layouts_match_the_headers(tmp_path):
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler to lay the structs out")
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include "xfer.h"',
             '#include "xfer_rdzv.h"', "int main(void) {"]
    for cname, cls in STRUCTS.items():
        lines.append(f'printf("{cname} size %zu\\n", sizeof(struct {cname}));')
        for f, _ in cls._fields_:
            lines.append(f'printf("{cname} {f} %zu\\n", offsetof(struct {cname}, {f}));')
    lines.append("return 0; }")
    src = tmp_path / "layout.c"
    src.write_text("\n".join(lines))
    exe = tmp_path / "layout"
    subprocess.run([cc, "-I", os.path.join(ROOT, "include"), "-o", str(exe), str(src)],
                   check=True)
    got = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    want = []
    for cname, cls in STRUCTS.items():
        want.append(f"{cname} size {ctypes.sizeof(cls)}")
        want += [f"{cname} {f} {getattr(cls, f).offset}" for f, _ in cls._fields_]
    assert got.split("\n")[:-1] == want


def test_constants_match_the_header():
    text = open(os.path.join(ROOT, "include", "xfer.h")).read()
    for name, val in (("XFER_ADDR_MAX", L.ADDR_MAX), ("XFER_DESC_MAX", L.DESC_MAX),
                      ("XFER_MAX_RAILS", L.MAX_RAILS), ("XFER_API_VERSION", L.API_VERSION),
                      ("XFER_DEFAULT_TIMEOUT_MS", L.DEFAULT_TIMEOUT_MS)):
        m = re.search(rf"#define {name} (\d+)", text)
        assert m and int(m.group(1)) == val, name
