"""The web page (app.py), run as a user runs it: `python app.py --port P` on the shipped tiny
default, driven through gradio_client, then through a real headless Chromium (Debian's).

`YPT_SCREENSHOT=docs/app.png python -m pytest tests/test_app.py -k browser` retakes the
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

from conftest import ROOT, run

pytest.importorskip("gradio", reason="gradio is not installed: pip install -r requirements-app.txt")
from gradio_client import Client, handle_file  # noqa: E402

import data  # noqa: E402

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
    return tuple(data.read_image(path).shape[1:])


def test_help_and_bad_options():
    code, out, _ = run("app.py", "--help")
    assert code == 0 and "--port" in out and "--backbone" in out
    code, _, err = run("app.py", "--nope=1")
    assert code == 2 and err.strip().splitlines()[-1] == "error: unknown option --nope"


def test_restore_through_gradio_client(app, tmp_path):
    client = Client(app, verbose=False)
    photo, clip, download = client.predict(handle_file(EXAMPLE), ["haze"], 4, 0, 0, api_name="/restore")
    assert clip is None and photo.endswith(".png") and download.endswith("haze_restored_haze.png")
    assert size(photo) == size(download) == size(EXAMPLE)

    def error(path, tasks=("haze",), steps=2):
        with pytest.raises(Exception) as e:
            client.predict(handle_file(str(path)), list(tasks), steps, 0, 0, api_name="/restore")
        return str(e.value)

    (tmp_path / "notes.txt").write_text("not a photo\n")
    assert "notes.txt: not a readable image" in error(tmp_path / "notes.txt")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(500))
    assert "broken.mp4: not a readable video" in error(tmp_path / "broken.mp4")
    data.write_image(str(tmp_path / "tiny.png"), torch.rand(3, 4, 6))
    assert "tiny.png: 6x4 px is too small" in error(tmp_path / "tiny.png")
    assert "fog" in error(EXAMPLE, tasks=["fog"])
    assert "at least one task" in error(EXAMPLE, tasks=[])
    assert "minimum" in error(EXAMPLE, steps=0)

    # still serving; two requests at once, each with its own result (one is a 96 x 64 photo.png,
    # the other a 256 x 256 photo.png: same name, so a shared output file would be caught)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    data.write_image(str(tmp_path / "a" / "photo.png"), data.read_image(EXAMPLE)[:, :64, :96])
    shutil.copy(EXAMPLE, tmp_path / "b" / "photo.png")
    other = Client(app, verbose=False)
    jobs = [c.submit(handle_file(str(tmp_path / d / "photo.png")), ["haze", "rain"], 2, 0, 0, api_name="/restore")
            for c, d in ((client, "a"), (other, "b"))]
    (a, _, a_dl), (b, _, b_dl) = [j.result(timeout=300) for j in jobs]
    assert size(a) == size(a_dl) == (64, 96) and size(b) == size(b_dl) == (256, 256)
    assert os.path.basename(a_dl) == "photo_restored_haze+rain.png"

    # a clip goes to the video backbone and comes back as an mp4 of the same frames and size
    src = os.path.join(ROOT, "examples", "clip_rain.mp4")
    _, clip, download = client.predict(handle_file(src), ["rain"], 2, 0, 0, api_name="/restore")
    assert clip.endswith(".mp4") and download.endswith("clip_rain_restored_rain.mp4")
    assert data.read_video(clip)[0].shape == data.read_video(src)[0].shape
    offline()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


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
