#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Judges tests/kmod/xferctl-guest.sh from the guest's serial log, on the host.

usage: xferctl-guest.py SERIAL_LOG

Compares each `xferctl -j` run (XCTL-RUN NAME STATUS JSON) with what the
live processes said they hold (XCTL-KNOWN ROLE key=value ...). Prints the
lines tests/kmod/run.sh turns into TAP: "R<TAB>ok<TAB>NAME" or
"R<TAB>not-ok<TAB>NAME", then "D<TAB>  why" lines after a failure.
Fields are compared by name, and only those this test knows (a newer stats
page or xferctl adds fields: they are not looked at).
"""
import json
import re
import sys

OWNER_A, OWNER_B, OWNER_C = 1 << 20, 192 << 10, 640 << 10
VICTIM, OPENER = 320 << 10, 128 << 10
XUID, XGID = 1000, 990
COUNTERS = ("bytes_posted", "bytes_completed", "ops_posted", "ops_completed",
            "ops_failed", "imm_received")

results = []


def result(ok, name, why=""):
    results.append((ok, name, why))


def kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def main(path):
    runs, errs, known, fails, pids = {}, {}, {}, [], {}
    began = ended = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("XCTL-BEGIN"):
                began = True
            elif line.startswith("XCTL-END"):
                ended = True
            elif line.startswith("XCTL-RUN "):
                parts = line.split(" ", 3)
                runs[parts[1]] = (int(parts[2]), parts[3] if len(parts) > 3 else "")
            elif line.startswith("XCTL-ERR "):
                _, name, msg = (line.split(" ", 2) + [""])[:3]
                errs.setdefault(name, []).append(msg)
            elif line.startswith("XCTL-KNOWN "):
                _, role, rest = line.split(" ", 2)
                known.setdefault(role, []).append(rest)
            elif line.startswith("XCTL-PIDS "):
                pids = {k: int(v) for k, v in kv(line).items()}
            elif line.startswith("XCTL-FAIL"):
                fails.append(line)
    if not began:
        result(False, "xferctl: the guest ran xferctl-guest.sh",
               "no XCTL-BEGIN in the log (xferctl or ctl_proc not shipped?)")
        return
    result(ended and not fails and len(pids) == 3,
           "xferctl: the live processes started and the guest script ran to its end",
           "; ".join(fails) or ("no XCTL-END" if not ended else "pids: %s" % pids))
    if len(pids) != 3:
        return
    owner, victim, opener = pids["owner"], pids["victim"], pids["opener"]
    info = {}
    for role, lines in known.items():
        for l in lines:
            if l.startswith("KNOWN role="):
                info.setdefault(role, {}).update(kv(l))
    bad = [r + ": " + l for r, ls in known.items() for l in ls if l.startswith("failed")]
    stopped = [r for r in ("owner", "opener") if "stopped" in known.get(r, [])]
    result(not bad and len(stopped) == 2,
           "xferctl: ctl_proc owner/victim/opener: writes checked, clean stop on SIGTERM",
           "; ".join(bad) or "stopped: %s" % stopped)
    sid_owner = int(info.get("owner", {}).get("share", -1))
    sid_victim = int(info.get("victim", {}).get("share", -1))
    stats = [kv(l) for l in known.get("owner", []) if l.startswith("KNOWN stats ")]

    def doc(name):
        """(status, parsed JSON or None, why)"""
        if name not in runs:
            return None, None, "%s did not run" % name
        rc, out = runs[name]
        try:
            d = json.loads(out.replace("\x1e", "\n"))
        except ValueError as e:
            return rc, None, "%s: stdout is not JSON (%s): %.300s" % (name, e, out)
        if not isinstance(d, dict):
            return rc, None, "%s: not a JSON object" % name
        return rc, d, ""

    def check(tap, name, fn, want_rc=0):
        """fn(d) -> list of complaints; the run's status must be want_rc"""
        rc, d, why = doc(name)
        problems = [why] if why else []
        if d is not None:
            if rc != want_rc:
                problems.append("%s: exit %s, want %s" % (name, rc, want_rc))
            try:
                problems += fn(d)
            except (KeyError, TypeError, ValueError, IndexError) as e:
                problems.append("%s: %r missing or of the wrong type" % (name, e))
        if problems:
            problems.append("output: %.600s" % runs.get(name, (0, ""))[1])
            problems += ["stderr: " + e for e in errs.get(name, [])[:4]]
        result(not problems, "xferctl: " + tap, "\n".join(problems))

    def want(cond, msg, out):
        if not cond:
            out.append(msg)

    # ---- module, root --------------------------------------------------
    total = OWNER_A + OWNER_B + OWNER_C + VICTIM + OPENER

    def module_live(d):
        p = []
        want(d["module"] == "loaded" and d["abi"] == "match", "module %s abi %s" % (d.get("module"), d.get("abi")), p)
        want(d["regions"] == 5, "regions %s, want 5" % d["regions"], p)
        want(d["contexts"] == 4, "contexts %s, want 4 (owner 2, victim, opener)" % d["contexts"], p)
        want(d["shares"] == 2, "shares %s, want 2" % d["shares"], p)
        want(d["pinned_bytes"] == total, "pinned_bytes %s, want %d" % (d["pinned_bytes"], total), p)
        want(d["max_pinned_bytes"] > total and d["param_max_pinned_mb"] == 0,
             "max_pinned_bytes %s param %s" % (d["max_pinned_bytes"], d["param_max_pinned_mb"]), p)
        want(abs(d["pinned_pct"] - 100.0 * total / d["max_pinned_bytes"]) < 0.01, "pinned_pct %s" % d["pinned_pct"], p)
        want(d["pins_total"] >= 5, "pins_total %s" % d["pins_total"], p)
        want(d["device_mode"] == "0660" and d["device_group"] == "xfer",
             "device %s %s" % (d["device_mode"], d.get("device_group")), p)
        want(not d["features"].startswith("unknown") and d["page_size"] == 4096,
             "features %s page_size %s" % (d["features"], d.get("page_size")), p)
        return p

    check("module -j as root: loaded, ABI, 5 regions, 4 contexts, 2 shares, pinned bytes, /dev/xfer 0660 xfer, features",
          "module", module_live)

    # ---- region --------------------------------------------------------
    def rows(d, key):
        return d[key] if isinstance(d[key], list) else []

    expect_regions = sorted([
        (owner, "ctl-owner", OWNER_A, 2, 1), (owner, "ctl-owner", OWNER_B, 1, 0),
        (owner, "ctl-owner", OWNER_C, 1, 0), (victim, "ctl-victim", VICTIM, 2, 1),
        (opener, "ctl-opener", OPENER, 1, 0)])

    def region_rows(d):
        return sorted((r["owner_pid"], r["owner"], r["bytes"], r["holders"], r["shares"])
                      for r in rows(d, "regions"))

    def region_live(d):
        p = []
        want(d["source"] == "debugfs", "source %s" % d["source"], p)
        want(region_rows(d) == expect_regions,
             "(owner_pid, owner, bytes, holders, shares): %s, want %s" % (region_rows(d), expect_regions), p)
        want(all(r["kind"] == "host" and r["state"] == "active" for r in d["regions"]), "kind/state", p)
        return p

    check("region -j as root: every region with its owner pid and comm, bytes, holders, shares",
          "region", region_live)
    check("region pid OWNER: the owner's three regions",
          "region_pid", lambda d: [] if sorted(r["bytes"] for r in d["regions"]) == sorted([OWNER_A, OWNER_B, OWNER_C])
          and all(r["owner_pid"] == owner for r in d["regions"]) else ["rows %s" % d["regions"]])

    region_of = {}
    rc, d, _ = doc("region")
    if d:
        for r in rows(d, "regions"):
            region_of[(r["owner_pid"], r["bytes"])] = r["id"]

    def share_live(d):
        got = sorted((s["share_id"], s["region"], s["owner_pid"], s["rule"], s["id"], s["opens"])
                     for s in d["shares"])
        exp = sorted([(sid_owner, region_of.get((owner, OWNER_A)), owner, "group", XGID, 1),
                      (sid_victim, region_of.get((victim, VICTIM)), victim, "uid", XUID, 1)])
        return [] if got == exp else ["(share_id, region, owner_pid, rule, id, opens): %s, want %s" % (got, exp)]

    check("share -j as root: the group and uid shares, their regions, owners, opens", "share", share_live)

    def ctx_rows(d):
        return sorted((c["pid"], c["comm"], c["regions"], c["pinned_bytes"]) for c in d["contexts"])

    expect_ctx = sorted([(owner, "ctl-owner", 2, OWNER_A + OWNER_B), (owner, "ctl-owner", 1, OWNER_C),
                         (victim, "ctl-victim", 1, VICTIM), (opener, "ctl-opener", 3, OPENER)])
    check("ctx -j as root: four contexts with pid, comm, regions (opened ones too), pinned bytes",
          "ctx", lambda d: [] if ctx_rows(d) == expect_ctx else ["(pid, comm, regions, pinned): %s, want %s" % (ctx_rows(d), expect_ctx)])

    # ---- stat: the owner's two engines before and after 8 writes --------
    def owner_rails(name):
        _, d, _ = doc(name)
        if not d:
            return None
        rs = [r for r in d.get("rails", []) if r.get("pid") == owner]
        ctxs = sorted({r["ctx"] for r in rs})
        if len(ctxs) != 2:
            return None
        # the source engine was created first: the lower context id
        return {"src": [r for r in rs if r["ctx"] == ctxs[0]], "dst": [r for r in rs if r["ctx"] == ctxs[1]]}

    def stat_vs_known(name, known_src, known_dst):
        def fn(d):
            p = []
            o = owner_rails(name)
            if o is None:
                return ["the owner's two contexts not found in %s" % d.get("rails")]
            for eng, k in (("src", known_src), ("dst", known_dst)):
                want(len(o[eng]) == 1 and o[eng][0]["rail"] == 0, "%s: rails %s" % (eng, o[eng]), p)
                for f in COUNTERS:
                    if f in o[eng][0]:
                        want(o[eng][0][f] == int(k[f]), "%s %s: xferctl %s, the library %s" % (eng, f, o[eng][0][f], k[f]), p)
                    else:
                        p.append("%s: no field %s" % (eng, f))
            want({r["pid"] for r in d["rails"]} >= {owner, victim, opener}, "pids %s" % {r["pid"] for r in d["rails"]}, p)
            return p
        return fn

    src = [s for s in stats if s["engine"] == "src"]
    dst = [s for s in stats if s["engine"] == "dst"]
    if len(src) >= 2 and len(dst) >= 2:
        check("stat -j as root: the owner's counters equal what its library says (xfer_engine_stats)",
              "stat1", stat_vs_known("stat1", src[0], dst[0]))
        check("stat -j after 8 writes with immediate: the same as the library's", "stat2",
              stat_vs_known("stat2", src[1], dst[1]))
        a, b = owner_rails("stat1"), owner_rails("stat2")
        p = []
        if a and b:
            d_ops = b["src"][0]["ops_posted"] - a["src"][0]["ops_posted"]
            d_bytes = b["src"][0]["bytes_completed"] - a["src"][0]["bytes_completed"]
            d_imm = b["dst"][0]["imm_received"] - a["dst"][0]["imm_received"]
            want(d_ops == 8 and d_bytes == 8 * 65536 and d_imm == 8,
                 "deltas: ops_posted %d, bytes_completed %d, imm_received %d; want 8, 524288, 8" % (d_ops, d_bytes, d_imm), p)
        else:
            p.append("the owner's rails missing in stat1 or stat2")
        result(not p, "xferctl: stat counters move between two samples by exactly the 8 writes", "\n".join(p))
    else:
        result(False, "xferctl: stat -j compared with the library", "the owner printed no stats lines: %s" % known.get("owner"))
    check("stat pid OWNER: only the owner's two contexts",
          "stat_pid", lambda d: [] if {r["pid"] for r in d["rails"]} == {owner} and len({r["ctx"] for r in d["rails"]}) == 2
          else ["rows %s" % d["rails"]])

    # ---- health, root --------------------------------------------------
    check("health -j -d as root with live processes: exit 0, no problem, orphans and device checked",
          "health", lambda d: [] if d["health"] == "ok" and d["problems"] == [] and
          {"orphaned regions", "module and /dev/xfer", "RLIMIT_MEMLOCK"} <= set(d["passed"])
          else ["health %s problems %s passed %s" % (d["health"], d["problems"], d.get("passed"))])

    # ---- the unprivileged user ------------------------------------------
    check("module -j as uid 1000: the same totals from sysfs, features through /dev/xfer",
          "u_module", lambda d: [] if (d["regions"], d["contexts"], d["shares"], d["pinned_bytes"]) == (5, 4, 2, total)
          and not d["features"].startswith("unknown") else ["totals %s" % d])
    for obj, key, n in (("region", "regions", 5), ("share", "shares", 2), ("ctx", "contexts", 4)):
        check("%s -j as uid 1000: source sysfs, the total %d" % (obj, n), "u_" + obj,
              lambda d, key=key, n=n: [] if d["source"] == "sysfs" and d[key] == n else ["%s" % d])
    rc, d, why = doc("u_stat")
    result(d is not None and rc in (0, 1), "xferctl: stat -j as uid 1000: a JSON answer, exit 0 or 1 (no debugfs for it)",
           why or "exit %s" % rc)

    # ---- three problems at once, then each put right ---------------------
    vid = region_of.get((victim, VICTIM))

    def sick(d):
        p = d["problems"]
        exp_orphan = "region %s: owner pid %d (ctl-victim) is gone, %d bytes still pinned" % (vid, victim, VICTIM)
        out = []
        want(d["health"] == "unhealthy" and len(p) == 3, "%d problems, want 3: %s" % (len(p), p), out)
        want(exp_orphan in p, "no '%s' in %s" % (exp_orphan, p), out)
        want(any(x.startswith("memlock: RLIMIT_MEMLOCK 67108864 bytes is below the module's max_pinned_bytes") for x in p),
             "memlock not named: %s" % p, out)
        want("device: /dev/xfer is mode 0666 group xfer, expected 0660 group xfer" in p, "device mode not named: %s" % p, out)
        return out

    check("health -j with an orphaned region (owner SIGKILLed while opened), RLIMIT_MEMLOCK under the limit, "
          "/dev/xfer 0666: exit 1, each named", "sick_health", sick, want_rc=1)

    def orphan_region(d):
        v = [r for r in d["regions"] if r["owner_pid"] == victim]
        if len(v) != 1:
            return ["victim's regions: %s" % v]
        r = v[0]
        return [] if (r["state"], r["holders"], r["shares"], r["bytes"]) == ("orphaned", 1, 0, VICTIM) else ["row %s" % r]

    check("region -j after SIGKILL of the victim: its region orphaned, held by the opener, no share",
          "orphan_region", orphan_region)
    check("share -j after SIGKILL: the victim's share ended with it",
          "orphan_share", lambda d: [] if [s["share_id"] for s in d["shares"]] == [sid_owner] else ["%s" % d["shares"]])
    check("health -j once the region is released, max_pinned_mb lowered to 32 (under the rlimit) at run time, "
          "/dev/xfer 0660: exit 0", "healed_health",
          lambda d: [] if d["health"] == "ok" and d["problems"] == [] and d["memlock_bytes"] == 64 << 20
          else ["%s" % d["problems"]])
    check("region -j after the opener released it: the orphaned region is gone",
          "released_region", lambda d: [] if sorted(r["bytes"] for r in d["regions"]) == sorted([OWNER_A, OWNER_B, OWNER_C, OPENER])
          else ["%s" % d["regions"]])
    check("module -j shows the lowered limit (param 32, max_pinned_bytes 32 MiB)",
          "lowered_module", lambda d: [] if d["param_max_pinned_mb"] == 32 and d["max_pinned_bytes"] == 32 << 20 else ["%s" % d])
    check("health -j as uid 1000 with /dev/xfer group root: exit 1, group and access named, orphans not checked "
          "(no debugfs)", "u_devgroup_health",
          lambda d: [] if "device: /dev/xfer is mode 0660 group root, expected 0660 group xfer" in d["problems"] and
          any("Permission denied for this user" in x for x in d["problems"]) and
          "not checked" in d.get("orphans", "") else ["%s" % d], want_rc=1)

    # ---- check ----------------------------------------------------------
    def check_ok(d):
        c = {x["check"]: x for x in d["checks"]}
        p = []
        want(d["failed"] == 0 and d["passed"] == sum(x["result"] == "pass" for x in d["checks"]),
             "totals %s/%s/%s" % (d["passed"], d["failed"], d["skipped"]), p)
        for name in ("module pin and release", "module share and open", "provider local", "provider shm"):
            want(c.get(name, {}).get("result") == "pass", "%s: %s" % (name, c.get(name)), p)
        t = c.get("provider tcp;ofi_rxm", {})
        want(t.get("result") == "pass" or "does not list" in t.get("detail", ""), "tcp: %s" % t, p)
        return p

    check("check -j as root with the module: module pin/share and the providers pass", "check", check_ok)
    check("check -j module as uid 1000 in group xfer: the module's checks pass", "u_check",
          lambda d: [] if d["passed"] == 2 and d["failed"] == 0 else ["%s" % d["checks"]])
    check("check -j module with max_pinned_mb under what is pinned: exit 1, the limit named", "check_lowered",
          lambda d: [] if d["failed"] == 2 and all("max_pinned_mb" in x["detail"] for x in d["checks"])
          else ["%s" % d["checks"]], want_rc=1)

    # ---- the end ----------------------------------------------------------
    check("module -j once the processes ended: no region, context or share, nothing pinned",
          "end_module", lambda d: [] if (d["regions"], d["contexts"], d["shares"], d["pinned_bytes"]) == (0, 0, 0, 0)
          else ["%s" % {k: d.get(k) for k in ("regions", "contexts", "shares", "pinned_bytes")}])


if __name__ == "__main__":
    try:
        main(sys.argv[1])
    except (OSError, ValueError) as e:
        result(False, "xferctl: the guest log could be read", str(e))
    for ok, name, why in results:
        print("R\t%s\t%s" % ("ok" if ok else "not-ok", name))
        if not ok:
            for l in why.split("\n"):
                print("D\t  # " + l)
