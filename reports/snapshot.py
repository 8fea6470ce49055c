"""Turn a rendered report into PNGs a person can look at.

    python reports/snapshot.py reports/model_size

Writes <report>/snapshots/html.png (headless Chromium through Playwright: the full page, however long)
and pdf-<n>.png (pdftoppm). Needs Debian's `chromium` and `poppler-utils` (`make snapshot-deps`) and
Playwright (the test extra; `make snapshot` installs it).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path


CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def html_snapshot(html: Path, png: Path, width: int = 1200) -> Path:
    """The whole page, however long (Playwright driving Debian's Chromium), once its charts are drawn."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(html.as_uri(), wait_until="load")
        page.wait_for_load_state("networkidle")
        # Vega-Embed draws each chart into an svg or canvas after load: wait for every one of them.
        page.wait_for_function("""() => [...document.querySelectorAll('.vega-embed')]
            .every(e => e.querySelector('svg, canvas'))""", timeout=60_000)
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    return png


def main() -> None:
    report = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/model_size").resolve()
    out = report / "snapshots"
    out.mkdir(exist_ok=True)
    html, pdf = report / "index.html", report / "index.pdf"
    for path, tool in ((html, "chromium"), (pdf, "pdftoppm")):
        if path.exists() and shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run `make snapshot-deps`")
    if html.exists():
        print(html_snapshot(html, out / "html.png"))
    if pdf.exists():
        subprocess.run(["pdftoppm", "-png", "-r", "70", str(pdf), str(out / "pdf")], check=True, timeout=120)
        for page in sorted(out.glob("pdf-*.png")):
            print(page)


if __name__ == "__main__":
    main()
