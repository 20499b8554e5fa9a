#!/usr/bin/env python3
"""Browser test of the public profile page, in Debian's headless chromium.

Starts a private linkhub (a built binary, a fresh database, its own
CACHE_PREFIX and port, on the local PostgreSQL and Redis), registers a user,
adds links and a social through the API, then opens /@{username} in chromium
and checks what a person sees: the name, and the links'
text and targets in order, each with rel="noopener nofollow ugc", and no <script>. It saves a
screenshot, renames a link and adds one through the API, opens the page again
in the same browser profile (its HTTP cache may revalidate) and must see the
change at once. Exits non-zero on any difference. Cleans up after itself.

    scripts/browser-test.py                      # builds and starts linkhub
    LINKHUB_BIN=/path/to/linkhub scripts/browser-test.py
    scripts/browser-test.py --base-url http://127.0.0.1:8080   # a running one

Screenshots go to "$CARGO_TARGET_DIR/browser/". Python 3 standard library only.

--stand-in-page serves /@{username} from a small page this script renders
from the JSON API (same markup shape), so the browser mechanics can be
dry-run before linkhub serves the page itself. Remove it once it does.
"""

import argparse
import html
import html.parser
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from harness import Linkhub, request, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/var/tmp/linkhub-target")
PG_SERVER = os.environ.get("PG_SERVER", "postgres://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# JavaScript stays on: chromium's --dump-dom and --screenshot print nothing
# with --blink-settings=scriptEnabled=false. That the page needs no script is
# checked instead: it has no <script> element (and its CSP allows none).
REL = "noopener nofollow ugc"


def step(message):
    print(f"\n== browser test: {message} ({time.strftime('%H:%M:%S', time.gmtime())})", flush=True)


def fail(message):
    print(f"browser test: FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def api(base, method, path, body=None, token=None, expect=(200,)):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, text = error.code, error.read().decode()
    if status not in expect:
        fail(f"{method} {path} answered {status}: {text}")
    return json.loads(text) if text else None


class LinkCollector(html.parser.HTMLParser):
    """The page as a person reads it: the heading and every off-site link."""

    def __init__(self):
        super().__init__()
        self.links = []  # (text, href, rel)
        self.h1 = ""
        self._anchor = None
        self._in_h1 = False
        self.scripts = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self._anchor = [attrs.get("href"), attrs.get("rel"), ""]
        elif tag == "h1":
            self._in_h1 = True
        elif tag == "script":
            self.scripts += 1

    def handle_endtag(self, tag):
        if tag == "a" and self._anchor:
            href, rel, text = self._anchor
            self.links.append((text.strip(), href, rel))
            self._anchor = None
        elif tag == "h1":
            self._in_h1 = False

    def handle_data(self, data):
        if self._anchor:
            self._anchor[2] += data
        if self._in_h1:
            self.h1 += data


class Chromium:
    """One browser profile for the whole run, so the second visit is a reload
    (its HTTP cache and any revalidation are what a returning person gets)."""

    def __init__(self, binary):
        self.binary = binary
        self.profile = tempfile.mkdtemp(prefix="linkhub-chromium-")

    def run(self, *args):
        command = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            fail(f"chromium {args} exited {result.returncode}: {result.stderr[-2000:]}")
        return result.stdout

    def dom(self, url):
        page = LinkCollector()
        page.feed(self.run("--dump-dom", url))
        return page

    def screenshot(self, url, path):
        self.run(f"--screenshot={path}", "--window-size=412,915", "--hide-scrollbars", url)
        if not os.path.exists(path) or os.path.getsize(path) < 1000:
            fail(f"no screenshot at {path}")

    def close(self):
        shutil.rmtree(self.profile, ignore_errors=True)


class PrivateLinkhub(Linkhub):
    """The harness's linkhub on the local Redis under a key prefix of its own,
    ready once it trusts the cache (the page is then served cache-aside from
    the first visit)."""

    def __init__(self, binary, workdir):
        self.tag = f"browser_{os.getpid()}_{int(time.time())}"
        super().__init__(
            binary,
            self.tag,
            REDIS_URL,
            os.path.join(workdir, "linkhub.log"),
            database_url=f"{PG_SERVER}/{self.tag}",
        )

    def start(self):
        super().start()
        if wait_until(lambda: request(self.base, "GET", "/readyz").body["cache"] == "ok", 60, 0.2) is None:
            fail(f"linkhub never trusted the cache; see {self.logfile}")

    def cleanup(self):
        self.stop()
        subprocess.run(
            ["psql", "-q", f"{PG_SERVER}/postgres", "-c", f'DROP DATABASE IF EXISTS "{self.tag}" WITH (FORCE)'],
            capture_output=True,
        )
        keys = subprocess.run(
            ["redis-cli", "-u", REDIS_URL, "--scan", "--pattern", f"{self.tag}:*"],
            capture_output=True,
            text=True,
        ).stdout.split()
        for i in range(0, len(keys), 500):
            subprocess.run(["redis-cli", "-u", REDIS_URL, "unlink", *keys[i : i + 500]], capture_output=True)


def stand_in_page(api_base):
    """Serves /@{username} from the JSON API; everything else is proxied."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.startswith("/@"):
                self.send_error(404)
                return
            username = self.path[2:]
            try:
                with urllib.request.urlopen(f"{api_base}/api/v1/profiles/{username}") as response:
                    profile = json.loads(response.read())["data"]
            except urllib.error.HTTPError as error:
                self.send_error(error.code)
                return
            e = html.escape
            links = "".join(
                f'<li><a href="{e(link["url"])}" rel="{REL}">{e(link["title"])}</a></li>' for link in profile["links"]
            )
            socials = "".join(
                f'<li><a href="{e(s["url"])}" rel="{REL}">{e(s["platform"])}</a></li>' for s in profile["socials"]
            )
            body = (
                '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>stand-in</title></head>'
                f'<body><main><h1>{e(profile["user"]["name"])}</h1><ul class="links">{links}</ul>'
                f'<ul class="socials">{socials}</ul></main></body></html>'
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def as_sent(url):
    """`url` as an HTTP header carries it: the host in IDNA, the rest
    percent-encoded (what the service's URL parser answers)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname.encode("idna").decode()
    if parts.port:
        host += f":{parts.port}"
    safe = "/%:@!$&'()*+,;=-._~?"
    return urllib.parse.urlunsplit((parts.scheme, host, urllib.parse.quote(parts.path or "/", safe=safe),
                                    urllib.parse.quote(parts.query, safe=safe), parts.fragment))


def expect_redirects(base, links):
    """Each link's `/l/{id}` answers 302 to the URL the API stored."""
    opener = urllib.request.build_opener(NoRedirects)
    for link in links:
        try:
            opener.open(f"{base}/l/{link['id']}")
            fail(f"/l/{link['id']} did not redirect")
        except urllib.error.HTTPError as answer:
            location = answer.headers.get("Location")
            if answer.code != 302 or location != as_sent(link["url"]):
                fail(f"/l/{link['id']} answered {answer.code} to {location!r}, expected 302 to {as_sent(link['url'])!r}")


def expect_links(page, expected, when):
    seen = [(text, href) for text, href, _ in page.links]
    if seen != expected:
        fail(f"{when}: the page shows links {seen}, expected {expected}")
    wrong_rel = [(text, rel) for text, _, rel in page.links if rel != REL]
    if wrong_rel:
        fail(f"{when}: links without rel=\"{REL}\": {wrong_rel}")
    if page.scripts:
        fail(f"{when}: the page has {page.scripts} <script> element(s)")
    print(f"{when}: {len(seen)} links in order, all rel=\"{REL}\":")
    for text, href in seen:
        print(f"  {text!r} -> {href}")


def build_binary(workdir):
    binary = os.environ.get("LINKHUB_BIN")
    if binary:
        return binary
    step("build linkhub (debug)")
    subprocess.run(["cargo", "build", "--locked", "-p", "linkhub"], cwd=ROOT, check=True)
    # The target directory may be shared with other work trees: run a copy of
    # the binary this tree just built, not whatever is there a minute later.
    copy = os.path.join(workdir, "linkhub")
    shutil.copy2(os.path.join(TARGET, "debug", "linkhub"), copy)
    return copy


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="a running linkhub instead of a private one")
    parser.add_argument("--stand-in-page", action="store_true", help="dry-run: serve /@{username} from the JSON API")
    args = parser.parse_args()

    chromium_binary = shutil.which("chromium")
    if not chromium_binary:
        fail("chromium is not installed (apt-get install -y chromium)")
    workdir = tempfile.mkdtemp(prefix="linkhub-browser-")
    linkhub = None
    stand_in = None
    browser = Chromium(chromium_binary)
    try:
        if args.base_url:
            base = args.base_url.rstrip("/")
        else:
            binary = build_binary(workdir)
            step("start a private linkhub")
            linkhub = PrivateLinkhub(binary, workdir)
            linkhub.start()
            base = linkhub.base
            print(f"linkhub on {base}, database and CACHE_PREFIX {linkhub.tag}")
        page_base = base
        if args.stand_in_page:
            stand_in, page_base = stand_in_page(base)
            print(f"DRY RUN: /@{{username}} served by a stand-in at {page_base}, not by linkhub")

        step("register a user and add links through the API")
        username = f"br{os.getpid()}{int(time.time()) % 100000}"
        password = "correct horse battery staple"
        user = api(
            base,
            "POST",
            "/api/v1/users",
            {"username": username, "email": f"{username}@example.com", "password": password, "name": "Ada <Browser> Test", "bio": "Shown in a real browser & checked."},
            expect=(201,),
        )["data"]
        token = api(base, "POST", "/api/v1/auth/login", {"login": username, "password": password})["data"]["token"]
        wanted = [
            ("First: the docs", "https://docs.example.com/start"),
            ("Second \"quoted\" & <angled>", "https://example.org/a?b=1&c=2"),
            ("Third — ünïcode ✓", "https://例え.example/パス"),
        ]
        links = []
        for position, (title, url) in enumerate(wanted):
            links.append(
                api(base, "POST", f"/api/v1/users/{user['id']}/links", {"title": title, "url": url, "position": position}, token, expect=(201,))["data"]
            )
        api(base, "POST", f"/api/v1/users/{user['id']}/socials", {"platform": "github", "url": "https://github.com/ada"}, token, expect=(201,))
        # The page links each link through its counted redirect, in this
        # order, and each redirect leads to what the API stored.
        shown = [(link["title"], f"/l/{link['id']}") for link in links] + [("github", "https://github.com/ada")]
        expect_redirects(base, links)

        page_url = f"{page_base}/@{username}"
        step(f"open {page_url}")
        page = browser.dom(page_url)
        if page.h1.strip() != "Ada <Browser> Test":
            fail(f"the heading reads {page.h1!r}")
        expect_links(page, shown, "first visit")
        shots = os.path.join(TARGET, "browser")
        os.makedirs(shots, exist_ok=True)
        shot = os.path.join(shots, "profile.png")
        browser.screenshot(page_url, shot)
        print(f"screenshot: {shot} ({os.path.getsize(shot)} bytes)")

        step("rename a link and add one through the API, then reload")
        api(base, "PATCH", f"/api/v1/links/{links[1]['id']}", {"title": "Second, renamed"}, token)
        fourth = api(base, "POST", f"/api/v1/users/{user['id']}/links", {"title": "Fourth, new", "url": "https://new.example.com/", "position": 9}, token, expect=(201,))["data"]
        shown[1] = ("Second, renamed", shown[1][1])
        shown.insert(3, ("Fourth, new", f"/l/{fourth['id']}"))
        expect_redirects(base, [fourth])
        page = browser.dom(page_url)
        expect_links(page, shown, "after the write")
        shot = os.path.join(shots, "profile-after-write.png")
        browser.screenshot(page_url, shot)
        print(f"screenshot: {shot} ({os.path.getsize(shot)} bytes)")

        step("an unknown name")
        missing = browser.dom(f"{page_base}/@nobody_{username}")
        if missing.links[:1] and missing.links[0][0] == shown[0][0]:
            fail("an unknown name shows someone's links")
        print("browser test: OK" + (" (DRY RUN against the stand-in page)" if args.stand_in_page else ""))
    finally:
        browser.close()
        if stand_in:
            stand_in.shutdown()
        if linkhub:
            linkhub.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
