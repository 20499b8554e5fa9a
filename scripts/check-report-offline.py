"""Checks that goose HTML reports render their charts with the network off.

    python3 scripts/check-report-offline.py REPORT.html ...

Each report is opened in headless Chromium (Debian's `chromium`) with every
host name unresolvable and a dead proxy, so nothing can be fetched; the DOM
after a few seconds of virtual time must hold, for every chart container the
report has (`<div class="graph">`), an initialised ECharts instance with its
canvas. As a control, the same report with its chart script pointed back at
the CDN must render no chart, which shows the network really was off.
Exits non-zero when any check fails. Standard library only.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import NamedTuple

CDN_TAG = '<script src="https://cdn.jsdelivr.net/npm/echarts@5.2.2/dist/echarts.min.js"></script>'
INLINED = re.compile(r"<script>/\* Apache ECharts 5\.2\.2.*?</script>", re.S)


class Chart(NamedTuple):
    """A chart container of the rendered report."""
    id: str
    initialised: bool  # ECharts marks the element it was initialised on
    canvases: int      # what the canvas renderer drew into


def rendered_dom(chromium, path, profile):
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-default-apps", f"--user-data-dir={profile}",
        # The network is off: no name resolves, and any proxied request goes nowhere.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost",
        "--proxy-server=127.0.0.1:9",
        "--virtual-time-budget=10000", "--dump-dom", "file://" + os.path.abspath(path),
    ]
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if out.returncode != 0 or "<html" not in out.stdout:
        raise RuntimeError(f"chromium failed on {path} ({out.returncode}): {out.stderr[-2000:]}")
    return out.stdout


def charts_of(dom):
    """Each `<div class="graph">` of `dom`: its first inner element's id, whether
    ECharts was initialised on it, and the canvases up to the next container."""
    charts = []
    for block in dom.split('<div class="graph">')[1:]:
        inner = re.search(r"<div\s([^>]*)>", block)
        if inner is None:
            continue
        chart_id = re.search(r'id="([^"]+)"', inner.group(1))
        charts.append(Chart(chart_id.group(1) if chart_id else "?",
                            "_echarts_instance_" in inner.group(1), block.count("<canvas")))
    return charts


def main(reports):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("check-report-offline: chromium is missing (apt-get install -y chromium)")
    if not reports:
        sys.exit("usage: check-report-offline.py REPORT.html ...")
    failed = 0
    with tempfile.TemporaryDirectory(prefix="linkhub-report-check-") as tmp:
        for path in reports:
            source = open(path, encoding="utf-8").read()
            problems = []
            if "cdn.jsdelivr.net" in source:
                problems.append("still loads its chart script from the CDN")
            charts = charts_of(rendered_dom(chromium, path, os.path.join(tmp, "report-profile")))
            drawn = [c for c in charts if c.initialised and c.canvases > 0]
            if not charts:
                problems.append("has no chart container")
            for c in charts:
                if not (c.initialised and c.canvases):
                    problems.append(f"chart {c.id} not rendered (echarts: {c.initialised}, "
                                    f"canvases: {c.canvases})")
            # The control: the original CDN tag must render nothing offline.
            control = os.path.join(tmp, "cdn-" + os.path.basename(path))
            with open(control, "w", encoding="utf-8") as f:
                f.write(INLINED.sub(lambda _: CDN_TAG, source, count=1))
            control_dom = rendered_dom(chromium, control, os.path.join(tmp, "control-profile"))
            leaked = [c.id for c in charts_of(control_dom) if c.initialised or c.canvases]
            if leaked:
                problems.append(f"the CDN control rendered {leaked}: the network was not off")
            kib = len(source.encode()) // 1024
            if problems:
                failed += 1
                print(f"check-report-offline: FAIL {path} ({kib} KiB):", *problems, sep="\n  ")
            else:
                print(f"check-report-offline: ok {path} ({kib} KiB): {len(drawn)} of {len(charts)} "
                      f"charts rendered offline ({', '.join(c.id for c in drawn)}); "
                      "the CDN version renders none")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
