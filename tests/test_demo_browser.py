"""End to end in headless Chromium (Debian package, driven by Playwright): consent, training, rating with the
scales locked until the clip ends, a reload mid-way that resumes, and a database holding exactly the ratings
given. Every URL and text response the browser sees is checked for system and file names (blinding)."""

import os
import sqlite3

import pytest

from demo.app import AppConfig, Server
from demo.service import MosService
from demo.study import load_study
from demo.synthetic import write_synthetic_study

CHROMIUM = "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")]
SECRET_NAMES = ("system-alpha", "system-beta", "p000", "p001", "p002", ".wav", "clips/", "training-0",
                "attention-0", "gold-0")


def test_rater_completes_study_with_reload(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    p = write_synthetic_study(tmp_path, n_prompts=3, clips_per_rater=3, seconds=0.3)
    db = tmp_path / "db.sqlite"
    svc = MosService(load_study(p), db)
    given = {}
    seen_text = []
    with Server(svc, AppConfig(port=0)) as srv, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"])
        page = browser.new_page()

        def on_response(resp):
            seen_text.append(resp.url)
            ctype = resp.headers.get("content-type", "")
            if any(t in ctype for t in ("json", "text", "javascript", "event-stream")):
                try:
                    seen_text.append(resp.text())
                except Exception:  # streamed bodies (SSE) may be gone; their events are checked via the API test
                    pass

        page.on("response", on_response)
        page.set_default_timeout(120000)
        expect.set_options(timeout=120000)  # a loaded 2-core machine can take long to serve the first page
        page.goto(srv.url + "?rater=browser-1")
        # the load event fills the rater id from ?rater=
        expect(page.locator("#mos-rater textarea, #mos-rater input").first).to_have_value("browser-1")
        page.locator("#mos-agree input").check()
        page.locator("#mos-start").click()
        page.locator("#mos-train-done").click()

        def rate_current(v):
            page.wait_for_selector("#mos-player")
            progress = page.locator("#mos-progress").inner_text()
            item = page.locator("#mos-player").get_attribute("src").rsplit("/", 1)[1]
            # locked until the end of playback
            assert page.locator("#mos-scale-mos_r input").first.is_disabled()
            assert page.locator("#mos-submit").is_disabled()
            page.evaluate("document.querySelector('#mos-player').play()")
            page.wait_for_function(
                "!document.querySelector('#mos-scale-mos_t input').disabled", timeout=120000)
            page.locator("#mos-scale-mos_r label").filter(has_text=f"{v}:").click()
            page.locator("#mos-scale-mos_t label").filter(has_text=f"{6 - v}:").click()
            page.locator("#mos-submit").click()
            page.wait_for_function(
                f"!document.querySelector('#mos-player') || "
                f"!document.querySelector('#mos-player').src.endsWith('{item}')", timeout=120000)
            given[item] = (v, 6 - v)
            return progress

        assert rate_current(2).startswith("Clip 1 of 5")
        assert rate_current(2).startswith("Clip 2 of 5")
        # reload mid-way: the same rater resumes at clip 3, without consent or training again
        page.reload()
        page.wait_for_selector("#mos-player")
        assert page.locator("#mos-progress").inner_text().startswith("Clip 3 of 5")
        for _ in range(3):
            rate_current(2)
        page.wait_for_selector("#mos-done", state="visible")
        browser.close()
    con = sqlite3.connect(db)
    rows = con.execute("SELECT item_id, scale, value FROM ratings WHERE rater_id='browser-1'").fetchall()
    ends = con.execute("SELECT COUNT(DISTINCT item_id) FROM play_events WHERE event='ended'").fetchone()[0]
    con.close()
    stored = {}
    for item, scale, value in rows:
        stored.setdefault(item, {})[scale] = value
    assert {k: (v["mos_r"], v["mos_t"]) for k, v in stored.items()} == given
    assert len(rows) == 10 and ends == 5
    blob = "\n".join(seen_text)
    for name in SECRET_NAMES:
        assert name not in blob, name
