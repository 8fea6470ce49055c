"""Turn a rendered report into PNGs a person can look at.

    python reports/snapshot.py reports/model_size

Writes <report>/snapshots/html.png (headless Chromium, full page) and pdf-<n>.png (pdftoppm).
Needs Debian's `chromium` and `poppler-utils` (`make snapshot-deps`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    report = Path(sys.argv[1] if len(sys.argv) > 1 else "reports/model_size").resolve()
    out = report / "snapshots"
    out.mkdir(exist_ok=True)
    html, pdf = report / "index.html", report / "index.pdf"
    for tool in ("chromium", "pdftoppm"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run `make snapshot-deps`")
    if html.exists():
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={profile}", "--hide-scrollbars", "--window-size=1200,5000",
                 "--virtual-time-budget=5000", f"--screenshot={out / 'html.png'}", html.as_uri()],
                check=True, capture_output=True, timeout=120)
        print(out / "html.png")
    if pdf.exists():
        subprocess.run(["pdftoppm", "-png", "-r", "70", str(pdf), str(out / "pdf")], check=True, timeout=120)
        for page in sorted(out.glob("pdf-*.png")):
            print(page)


if __name__ == "__main__":
    main()
