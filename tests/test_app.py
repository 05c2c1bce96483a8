"""The web page (app.py): its restore function called as the page calls it (in this process,
two requests at once), then, in the slow tier, `python app.py --port P` on the shipped tiny
default as a user runs it, driven through gradio_client and through a real headless Chromium
(Debian's).

`YPT_SCREENSHOT=docs/app.png python -m pytest -m slow tests/test_app.py -k browser` retakes the
README's screenshot with the browser test itself (after restoring examples/haze.png with haze)."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch

from conftest import ROOT, run_here, together

pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
import gradio as gr  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402

from data import media  # noqa: E402

EXAMPLE = os.path.join(ROOT, "examples", "haze.png")
NET = {}  # the app's log of network attempts
# Loaded into the app's process: every look-up or connection to anything but this machine is
# refused and written down, so the test knows that the app fetched nothing, not only that it worked.
NETWORK_GUARD = """
import os, socket
LOG, LOCAL = os.environ["YPT_NET_LOG"], ("127.", "::1", "localhost", "0.0.0.0")
def refuse(what):
    with open(LOG, "a") as f:
        f.write(f"{what}\\n")
    raise OSError(f"network closed by the test: {what}")
def guard(f, host_of):
    def call(*a, **k):
        host = host_of(a)
        if host and isinstance(host, (str, bytes)) and not str(host).startswith(LOCAL):
            refuse(f"{f.__name__} {host}")
        return f(*a, **k)
    return call
socket.getaddrinfo = guard(socket.getaddrinfo, lambda a: a[0])
for name in ("connect", "connect_ex"):
    setattr(socket.socket, name, guard(getattr(socket.socket, name), lambda a: isinstance(a[1], tuple) and a[1][0]))
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The running app, network closed: its local address, printed by app.py itself."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tmp = tmp_path_factory.mktemp("app")
    (tmp / "sitecustomize.py").write_text(NETWORK_GUARD)
    log, net = tmp / "stderr.txt", tmp / "network.txt"
    net.write_text("")
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp / "gradio"), PYTHONPATH=str(tmp), YPT_NET_LOG=str(net),
               PYTHONWARNINGS="ignore", OMP_NUM_THREADS="2")
    env.pop("YPT_DEBUG", None)
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "app.py", f"--port={port}"], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    timer = threading.Timer(240, proc.kill)  # a server that never says where it is fails the test
    timer.start()
    line = proc.stdout.readline()
    timer.cancel()
    if "http://127.0.0.1" not in line:
        proc.kill()
        pytest.fail(f"app.py did not print its address: {line!r}\n{log.read_text()[-3000:]}")
    NET["log"] = net
    yield line.split("open ")[1].split()[0]
    proc.terminate()
    proc.wait(30)


def offline():
    """Nothing the app did so far went beyond this machine."""
    tried = NET["log"].read_text().splitlines()
    assert not tried, f"the app tried the network: {tried[:5]}"


def size(path):
    return tuple(media.read_image(path).shape[1:])


def test_help_and_bad_options():
    code, out, _ = run_here("app.py", "--help")
    assert code == 0 and "--port" in out and "--backbone" in out
    code, _, err = run_here("app.py", "--nope=1")
    assert code == 2 and err.strip().splitlines() == ["error: unknown option --nope"]


# --------------------------------------------------- in this process: app.restore as the page calls it

# (tasks, steps, T0, seed, the paper's method): the page's inputs after the file
ALONE = [(["haze"], 5, 0, 0, False), (["haze", "snow"], 4, 0.3, 7, True)]


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """app.py imported with the shipped tiny image backbone loaded (as main() loads it), gradio's
    upload folder (where each request's output folder goes) in tmp, and a 96 x 64 crop of the example."""
    import app
    tmp = tmp_path_factory.mktemp("page")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp / "gradio"))
        os.makedirs(tmp / "gradio")  # in the page, the uploads made it
        mp.setattr(app, "BACKBONES", {})
        app.get_backbone(False)
        photo = tmp / "photo.png"
        media.write_image(str(photo), media.read_image(EXAMPLE)[:, 96:160, 64:160])
        yield app, str(photo)


def call(app, photo, settings):
    """The page's restore: (restored photo, restored clip, download) with the download's bytes."""
    got = app.restore(photo, *settings)
    return got, open(got[2], "rb").read()


def test_two_requests_at_once_get_what_each_gets_alone(page):
    # the page takes two restores at once (concurrency_limit=2), each with its own settings (one
    # the paper's method) and its own output file: sent together, each output is bit for bit the
    # one it gives when sent alone
    app, photo = page
    alone = [call(app, photo, s) for s in ALONE]
    for ((out, clip, download), _), (tasks, *_) in zip(alone, ALONE):
        assert clip is None and out == download and size(out) == size(photo)
        assert os.path.basename(out) == f"photo_restored_{'+'.join(tasks)}.png"
        assert not torch.equal(media.read_image(out), media.read_image(photo))  # a change, not the input back
    assert alone[0][1] != alone[1][1]  # the settings matter
    for _ in range(2):
        got = [None, None]

        def request(i):
            got[i] = call(app, photo, ALONE[i])
        errors = together(request)
        assert not errors, errors
        assert [data for _, data in got] == [data for _, data in alone]
        assert len({out for (out, _, _), _ in got + alone}) == 4  # every request wrote a file of its own


def test_bad_requests_get_one_line_naming_the_upload(page, tmp_path):
    app, photo = page

    def error(path, tasks=("haze",), steps=2, t0=0, paper=False):
        with pytest.raises(gr.Error) as e:
            app.restore(path and str(path), list(tasks), steps, t0, 0, paper)
        msg = e.value.message
        assert "\n" not in msg and str(tmp_path) not in msg  # one line, the upload's own name
        return msg

    (tmp_path / "notes.txt").write_text("not a photo\n")
    assert "notes.txt: not a readable image" in error(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    assert "broken.mp4: not a readable video" in error(tmp_path / "broken.mp4")
    media.write_image(str(tmp_path / "tiny.png"), torch.rand(3, 4, 6))
    assert "tiny.png: 6x4 px is too small" in error(tmp_path / "tiny.png")
    assert "unknown task 'fog'" in error(photo, tasks=["fog"])
    assert "at least one task" in error(photo, tasks=[])
    assert "upload a photo or a clip first" in error(None)
    # the shipped haze and rain were trained at different T0: the mix asks for one
    mixed = error(photo, tasks=["haze", "rain"])
    assert "different T0" in mixed and 'set T0 under "advanced"' in mixed and "--t0" not in mixed


def test_an_upload_above_max_pixels_is_refused_before_it_is_read(page, monkeypatch):
    app, photo = page  # 96 x 64 px
    monkeypatch.setattr(app, "max_pixels", 96 * 64 - 1)
    with pytest.raises(gr.Error) as e:
        app.restore(photo, ["haze"], 2, 0, 0, False)
    assert e.value.message.startswith("photo.png: 96x64 px") and e.value.message.endswith(
        "to restore it anyway: python app.py --max_pixels=6144")
    monkeypatch.setattr(media, "read_image", None)  # never read: refused from the header
    assert app.show_input(photo)[2] is None  # shown as a warning, the photo not taken


def test_what_the_reader_left_out_is_said_on_the_page(page, tmp_path, monkeypatch):
    from PIL import Image
    app, photo = page
    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    pages = [Image.open(photo).convert("RGB"), Image.new("RGB", (96, 64))]
    pages[0].save(tmp_path / "two.tif", save_all=True, append_images=pages[1:])
    app.restore(str(tmp_path / "two.tif"), ["haze"], 2, 0, 0, False)
    assert len(said) == 1 and "two.tif: 2 pages (or frames); only the first was read" in said[0]
    assert str(tmp_path) not in said[0]  # the upload's name, never a server path


# ------------------------------------------------------- slow: python app.py, as a user runs it

@pytest.mark.slow
def test_restore_through_gradio_client(app, tmp_path):
    client = Client(app, verbose=False)
    photo, clip, download = client.predict(handle_file(EXAMPLE), ["haze"], 4, 0, 0, False, api_name="/restore")
    assert clip is None and photo.endswith(".png") and download.endswith("haze_restored_haze.png")
    assert size(photo) == size(download) == size(EXAMPLE)

    def error(path, tasks=("haze",), steps=2):
        with pytest.raises(Exception) as e:
            client.predict(handle_file(str(path)), list(tasks), steps, 0, 0, False, api_name="/restore")
        return str(e.value)

    (tmp_path / "notes.txt").write_text("not a photo\n")
    assert "notes.txt: not a readable image" in error(tmp_path / "notes.txt")
    assert "fog" in error(EXAMPLE, tasks=["fog"])
    assert "minimum" in error(EXAMPLE, steps=0)  # the sliders' bounds: gradio checks them

    # still serving; two requests at once with different settings (one the paper's method), each
    # with its own result, bit for bit what it gives alone (one is a 96 x 64 photo.png, the other
    # a 256 x 256 photo.png: same name, so a shared output file would be caught)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    media.write_image(str(tmp_path / "a" / "photo.png"), media.read_image(EXAMPLE)[:, :64, :96])
    shutil.copy(EXAMPLE, tmp_path / "b" / "photo.png")
    asks = [(str(tmp_path / "a" / "photo.png"), ["haze", "rain"], 3, 0.3, 0, False),
            (str(tmp_path / "b" / "photo.png"), ["haze", "snow"], 2, 0.3, 5, True)]
    alone = [client.predict(handle_file(f), *rest, api_name="/restore") for f, *rest in asks]
    other = Client(app, verbose=False)
    jobs = [c.submit(handle_file(f), *rest, api_name="/restore") for c, (f, *rest) in zip((client, other), asks)]
    (a, _, a_dl), (b, _, b_dl) = [j.result(timeout=300) for j in jobs]
    assert size(a) == size(a_dl) == (64, 96) and size(b) == size(b_dl) == (256, 256)
    assert os.path.basename(a_dl) == "photo_restored_haze+rain.png"
    for (_, _, dl), together in zip(alone, (a_dl, b_dl)):
        assert open(dl, "rb").read() == open(together, "rb").read()

    # a clip goes to the video backbone and comes back as an mp4 of the same frames and size
    src = os.path.join(ROOT, "examples", "clip_rain.mp4")
    _, clip, download = client.predict(handle_file(src), ["rain"], 2, 0, 0, False, api_name="/restore")
    assert clip.endswith(".mp4") and download.endswith("clip_rain_restored_rain.mp4")
    assert media.read_video(clip)[0].shape == media.read_video(src)[0].shape
    offline()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on this machine (apt-get install chromium)")
def test_browser_upload_restore(app, tmp_path):
    """A person's path: open the page, upload an example, press Restore, see the restored photo.
    Every request the page makes is recorded; anything not to the app itself is refused."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: "
                                   "pip install -r requirements-app.txt")
    outside, failed = [], []

    def only_local(route):
        if route.request.url.startswith((app.rstrip("/"), "data:", "blob:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    with sync_api.sync_playwright() as pw:
        # a fresh profile, the system browser: nothing downloaded, nothing remembered
        ctx = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                    headless=True, args=CHROMIUM_ARGS,
                                                    viewport={"width": 1280, "height": 640})
        try:
            ctx.route("**/*", only_local)
            page = ctx.new_page()
            page.on("response", lambda r: r.status >= 400 and failed.append(f"{r.status} {r.url}"))
            page.goto(app)
            page.locator("#upload input[type=file]").set_input_files(EXAMPLE)
            page.locator("#photo-in img").wait_for(timeout=60_000)  # the upload is shown
            page.locator("#restore").click()
            out = page.locator("#photo-out img")
            out.wait_for(timeout=180_000)
            page.wait_for_function("document.querySelector('#photo-out img').naturalWidth > 0")
            assert out.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [256, 256]
            assert page.locator("#download a").first.get_attribute("href").endswith("haze_restored_haze.png")
            page.mouse.move(0, 0)
            time.sleep(0.5)  # let the progress overlay fade
            shot = os.path.join(ROOT, os.environ.get("YPT_SCREENSHOT") or str(tmp_path / "app.png"))
            page.screenshot(path=shot)
        finally:
            ctx.close()
    assert not outside, f"the page asked for things outside the app: {outside[:5]}"
    assert not failed, f"the page could not load: {failed[:5]}"  # fonts and scripts are all served locally
    offline()
