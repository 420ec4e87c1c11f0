"""The web UI in a real browser: headless Chromium driven by Playwright against the app on toyworld.

What a user does: type a prompt and run; paint a mask on the target in the image editor and run VisCtrl;
cancel a long job; drop a studio PNG to restore its job and re-run it. The oracles are the studio's own
metadata reader (the downloaded PNG carries the job), the painted mask file (VisCtrl pastes the input's
own pixels back outside it), and the first run's bytes. Screenshots of each tab go to
`outputs/test-ui/`. Chromium comes from Debian's `chromium` package (`make test` installs it where apt
can); where no browser can be had these tests skip and say why.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gradio", reason="the UI needs the `ui` extra (gradio)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (the `test` extra)")

from studio.images import open_image, open_image_channels
from studio.masks import load_mask
from studio.metadata import read_job
from toyworld.providers import foreground_mask

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "outputs" / "test-ui"
CONCEPT = ROOT / "assets" / "toyworld" / "concepts" / "orange_crescent"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 120_000

pytestmark = pytest.mark.slow


def chromium() -> str | None:
    for candidate in (os.environ.get("STUDIO_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on toyworld, served on 127.0.0.1 in this process; yields (url, StudioUI)."""
    from studio.model_cache import ModelCache
    from ui.app import StudioUI, launch_kwargs
    from ui.runs import SessionRuns

    base = tmp_path_factory.mktemp("ui-server")
    out, work = base / "out", base / "work"
    out.mkdir()
    work.mkdir()
    ui = StudioUI(SessionRuns(ModelCache(), out), work_dir=work)
    demo = ui.blocks()
    demo.queue(default_concurrency_limit=1)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **launch_kwargs(out))
    yield url, ui
    demo.close()


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    if path is None:
        pytest.skip("no Chromium: install Debian's `chromium` package (make test does where apt-get is available)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    url, _ = server
    context = browser.new_context(viewport={"width": 1400, "height": 1800})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#generate-prompt textarea")
    yield page
    context.close()


def set_number(page, selector: str, value: float) -> None:
    box = page.locator(f"{selector} input[type=number]").first
    box.fill(str(value))
    box.press("Enter")


def click_run(page, task: str) -> None:
    """Clear the shown status (so an earlier run's last line cannot be mistaken for this one's), then run."""
    page.eval_on_selector(f"#{task}-status textarea", "el => { el.value = ''; }")
    page.click(f"#{task}-run")


def wait_done(page, task: str) -> str:
    page.wait_for_function(
        f"() => /^(done|error|job cancelled)/.test(document.querySelector('#{task}-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )
    return page.input_value(f"#{task}-status textarea")


def outputs(ui, task: str) -> list[Path]:
    return sorted(ui.runs.output_dir.rglob(f"{task}-*.png"), key=lambda p: p.stat().st_mtime_ns)


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))  # the viewport: full pages cost seconds each


def test_screenshots_of_every_tab(page, server):
    _, ui = server
    for name in ui.registry.tasks:
        page.locator(f"#tab-{name}-button").click()
        page.wait_for_selector(f"#{name}-run", state="visible")
        shot(page, f"tab-{name}")


def test_generate_shows_progress_and_the_image_whose_download_keeps_its_job(page, server, tmp_path):
    _, ui = server
    page.fill("#generate-prompt textarea", "a red striped star on the left, gray background")
    page.fill("#generate-seed input", "7")
    set_number(page, "#generate-steps", 12)
    click_run(page, "generate")
    page.wait_for_function(
        "() => /step \\d+ of 12/.test(document.querySelector('#generate-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )  # the progress moves
    assert wait_done(page, "generate").startswith("done")
    page.wait_for_selector("#generate-gallery img")
    shot(page, "generate-done")
    link = page.locator("#generate-files a").first.get_attribute("href")
    downloaded = tmp_path / "downloaded.png"
    downloaded.write_bytes(page.request.get(link).body())
    job = read_job(downloaded).job
    assert (job.prompt, job.seed, job.steps) == ("a red striped star on the left, gray background", 7, 12)
    assert downloaded.read_bytes() == outputs(ui, "generate")[-1].read_bytes()
    page.locator("#generate-gallery img").first.click()  # "use as input": the result goes to invert's image
    page.click("#generate-send")
    page.wait_for_selector("#invert-image img", timeout=RUN_TIMEOUT_MS)
    sent = page.locator("#invert-image img").first.get_attribute("src")
    assert page.request.get(sent).body() == downloaded.read_bytes()


def test_visctrl_changes_only_inside_the_painted_mask(page, server):
    _, ui = server
    page.locator("#tab-visctrl-button").click()
    target = CONCEPT / "context_0.png"
    page.set_input_files("#visctrl-image input[type=file]", str(target))
    reference = CONCEPT / "reference_0.png"
    page.set_input_files("#visctrl-opt-reference input[type=file]", str(reference))
    page.wait_for_function(
        "() => document.querySelector('#visctrl-opt-reference-mask').innerText.indexOf('Upload an image') < 0"
    )
    page.click("#visctrl-opt-reference-mask-detect")  # the automatic mask, shown on the editor before running
    page.wait_for_function(
        "() => /^automatic mask/.test(document.querySelector('#visctrl-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )
    page.wait_for_function(
        "() => document.querySelector('#visctrl-opt-target-mask').innerText.indexOf('Upload an image') < 0"
    )
    editor = page.locator("#visctrl-opt-target-mask")
    editor.scroll_into_view_if_needed()  # strokes outside the viewport do not reach the canvas
    time.sleep(1)  # the background image is drawn asynchronously
    box = editor.locator("canvas").first.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2  # the image is shown centred
    for dy in (-20, 20):  # two strokes over the image's left half, where the crescent is
        page.mouse.move(x - 110, y + dy)
        page.mouse.down()
        page.mouse.move(x - 20, y + dy, steps=3)
        page.mouse.up()
    set_number(page, "#visctrl-steps", 4)
    shot(page, "visctrl-painted")
    click_run(page, "visctrl")
    status = wait_done(page, "visctrl")
    shot(page, "visctrl-done")
    assert status.startswith("done"), status
    made = outputs(ui, "visctrl")[-1]
    options = read_job(made).job.options["visctrl"]
    mask_file = options["target_mask"]
    (detected,) = list(ui.work_dir.rglob(Path(options["reference_mask"]).name))
    detector = foreground_mask(open_image(reference), model="toyworld", backbone=None)
    shown = np.asarray(open_image_channels(detected).convert("L")) > 127
    assert np.array_equal(shown, detector)  # the detected mask came back as shown
    (mask_path,) = [p for p in ui.work_dir.rglob(Path(mask_file).name)]
    before, after = np.asarray(open_image(target)), np.asarray(open_image(made))
    mask = load_mask(mask_path, expected_size=before.shape[1::-1]).numpy().astype(bool)
    assert 0 < mask.mean() < 0.5  # the strokes, not the whole canvas
    changed = (before != after).any(-1)
    assert changed.any() and not (changed & ~mask).any()


def test_cancel_stops_a_long_job_and_the_ui_stays_usable(page, server):
    page.fill("#generate-prompt textarea", "a blue circle")
    set_number(page, "#generate-steps", 400)
    click_run(page, "generate")
    page.wait_for_function(
        "() => /step \\d+ of 400/.test(document.querySelector('#generate-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )
    page.click("#generate-cancel")
    status = wait_done(page, "generate")
    assert status.startswith("job cancelled"), status
    set_number(page, "#generate-steps", 3)
    click_run(page, "generate")
    page.wait_for_function(
        "() => /^done/.test(document.querySelector('#generate-status textarea').value)", timeout=RUN_TIMEOUT_MS
    )


def test_dropping_a_studio_png_restores_the_job_and_reruns_to_the_same_bytes(page, server):
    _, ui = server
    page.fill("#generate-prompt textarea", "a green dotted square in the center")
    set_number(page, "#generate-steps", 5)
    click_run(page, "generate")
    assert wait_done(page, "generate").startswith("done")
    first = outputs(ui, "generate")[-1]
    page.reload()
    page.wait_for_selector("#generate-prompt textarea")
    page.set_input_files("#load-job input[type=file]", str(first))
    page.wait_for_function(
        "() => document.querySelector('#generate-prompt textarea').value === 'a green dotted square in the center'"
    )
    assert page.input_value("#generate-seed input") == str(read_job(first).job.seed)
    shot(page, "restored")
    click_run(page, "generate")
    assert wait_done(page, "generate").startswith("done")
    again = outputs(ui, "generate")[-1]
    assert again != first and again.read_bytes() == first.read_bytes()


def test_files_outside_the_apps_folders_are_refused(server, tmp_path):
    import urllib.error
    import urllib.request

    url, ui = server
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"secret")
    inside = ui.runs.output_dir / "link.png"
    inside.unlink(missing_ok=True)
    inside.symlink_to(outside)
    (ui.runs.output_dir / "served.txt").write_text("ok")
    out = ui.runs.output_dir
    mask = ui.work_dir / "mask.png"  # painted masks are never served: the browser does not need them
    mask.write_bytes(b"mask")
    for path in [
        outside,
        mask,
        "/etc/passwd",
        f"{out}/../{outside.parent.name}/secret.png",
        f"{out}/../../../etc/passwd",
        inside,
        f"{out}/%2e%2e/%2e%2e/etc/passwd",
        "../../../../etc/passwd",
    ]:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}gradio_api/file={path}")
        assert refused.value.code in (403, 404), path
    assert urllib.request.urlopen(f"{url}gradio_api/file={out}/served.txt").read() == b"ok"  # the oracle: served
    inside.unlink()


@pytest.mark.parametrize("kind", ["bomb", "not an image"])
def test_a_bad_upload_gets_one_line_and_the_app_keeps_serving(page, tmp_path, kind):
    """A bomb goes to VisCtrl's target, under a mask canvas (which must not hand it to gradio's decoder);
    a non-image goes to Invert's image. Either way: one line, then the same tab runs a good image. (81 Mpx is
    over the studio's 64 Mpx limit and cheaper for the browser to try to show than a 400 Mpx one.)"""
    from tests.studio_inputs import bomb_png

    upload = tmp_path / "upload.png"
    upload.write_bytes(bomb_png(9000, 9000) if kind == "bomb" else b"GIF? no: plain text")
    task = "visctrl" if kind == "bomb" else "invert"
    page.locator(f"#tab-{task}-button").click()
    page.set_input_files(f"#{task}-image input[type=file]", str(upload))
    if task == "visctrl":
        page.set_input_files("#visctrl-opt-reference input[type=file]", str(CONCEPT / "reference_0.png"))
    set_number(page, f"#{task}-steps", 2)
    click_run(page, task)
    status = wait_done(page, task)
    assert status.startswith("error: upload.png") and "\n" not in status
    assert ("decompression bomb" in status) if kind == "bomb" else ("not an image" in status)
    page.set_input_files(f"#{task}-image input[type=file]", str(CONCEPT / "context_0.png"))
    click_run(page, task)
    assert wait_done(page, task).startswith("done")


def test_two_browsers_see_only_their_own_jobs_and_cancel_only_their_own(browser, server):
    url, _ = server
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        pages.append(context.new_page())
        pages[-1].goto(url)
        pages[-1].wait_for_selector("#generate-prompt textarea")
    alice, bob = pages
    alice.fill("#generate-prompt textarea", "a yellow ring")
    set_number(alice, "#generate-steps", 300)
    click_run(alice, "generate")
    alice.wait_for_function(
        "() => /step \\d+ of 300/.test(document.querySelector('#generate-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )
    bob.click("#generate-cancel")  # Bob's Cancel must not stop Alice's job
    bob.wait_for_selector("[data-testid=toast-body]:has-text('nothing to cancel')")  # a toast: the status is the run's
    bob.fill("#generate-prompt textarea", "a purple cross")
    set_number(bob, "#generate-steps", 3)
    click_run(bob, "generate")  # queued behind Alice's job: one job on the device at a time
    alice.wait_for_function(
        "() => /step (2\\d|[3-9]\\d|\\d{3}) of 300/.test(document.querySelector('#generate-status textarea').value)",
        timeout=RUN_TIMEOUT_MS,
    )  # still running after Bob's Cancel
    alice.click("#generate-cancel")
    assert wait_done(alice, "generate").startswith("job cancelled")
    assert wait_done(bob, "generate").startswith("done")
    bob.wait_for_selector("#generate-gallery img")
    assert bob.locator("#generate-gallery img").count() >= 1
    assert alice.locator("#generate-gallery img").count() == 0  # Bob's image is not in Alice's gallery
    shot(bob, "two-sessions-bob")
    for each in pages:
        each.context.close()
