"""Build the docs site and look at one chapter in a real browser (headless Chromium).

    python docs/screenshot.py                      # chapter 3 -> /tmp/eca-ref-site.png
    python docs/screenshot.py --page 06-choosing-k.html --out shot.png --height 2600

Steps: ``mkdocs build --strict`` into a temporary folder, serve it on 127.0.0.1 (a free port), open the page
in headless Chromium twice: once to dump the DOM after the scripts ran (MathJax turns every equation into an
``<mjx-container>``: the script counts them and the equations left unrendered), once for the PNG.
Nothing leaves the machine: the site carries its own MathJax (docs/mkdocs_hooks.py), and Chromium runs with
its background networking off.

Needs the ``[docs]`` extra (``pip install -e ".[docs]"``) and Chromium (Debian: ``apt-get install chromium``).
Exit status: 0 when the page rendered its equations and its figures, 1 when it did not, 2 when a tool is
missing (the message says which and how to install it).
"""
from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--virtual-time-budget=15000"]


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def build_site(site_dir: Path) -> None:
    """mkdocs build --strict into site_dir; raises CalledProcessError with mkdocs' output on failure."""
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site_dir)],
                   cwd=ROOT, check=True, capture_output=True, text=True, env=_env())


def _env():
    import os
    return {**os.environ, "NO_MKDOCS_2_WARNING": "1"}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(site_dir: Path):
    """An HTTP server for site_dir on 127.0.0.1 and a free port, in a daemon thread."""
    handler = functools.partial(_Quiet, directory=str(site_dir))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def chromium(browser: str, profile: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=timeout)


def inspect_dom(dom: str) -> dict:
    """What the browser made of the page: rendered equations, equations left as TeX, images."""
    return {
        "rendered": len(re.findall(r"<mjx-container", dom)),
        "unrendered": len(re.findall(r'class="arithmatex">\s*\\[\(\[]', dom)),
        "images": re.findall(r'<img[^>]*src="([^"]+\.png)"', dom),
        "remote_scripts": re.findall(r'<(?:script|link)[^>]*(?:src|href)="(https?://[^"]+)"', dom),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--page", default="03-local-cross-channel-interaction.html", help="page of the built site")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "eca-ref-site.png",
                    help="the PNG to write (default: %(default)s; do not commit large screenshots)")
    ap.add_argument("--width", type=int, default=1100)
    ap.add_argument("--height", type=int, default=2200)
    opts = ap.parse_args(argv)

    browser = find_chromium()
    if browser is None:
        print("docs/screenshot.py: Chromium is missing (looked for " + ", ".join(CHROMIUM_NAMES) + ").\n"
              "Install it, e.g. on Debian/Ubuntu: apt-get update && apt-get install -y chromium", file=sys.stderr)
        return 2
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        print('docs/screenshot.py: MkDocs is missing: pip install -e ".[docs]"', file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="eca-ref-site-") as tmp:
        site, profile = Path(tmp) / "site", Path(tmp) / "profile"
        try:
            build_site(site)
        except subprocess.CalledProcessError as exc:
            print(f"mkdocs build --strict failed:\n{exc.stdout}{exc.stderr}", file=sys.stderr)
            return 1
        if not (site / opts.page).is_file():
            print(f"no page {opts.page} in the built site", file=sys.stderr)
            return 1
        server = serve(site)
        url = f"http://127.0.0.1:{server.server_address[1]}/{opts.page}"
        try:
            dom = chromium(browser, profile, "--dump-dom", url).stdout
            found = inspect_dom(dom)
            opts.out.parent.mkdir(parents=True, exist_ok=True)
            shot = chromium(browser, profile, f"--window-size={opts.width},{opts.height}",
                            f"--screenshot={opts.out.resolve()}", url)
        finally:
            server.shutdown()
    ok = found["rendered"] > 0 and found["unrendered"] == 0 and not found["remote_scripts"]
    print(f"{url}: {found['rendered']} equations rendered by MathJax, {found['unrendered']} left as TeX, "
          f"images {found['images'] or 'none'}, remote scripts/styles {found['remote_scripts'] or 'none'}")
    if shot.returncode != 0 or not opts.out.is_file():
        print(f"chromium did not write the screenshot:\n{shot.stderr[-2000:]}", file=sys.stderr)
        return 1
    print(f"screenshot: {opts.out} ({opts.out.stat().st_size:,} bytes, {opts.width}x{opts.height})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
