"""A local web page to restore your own photos and clips (Gradio).

    python app.py                        # the tiny default backbones on CPU; prints the local address
    python app.py --backbone wan         # Wan 2.1 (or flux, or a local diffusers folder)
    python app.py --backbone wan --tasks=path/to/wan_haze.pt,path/to/wan_rain.pt --port 8000

Each request passes its own settings (tasks, steps, T0, seed, the paper's method) to the very
functions sample.py calls (sample.prepare, sample.restore): same prompts, mixing, tiles and
windows. Nothing is fetched from the network, at start or in the page.
"""
import os

# before gradio is imported: no usage statistics or version checks sent home (the only calls
# gradio makes on its own; share, SSR, PWA and MCP are turned off in launch below)
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402

import gradio as gr  # noqa: E402
import torch  # noqa: E402

import backbones  # noqa: E402
import bridge  # noqa: E402
import extensions  # noqa: E402
import sample  # noqa: E402
from data import media  # noqa: E402
from plumbing import lowbits  # noqa: E402
from plumbing.cli import fail, parse  # noqa: E402

# ---------------------------------------------------------------- config (override: --key=value)
port = 7860           # the local port the page is served on
host = "127.0.0.1"    # the address to listen on (0.0.0.0: other machines on your network too)
backbone = ""         # default: tiny-flux for photos, tiny-wan for clips; or flux, wan, a local folder
tasks = ""            # the tasks offered, names or prompt files (default: the shipped prompts of the backbone)
device = ""           # cuda, cpu, ... (default: cuda when there is one)
max_pixels = media.MAX_PIXELS  # as in sample.py: an upload whose frames have more pixels is refused before it is read
max_gif_pixels = media.MAX_GIF_PIXELS  # as in sample.py: a GIF upload (read whole) of more frames x pixels is refused
low_memory = False    # as in sample.py: the frozen transformer in 4 bits, text encoders and VAE offloaded (a 12 GB GPU)

ROOT = os.path.dirname(os.path.abspath(__file__))
MAX_STEPS = 200
LOCK = threading.Lock()  # one backbone call at a time: its prompt hooks are shared
BACKBONES = {}           # photo/clip -> loaded backbone (one for both when --backbone names one)
PHOTO = dict(interactive=False, height=420, buttons=["download", "fullscreen"])  # no "share": it uploads to the hub
CLIP = dict(interactive=False, height=420)


def get_backbone(clip):
    key = clip and not backbone
    if key not in BACKBONES:
        BACKBONES[key] = backbones.load(backbone or None, video=clip, device=device or None,
                                       storage=lowbits.low_memory(low_memory), cpu_bf16=True)  # as sample.py
    return BACKBONES[key]


def task_choices():
    """(label, value) pairs for the task boxes: --tasks, or every shipped prompt of the backbones."""
    if tasks:
        names = [t.strip() for t in tasks.split(",") if t.strip()]
    else:
        names = set()
        for bb in BACKBONES.values():
            folder = os.path.join(sample.PROMPTS, bb.name)
            if os.path.isdir(folder):
                names |= {f[:-len(".safetensors")] for f in os.listdir(folder) if f.endswith(".safetensors")}
        names = sorted(names)
    if not names:
        fail(f"no prompts shipped for {', '.join(bb.name for bb in BACKBONES.values())}; "
             f"pass --tasks=path/to/prompt.safetensors (or the authors' .pt), several separated by commas")
    return [(os.path.splitext(os.path.basename(n))[0], n) for n in names]


def message(e, path):
    """One line, naming the upload by its own name rather than its place in gradio's cache, and
    the page's control where sample.prepare names a command-line flag."""
    text = " ".join(str(e).split()).replace(path, os.path.basename(path)) or type(e).__name__
    text = re.sub(r"/(?:[^/\s]+/)+", "", text)  # any other server path: its file name only
    return text.replace("pass --t0", "set T0 under \"advanced\"")


def show_input(path):
    """On upload: the input in the photo or the clip pair, last results cleared."""
    clip = bool(path) and media.file_kind(path) != "image"
    photo = path if path and not clip else None
    if photo:
        try:
            media.check_size(photo, max_pixels, how="python app.py --")
            media.read_image(photo)
        except media.InputError as e:
            gr.Warning(message(e, photo))
            photo = None
    return (gr.Row(visible=not clip), gr.Row(visible=clip), photo, None,
            path if clip else None, None, None)


def restore(file, task_names, steps, t0, seed, paper=False, progress=gr.Progress(track_tqdm=True)):
    """-> (restored photo, restored clip, the file to download): full size, PNG or mp4.
    progress: gradio follows sample.restore's tqdm bar (one tick per step) in the page."""
    if not file:
        raise gr.Error("upload a photo or a clip first")
    if not task_names:
        raise gr.Error("choose at least one task")
    # (the sliders' bounds and the task choices are checked by gradio, for the API too)
    out_dir, notes = None, len(media.NOTES)
    try:
        clip = media.file_kind(file) != "image"
        media.check_size(file, max_pixels, max_gif_pixels, "python app.py --")
        # a photo or a GIF read whole; any other clip a window at a time, as sample.py does
        x, fps = media.read_video(file) if media.file_kind(file) == "gif" else (None if clip else media.read_image(file), None)
        bb = get_backbone(clip)
        prompts, bridge_name, t0, decode = sample.prepare(bb, task_names, bool(paper), t0=float(t0))
        # a folder of its own per request: two people restoring "photo.png" never share a file
        out_dir = tempfile.mkdtemp(prefix="restored-", dir=gr.utils.get_upload_folder())
        stem = os.path.splitext(os.path.basename(file))[0]
        out = os.path.join(out_dir, stem + "_restored_" + "+".join(
            os.path.splitext(os.path.basename(n))[0] for n in task_names) + (".mp4" if clip else ".png"))
        run = dict(prompts=prompts, bridge_name=bridge_name, t0=t0, decode=decode, desc=os.path.basename(file),
                   steps=int(steps), seed=int(seed))
        with LOCK:
            if x is None:
                sample.restore_clip(bb, file, out, **run)
            else:
                y = sample.restore(bb, x, **run)
        if x is not None and clip:
            media.write_video(out, y, fps)
        elif x is not None:
            media.write_image(out, y)
        gr.Info(f"{os.path.basename(file)}: {bridge_name}, T0 {t0:g}, {int(steps)} steps"
                + (", the paper's method" if paper else "")
                + (f"; {extensions.UNCHANGED}" if x is not None and torch.equal(x, y) else "")
                # what the reader left out (a TIFF's other pages, a truncated clip): the upload's name only
                + "".join(f"; {n.replace(file, os.path.basename(file))}" for n in media.NOTES[notes:]))
    except (ValueError, RuntimeError, OSError, TypeError) as e:  # what fail.guard turns into one line
        if out_dir:  # the writer removed its temporary file; its folder goes too
            shutil.rmtree(out_dir, ignore_errors=True)
        raise gr.Error(message(e, file)) from None
    return (None, out, out) if clip else (out, None, out)


def build(choices):
    names = " / ".join(sorted({bb.name for bb in BACKBONES.values()}))
    with gr.Blocks(title="ypt-mini: restore", delete_cache=(3600, 24 * 3600)) as demo:
        gr.Markdown(f"## ypt-mini: restore a photo or a clip\nA frozen pre-trained backbone "
                    f"(**{names}**) plus a small learned prompt per degradation. Several tasks "
                    f"are mixed (their velocities averaged). Any size; the download is full size.")
        with gr.Row():
            with gr.Column(scale=1):
                upload = gr.File(label="your photo or clip (png, jpg, ..., mp4)", elem_id="upload")
                first = "haze" if "haze" in dict(choices).values() else choices[0][1]
                task_box = gr.CheckboxGroup(choices, value=[first], label="tasks (several are mixed)", elem_id="tasks")
                with gr.Accordion("advanced", open=False):
                    steps_box = gr.Slider(1, MAX_STEPS, value=bridge.STEPS, step=1, label="steps (backbone calls)")
                    t0_box = gr.Slider(0, 0.95, value=0, step=0.05, label="T0, the start noise (0: the prompt's own)")
                    seed_box = gr.Number(0, precision=0, label="seed (of the sampler's starting noise)")
                    paper_box = gr.Checkbox(False, label="the paper's method (no extension)", elem_id="paper")
                button = gr.Button("Restore", variant="primary", elem_id="restore")
                download = gr.File(label="download (full size)", interactive=False, elem_id="download")
            with gr.Column(scale=2):
                with gr.Row() as photo_row:  # side by side, shown at most 420 px high, full size behind
                    photo_in = gr.Image(label="input", type="filepath", **PHOTO, elem_id="photo-in")
                    photo_out = gr.Image(label="restored", type="filepath", **PHOTO, elem_id="photo-out")
                with gr.Row(visible=False) as clip_row:  # format=None: the mp4 as written, not re-encoded
                    clip_in = gr.Video(label="input", format=None, **CLIP, buttons=[], elem_id="clip-in")
                    clip_out = gr.Video(label="restored", format=None, **CLIP, buttons=["download"], elem_id="clip-out")
        examples = [[os.path.join(ROOT, "examples", f"{t}.png"), [t]] for t in ("haze", "rain", "snow", "lowlight")
                    if os.path.isfile(os.path.join(ROOT, "examples", f"{t}.png")) and t in dict(choices).values()]
        if examples:
            gr.Examples(examples, [upload, task_box], label="examples (degraded held-out photos)")
        upload.change(show_input, upload, [photo_row, clip_row, photo_in, photo_out, clip_in, clip_out, download],
                      api_name=False, concurrency_limit=None)  # cheap: never waits behind a restore
        # two requests at once, each with its own settings and output; LOCK takes their backbone calls in turn
        button.click(restore, [upload, task_box, steps_box, t0_box, seed_box, paper_box], [photo_out, clip_out, download],
                     api_name="restore", concurrency_limit=2)
    return demo


def main():
    with fail.guard():  # a backbone that cannot load, an unknown task, a port in use: one line, exit 2
        get_backbone(False)
        if not backbone:
            get_backbone(True)
        choices = task_choices()
        if tasks:  # checked now rather than at the first press of Restore
            for _, name in choices:  # one at a time: a mix of them all might not share a T0
                sample.prepare(get_backbone(False), [name])
        demo = build(choices)
        _, url, _ = demo.launch(server_name=host, server_port=port, share=False, ssr_mode=False, pwa=False,
                                mcp_server=False, quiet=True, prevent_thread_lock=True,
                                footer_links=["api", "settings"])
    print(f"ypt-mini app: open {url} (Ctrl+C to stop)", flush=True)
    try:
        demo.block_thread()
    except KeyboardInterrupt:
        demo.close()


if __name__ == "__main__":
    if parse(globals(), sys.argv[1:]):
        fail("app.py takes no positional arguments; upload files in the page")
    main()
