"""Screenshots of every page of the built site, as headless Chromium renders it at 1280 px.

Not part of CI: it is for a person to look at the site as a reader sees it (math typeset by
KaTeX, tables, code). Needs a Chromium binary; on Debian/Ubuntu::

    apt-get install -y chromium          # or set CHROMIUM=/path/to/chrome

Then, from the repository root::

    mkdocs build --strict --site-dir /tmp/site
    python docs/screenshots.py /tmp/site /tmp/shots            # every page, top and each section
    python docs/screenshots.py /tmp/site /tmp/shots --only api methods --height 1600

The site is served from a local HTTP server (material's scripts do not all run from
``file://``), and each page is shot at the top and at each of its ``h2``/``h3`` sections
(brought to the top of the window), so long pages such as the API reference are covered without one
image tens of thousands of pixels tall. The PNGs are named ``<page>.png`` and
``<page>--<section>.png``. Only the standard library is used.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote, unquote

SECTION_ID = re.compile(r'<h[23] id="([^"]+)"')


# Headless Chromium paints nothing below the first screen once a page is scrolled (an anchor in
# the URL or scrollIntoView give a blank PNG), so a section is brought to the top by shifting
# the page's container instead, once everything (KaTeX included) has run.
SHIFT = """<script>addEventListener("load", () => {{
  const target = document.getElementById({id});
  const y = target.getBoundingClientRect().top - 80;
  document.querySelector(".md-container").style.transform = "translateY(" + -y + "px)";
}});</script></body>"""


class Server(SimpleHTTPRequestHandler):
    """The site as built; ``page/?shot=ID`` serves the page shifted to the element ``ID``."""

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?shot=")
        if not query:
            return super().do_GET()
        html = Path(self.translate_path(path), "index.html").read_text(encoding="utf-8")
        body = html.replace("</body>", SHIFT.format(id=json.dumps(unquote(query))), 1).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:  # one line per request would bury the PNG names
        pass


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("screenshots: no Chromium found (apt-get install -y chromium, or set CHROMIUM)")


def shoot(browser: str, url: str, png: Path, width: int, height: int) -> None:
    subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--force-device-scale-factor=1", f"--window-size={width},{height}",
            "--virtual-time-budget=8000", f"--screenshot={png}", url,
        ],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120,
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site", type=Path, help="a site built by mkdocs build --site-dir")
    parser.add_argument("out", type=Path, help="folder for the PNGs")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1200)
    parser.add_argument("--only", nargs="*", help="page folders to shoot (e.g. api methods)")
    parser.add_argument("--top-only", action="store_true", help="one shot per page, its top")
    parser.add_argument("--sections", nargs="*", default=[], help="more element ids to shoot")
    args = parser.parse_args(argv)
    browser = chromium()
    args.out.mkdir(parents=True, exist_ok=True)
    handler = functools.partial(Server, directory=str(args.site))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        for page in sorted(args.site.glob("**/index.html")):
            folder = page.parent.relative_to(args.site).as_posix()
            name = folder.replace("/", "_") if folder != "." else "index"
            if args.only and name not in args.only:
                continue
            url = f"{base}/{'' if folder == '.' else folder + '/'}"
            shots = [(name, url)]
            if not args.top_only:
                ids = SECTION_ID.findall(page.read_text(encoding="utf-8"))
                ids += [i for i in args.sections if f'id="{i}"' in page.read_text(encoding="utf-8")]
                shots += [(f"{name}--{i}", f"{url}?shot={quote(i)}") for i in ids]
            for stem, address in shots:
                png = args.out / f"{stem}.png"
                shoot(browser, address, png, args.width, args.height)
                print(png)
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
