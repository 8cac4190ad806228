"""The web page in Debian's Chromium (driven by the ``playwright`` package; no browser is downloaded): a change
seen live, two conflicts resolved in one action, a held deletion approved, a folder with two services added from
the forms and syncing; screenshots at 1280 and 400 px wide in tests/artifacts/, and no console errors."""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.api.harness import ApiHub
from tests.sync.hub import tree

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield chromium
        chromium.close()


def make_conflicts(hub: ApiHub, names: list[str]) -> None:
    """b misses a's new versions of ``names``, then changes its own."""
    a, b, c = hub.roots.values()
    for name in names:
        (a / name).write_text("v1")
    hub.wait_converged(expect=lambda t: all(n in t for n in names))
    plug_b = hub.pid("plug-b")
    os.kill(plug_b, signal.SIGSTOP)
    try:
        for name in names:
            (a / name).write_text("a's version")
        hub.wait_for(lambda: all((c / n).read_text() == "a's version" for n in names))
        for name in names:
            (b / name).write_text("b's version")
    finally:
        os.kill(plug_b, signal.SIGCONT)


def change_and_remove_a_service(hub: ApiHub, page) -> None:
    """p1's ``settle`` option changed from the page (a bad value first: the config's message), then p2 removed
    (after a confirmation): its plug stops and nothing is deleted."""
    with hub.client() as api:
        referee, folders = hub.pid("referee"), api.get("/api/services").json()["p1"]["folders"]
        page.click("#config button[data-verb=change][data-service=p1]")
        expect(page.locator("#service-name")).to_have_value("p1")
        expect(page.locator("#service-name")).to_be_disabled()
        expect(page.locator("#option-root")).to_have_value(str(hub.tmp / "p1"))
        page.fill("#option-settle", "-1")
        page.click("#service-add")
        page.wait_for_selector("#service-form .form-error:not([hidden])")
        assert "services.p1.options.settle" in page.locator("#service-form .form-error").text_content()
        page.fill("#option-settle", "0.3")
        page.click("#service-add")
        expect(page.locator("#service-title")).to_have_text("Add a service")
        assert api.get("/api/services").json()["p1"]["options"] == {"root": str(hub.tmp / "p1"), "settle": 0.3}
        assert api.get("/api/services").json()["p1"]["folders"] == folders

        dialogs: list[str] = []
        page.once("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.click("#config button[data-verb=remove][data-service=p2]")
        assert dialogs and "Remove service p2" in dialogs[0]
        assert "p2" in api.get("/api/services").json()  # dismissed: nothing removed
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#config button[data-verb=remove][data-service=p2]")
        expect(page.locator("#config button[data-service=p2]")).to_have_count(0)
        assert "p2" not in api.get("/api/services").json()
        hub.wait(lambda s: not any(p["name"] == "plug-p2" for p in s["processes"]), 30, "plug-p2 stopped")
        (hub.tmp / "p1" / "after-p2.jpg").write_bytes(b"p2 is gone")
        page.wait_for_selector("#events li:has-text('photos/after-p2.jpg changed')")
        assert (hub.tmp / "p2" / "pic.jpg").exists() and not (hub.tmp / "p2" / "after-p2.jpg").exists()
        assert (hub.tmp / "p1" / "pic.jpg").exists()  # nothing deleted anywhere
        assert hub.pid("referee") == referee


def test_the_page(api_hub: ApiHub, browser):
    errors: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{api_hub.url}/#token={api_hub.token}")
    page.wait_for_selector("body[data-ready=yes]")
    page.wait_for_selector("#live.on")
    assert "#token" not in page.url  # kept by the page, not left in the address bar
    assert page.locator("#folders tbody tr").count() == 6  # docs and vault on a, b, c

    (api_hub.roots["a"] / "seen-live.txt").write_text("hello, page")
    page.wait_for_selector("#events li:has-text('docs/seen-live.txt changed')")
    page.wait_for_selector("#files td:text-is('seen-live.txt')")

    make_conflicts(api_hub, ["left.txt", "right.txt"])
    expect(page.locator("#conflicts tbody tr")).to_have_count(2, timeout=60_000)
    page.check("#conflicts-all")
    page.select_option("#keep", "conflict")
    page.click("#resolve")
    page.wait_for_selector("#no-conflicts:not([hidden])")
    api_hub.wait_converged(expect=lambda t: all((api_hub.roots["a"] / n).read_text() == "b's version"
                                                for n in ("left.txt", "right.txt"))
                           and not any(".conflict-" in p for p in t))

    vaults = list(api_hub.vaults.values())
    for n in range(6):
        (vaults[0] / f"v{n}.txt").write_text(f"vault {n}")
    api_hub.wait_for(lambda: all(len(tree(v)) == 6 for v in vaults), what="the vault everywhere")
    for n in range(4):
        (vaults[1] / f"v{n}.txt").unlink()
    page.wait_for_selector("#held button[data-verb=approve]", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "page-1280.png"), full_page=True)
    page.click("#held button[data-verb=approve]")
    page.wait_for_selector("#no-held:not([hidden])")
    api_hub.wait_for(lambda: all(len(tree(v)) == 2 for v in vaults), what="the approved deletions")

    page.fill("#folder-name", "photos")
    page.click("#folder-add")
    page.wait_for_selector("#service-folder option:text-is('photos')", state="attached")
    for name in ("p1", "p2"):
        page.fill("#service-name", name)
        page.select_option("#service-driver", "local")
        page.fill("#option-root", str(api_hub.tmp / name))
        page.select_option("#service-folder", "photos")
        page.click("#service-add")
        expect(page.locator("#service-name")).to_have_value("")
    bad = page.locator("#service-form .form-error")
    page.fill("#service-name", "p3")
    page.click("#service-add")  # no root: the config's own message, under the form
    page.wait_for_selector("#service-form .form-error:not([hidden])")
    assert "services.p3.options.root: missing required option" in bad.text_content()
    api_hub.wait(lambda s: all(any(p["name"] == f"plug-{n}" and p["state"] == "running" for p in s["processes"])
                               for n in ("p1", "p2")), 60, "the new plugs")
    (api_hub.tmp / "p1" / "pic.jpg").write_bytes(b"\xff\xd8 not much of a picture")
    api_hub.wait_for(lambda: (api_hub.tmp / "p2" / "pic.jpg").exists(), 60, "pic.jpg reaching p2")
    page.wait_for_selector("#events li:has-text('photos/pic.jpg changed')")
    expect(page.locator("#folders tbody tr")).to_have_count(8, timeout=30_000)

    change_and_remove_a_service(api_hub, page)

    expect(page.locator("#files td:text-is('seen-live.txt')")).to_have_count(1)  # refreshes never add up
    page.set_viewport_size({"width": 400, "height": 900})
    page.screenshot(path=str(ARTIFACTS / "page-400.png"), full_page=True)
    widest = max(page.locator("section").evaluate_all("sections => sections.map(s => s.scrollWidth)"))
    assert widest <= 400, f"a section is {widest} px wide at 400 px"
    # the two refused requests above (Chromium logs every failed request); no script error, nothing else
    assert errors == ["Failed to load resource: the server responded with a status of 422 (Unprocessable Entity)"
                      ] * 2, errors
    page.close()
