"""The HTML report in a real browser: headless Chromium, software rendering.

The report is built from the tiny four-class workload (checkpoints included,
so every interactive view is there) and opened from disk, offline, in
headless Chromium driven over the DevTools protocol. The protocol runs on
``--remote-debugging-pipe`` (NUL-terminated JSON on file descriptors 3 and
4), so neither a driver nor a websocket package is needed. The test checks
that every ``data-skvmf-view="3d"`` element was drawn by plotly into a canvas
(WebGL through SwiftShader) and an svg, that the sliders work, that the page
logs no JavaScript error, and that a screenshot is not blank.

It skips only when no Chromium is installed (``.ci/run`` installs Debian's
``chromium``; set ``SKVMF_CHROMIUM`` to use another binary).
"""

import base64
import fcntl
import io
import json
import os
import select
import shutil
import subprocess
import time
import warnings

import numpy as np
import pytest
from _helpers import four_class_workload
from PIL import Image
from sklearn.exceptions import ConvergenceWarning

import skvmf
from skvmf.report import write_report

_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_VIEWS = {
    "plot3d-sample_space",
    "plot3d-layer_regions",
    "plot3d-sample_evolution",
    "plot3d-adversarial_regions",
}
_WIDTH = 1400  # the page must fit this viewport: nothing sticks out
LAYERS = ["conv_33", "conv_53"]


def _find_browser():
    path = os.environ.get("SKVMF_CHROMIUM")
    if path:
        return path
    for name in _NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


class _Browser:
    """Headless Chromium with one page, spoken to over the DevTools pipe."""

    # generous: a loaded CI machine parses plotly's 5 MB bundle slowly
    def __init__(self, executable, profile, timeout=120.0):
        self.executable, self.profile, self.timeout = executable, profile, timeout
        self.events, self._buffer, self._next_id = [], b"", 0
        self.session = None

    def __enter__(self):
        to_read, self._to_write = os.pipe()  # we write, the browser reads fd 3
        self._from_read, from_write = os.pipe()  # the browser writes fd 4
        # move the child's ends above 9 first so that placing them on 3 and 4
        # cannot overwrite one with the other
        high_read = fcntl.fcntl(to_read, fcntl.F_DUPFD, 10)
        high_write = fcntl.fcntl(from_write, fcntl.F_DUPFD, 10)

        def place_fds():
            os.dup2(high_read, 3)
            os.dup2(high_write, 4)

        self._stderr = open(os.path.join(self.profile, "stderr.log"), "wb")  # noqa: SIM115
        flags = [
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--hide-scrollbars",
            "--mute-audio",
            "--window-size=1280,1000",
            # WebGL without a GPU: SwiftShader, Chromium's software renderer
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "about:blank",
        ]
        self.proc = subprocess.Popen(
            [self.executable, *flags],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            preexec_fn=place_fds,
            pass_fds=(3, 4),
        )
        for fd in (to_read, from_write, high_read, high_write):
            os.close(fd)
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            pages = [t["targetId"] for t in targets if t["type"] == "page"]
            target = (
                pages[0]
                if pages
                else self.call("Target.createTarget", {"url": "about:blank"})[
                    "targetId"
                ]
            )
            self.session = self.call(
                "Target.attachToTarget", {"targetId": target, "flatten": True}
            )["sessionId"]
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait(10)
        os.close(self._to_write)
        os.close(self._from_read)
        self._stderr.close()

    def stderr(self) -> str:
        self._stderr.flush()
        with open(os.path.join(self.profile, "stderr.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def _receive(self, deadline, waiting_for):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(
                    f"no {waiting_for} from Chromium; its log:\n" + self.stderr()
                )
            ready, _, _ = select.select([self._from_read], [], [], left)
            if ready:
                chunk = os.read(self._from_read, 1 << 20)
                if not chunk:
                    raise RuntimeError("Chromium closed the pipe:\n" + self.stderr())
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method, params=None, *, page=True):
        """Send one command and return its result; events met on the way are
        kept in ``events``."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if page and self.session:
            message["sessionId"] = self.session
        os.write(self._to_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            answer = self._receive(deadline, f"answer to {method}")
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]
            self.events.append(answer)

    def wait_event(self, method, timeout):
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._receive(deadline, method))

    def evaluate(self, expression):
        result = self.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    def errors(self):
        """Every JavaScript error the page reported: uncaught exceptions,
        console.error and browser log entries of level error."""
        out = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append(
                    details.get("exception", {}).get("description") or details["text"]
                )
            elif method == "Runtime.consoleAPICalled" and params["type"] in (
                "error",
                "assert",
            ):
                out.append(" ".join(str(a.get("value")) for a in params["args"]))
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                out.append(params["entry"]["text"])
        return out


# what every interactive view holds once plotly has drawn it
_VIEW_STATE = """
Array.from(document.querySelectorAll('[data-skvmf-view="3d"]')).map(el => {
  const canvas = el.querySelector('canvas');
  const sliders = (el.layout && el.layout.sliders) || [];
  return {
    id: el.id,
    drawn: !!el._fullLayout,
    canvas: !!canvas && canvas.width > 0 && canvas.height > 0,
    svg: el.querySelectorAll('svg').length,
    no_webgl: el.textContent.includes('WebGL is not supported'),
    traces: (el.data || []).length,
    steps: sliders.length ? sliders[0].steps.length : 0,
    slider_drawn: !!el.querySelector('.slider-container'),
    height: el.getBoundingClientRect().height,
  };
})
"""


def _view(view_id):
    return f"document.getElementById({json.dumps(view_id)})"


def _box(browser, view_id, part=""):
    """Viewport box (x, y, width, height) of a view or of ``part`` in it."""
    target = _view(view_id) + (f".querySelector({json.dumps(part)})" if part else "")
    return browser.evaluate(
        f"(() => {{ const r = {target}.getBoundingClientRect(); "
        "return [r.x, r.y, r.width, r.height]; })()"
    )


def _screenshot(browser, view_id):
    """PNG of one view (scrolled into sight) and its viewport box."""
    browser.evaluate(f"{_view(view_id)}.scrollIntoView()")
    time.sleep(0.5)
    x, y, w, h = _box(browser, view_id)
    scroll = browser.evaluate("[window.scrollX, window.scrollY]")
    # the clip is in page coordinates: the box plus the scroll offset
    clip = {"x": x + scroll[0], "y": y + scroll[1], "width": w, "height": h, "scale": 1}
    shot = browser.call("Page.captureScreenshot", {"format": "png", "clip": clip})
    return base64.b64decode(shot["data"]), (x, y)


def _mouse(browser, kind, x, y):
    event = {"type": kind, "x": float(x), "y": float(y)}
    if kind != "mouseMoved":  # a move with a button down would drag (turn)
        event.update(button="left", clickCount=1)
    browser.call("Input.dispatchMouseEvent", event)


def _slide_to_last(browser, view_id):
    """Click the end of the view's slider rail as a reader would; return the
    slider's active step and the title once plotly has applied it."""
    state = (
        f"(() => {{ const el = {_view(view_id)}; return "
        "[el._fullLayout.sliders[0].active, el._fullLayout.title.text]; })()"
    )
    first = browser.evaluate(state)[1]
    browser.evaluate(f"{_view(view_id)}.scrollIntoView()")
    time.sleep(0.3)
    x, y, w, h = _box(browser, view_id, ".slider-rail-rect")
    _mouse(browser, "mousePressed", x + w - 1, y + h / 2)
    _mouse(browser, "mouseReleased", x + w - 1, y + h / 2)
    deadline = time.monotonic() + 10
    while True:  # the step's update lands after the slider moves
        active, title = browser.evaluate(state)
        if title != first or time.monotonic() > deadline:
            return active, title
        time.sleep(0.2)


def _hover(browser, view_id, png, origin, tries=80):
    """Move the mouse over coloured pixels of the view's screenshot (points
    and direction lines) until plotly shows a hover label with an image;
    return its text (None if none appeared)."""
    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    height, width = rgb.shape[:2]
    ys, xs = np.nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 60)
    # inside the scene: away from the title, legend and slider
    inside = (xs > 0.1 * width) & (xs < 0.75 * width) & (ys > 60) & (ys < 0.75 * height)
    candidates = np.flatnonzero(inside)
    order = np.random.default_rng(0).permutation(candidates)[:tries]
    label = (
        f"(() => {{ const n = {_view(view_id)}.querySelector('.hovertext'); "
        "return n ? n.textContent : null; })()"
    )
    for k in order:
        _mouse(browser, "mouseMoved", origin[0] + xs[k], origin[1] + ys[k])
        for _ in range(3):  # WebGL picking answers on a later frame
            time.sleep(0.1)
            text = browser.evaluate(label)
            if text and text.startswith("image"):
                return text
    return None


def _hover_point(browser, view_id, png, origin, tries=80):
    """Like :func:`_hover`, but return the viewport position of the point
    that showed a hover label (None if none did)."""
    with Image.open(io.BytesIO(png)) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int)
    height, width = rgb.shape[:2]
    ys, xs = np.nonzero(rgb.max(axis=2) - rgb.min(axis=2) > 60)
    inside = (xs > 0.1 * width) & (xs < 0.75 * width) & (ys > 60) & (ys < 0.75 * height)
    order = np.random.default_rng(1).permutation(np.flatnonzero(inside))[:tries]
    label = (
        f"(() => {{ const n = {_view(view_id)}.querySelector('.hovertext'); "
        "return n ? n.textContent : null; })()"
    )
    for k in order:
        x, y = origin[0] + xs[k], origin[1] + ys[k]
        _mouse(browser, "mouseMoved", x, y)
        for _ in range(3):
            time.sleep(0.1)
            text = browser.evaluate(label)
            if text and text.startswith("image"):
                return x, y
    return None


# what the panel beside a view shows: its state and text, how much of its
# canvas is drawn (share of opaque pixels, distinct colours), and, for a
# region, the share of the outline's expected pixels (the inner edge of the
# region's cell, from the page's grid) that are drawn in the outline colour
_PANEL_STATE = """
((id) => {
  const panel = document.querySelector(`[data-skvmf-thumb-for="${id}"]`);
  if (!panel) return null;
  const canvas = panel.querySelector('canvas');
  const W = canvas.width, H = canvas.height;
  const px = canvas.getContext('2d').getImageData(0, 0, W, H).data;
  let drawn = 0;
  const levels = new Set();
  for (let i = 0; i < px.length; i += 4) {
    if (px[i + 3] > 0) drawn++;
    levels.add(px[i] * 65536 + px[i + 1] * 256 + px[i + 2]);
  }
  let outline = null;
  const region = panel.dataset.region;
  if (region) {
    const grid = JSON.parse(document.getElementById('skvmf-points').textContent).grid;
    const r = Math.floor(+region / grid[1]), c = +region % grid[1];
    const x0 = Math.round(c * W / grid[1]), x1 = Math.round((c + 1) * W / grid[1]) - 1;
    const y0 = Math.round(r * H / grid[0]), y1 = Math.round((r + 1) * H / grid[0]) - 1;
    const edge = [];
    for (let x = x0 + 3; x <= x1 - 3; x++) edge.push([x, y0], [x, y1]);
    for (let y = y0 + 3; y <= y1 - 3; y++) edge.push([x0, y], [x1, y]);
    const yellow = edge.filter(([x, y]) => {
      const i = 4 * (y * W + x);
      return px[i] > 200 && px[i + 1] > 180 && px[i + 2] < 60;
    });
    outline = yellow.length / edge.length;
  }
  const box = panel.getBoundingClientRect();
  return {shown: panel.dataset.shown || null, image: panel.dataset.image || null,
          region: region || null, text: panel.querySelector('p').textContent,
          drawn: drawn / (W * H), levels: levels.size, outline,
          box: [box.x, box.y, box.width, box.height]};
})
"""


# what sticks out of the page: the document's width against the viewport,
# and every table, figure, image, view and panel whose box passes an edge
# (a wide table scrolls inside its own box, which is what is measured)
_OVERFLOW = """
(() => {
  const width = document.documentElement.clientWidth;
  const out = [];
  document.querySelectorAll(
    'table, figure, img, canvas, [data-skvmf-view], aside, section, nav, header'
  ).forEach(el => {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.left < -0.5 || r.right > width + 0.5)) {
      out.push(`${el.tagName.toLowerCase()}#${el.id || ''} ` +
               `[${Math.round(r.left)}, ${Math.round(r.right)}]`);
    }
  });
  return {document: document.documentElement.scrollWidth, viewport: width,
          outside: out,
          scrolling: Array.from(document.querySelectorAll('table')).filter(
            t => t.scrollWidth > t.clientWidth + 1).length};
})()
"""


# the panel's drawing read back at the centre of each thumbnail pixel
_PANEL_PIXELS = """
((id) => {
  const panel = document.querySelector(`[data-skvmf-thumb-for="${id}"]`);
  const canvas = panel.querySelector('canvas');
  const [h, w] = JSON.parse(document.getElementById('skvmf-points').textContent).size;
  const s = Math.min(canvas.width / w, canvas.height / h);
  const x0 = (canvas.width - w * s) / 2, y0 = (canvas.height - h * s) / 2;
  const ctx = canvas.getContext('2d'), out = [];
  for (let y = 0; y < h; y++) {
    const row = [];
    for (let x = 0; x < w; x++) {
      const px = ctx.getImageData(Math.floor(x0 + (x + 0.5) * s),
                                  Math.floor(y0 + (y + 0.5) * s), 1, 1).data;
      row.push([px[0], px[1], px[2]]);
    }
    out.push(row);
  }
  return out;
})
"""


def _click_point(browser, view_id, tries=2):
    """Click a point of a view (one that shows a hover label) and return
    the panel beside it once it shows that point's image."""
    for _ in range(tries):
        png, origin = _screenshot(browser, view_id)
        at = _hover_point(browser, view_id, png, origin)
        if at is None:
            continue
        # plotly's 3-D scene takes a click from the pick of a frame drawn
        # while the button is down: hold it for a few frames
        press = {"type": "mousePressed", "x": float(at[0]), "y": float(at[1])}
        press.update(button="left", buttons=1, clickCount=1)
        browser.call("Input.dispatchMouseEvent", press)
        time.sleep(0.4)
        _mouse(browser, "mouseReleased", *at)
        deadline = time.monotonic() + 10
        state = f"({_PANEL_STATE})({json.dumps(view_id)})"
        while True:
            panel = browser.evaluate(state)
            if (panel and panel["shown"]) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if panel and panel["shown"] == "image":
            panel["pixels"] = browser.evaluate(
                f"({_PANEL_PIXELS})({json.dumps(view_id)})"
            )
            panel["view"] = _box(browser, view_id)
            return panel
    return browser.evaluate(f"({_PANEL_STATE})({json.dumps(view_id)})")


def _inspect(browser, index):
    """Open ``index``; return the views' state, what the sliders and the
    mouse did, the JavaScript errors and a PNG of the first view."""
    for domain in ("Page", "Runtime", "Log"):
        browser.call(f"{domain}.enable")
    browser.call(
        "Emulation.setDeviceMetricsOverride",
        {"width": _WIDTH, "height": 1000, "deviceScaleFactor": 1, "mobile": False},
    )
    browser.call("Page.navigate", {"url": index.as_uri()})
    browser.wait_event("Page.loadEventFired", timeout=browser.timeout)
    deadline = time.monotonic() + 60
    while True:  # plotly draws the WebGL scenes asynchronously
        views = browser.evaluate(_VIEW_STATE)
        done = all(v["drawn"] and v["canvas"] for v in views)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    overflow = browser.evaluate(_OVERFLOW)
    clicks = {"plot3d-sample_space": _click_point(browser, "plot3d-sample_space")}
    png, origin = _screenshot(browser, "plot3d-sample_space")
    hover = {"plot3d-sample_space": _hover(browser, "plot3d-sample_space", png, origin)}
    slides = {
        v["id"]: _slide_to_last(browser, v["id"]) for v in views if v["steps"] > 1
    }
    # the deepest layer, where the knowledge points are
    shot, at = _screenshot(browser, "plot3d-layer_regions")
    hover["plot3d-layer_regions"] = _hover(browser, "plot3d-layer_regions", shot, at)
    for view_id in ("plot3d-layer_regions", "plot3d-adversarial_regions"):
        clicks[view_id] = _click_point(browser, view_id)
    time.sleep(0.2)  # let late console messages arrive with the next call
    browser.evaluate("1")
    return {
        "views": views,
        "slides": slides,
        "hover": hover,
        "clicks": clicks,
        "overflow": overflow,
        "errors": browser.errors(),
        "png": png,
    }


@pytest.fixture(scope="module")
def browser_executable():
    exe = _find_browser()
    if exe is None:
        pytest.skip(
            "no Chromium found (looked for SKVMF_CHROMIUM and "
            f"{', '.join(_NAMES)} on PATH); on Debian: apt-get install chromium"
        )
    return exe


@pytest.fixture(scope="module")
def report_index(tmp_path_factory):
    ckpt = tmp_path_factory.mktemp("ckpt")
    model, X, y = four_class_workload(ckpt, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tiny fits
        result = skvmf.analyze(
            model,
            X.numpy(),
            y.numpy(),
            layers=LAYERS,
            checkpoints=ckpt,
            attack={"n_steps": 2},
            classes=["a", "<b>&", 'c"', "d"],
            n_repeats=1,
            n_bootstrap=100,
            random_state=0,
            aligner_params={"max_epochs": 2, "weight_steps": 2, "n_candidates": 10},
            projector_params={"max_iter": 200},
        )
    # the page embeds thumbnails of the images the result kept: keep every
    # one here, so that whichever point the test clicks has its picture
    result.display_index = np.arange(len(X))
    result.display_images = X.numpy()
    return write_report(result, tmp_path_factory.mktemp("report"), dpi=50), X.numpy()


@pytest.mark.slow
def test_report_renders_in_headless_chromium(
    browser_executable, report_index, tmp_path
):
    report_index, images = report_index
    with _Browser(browser_executable, str(tmp_path)) as browser:
        seen = _inspect(browser, report_index)
        log = browser.stderr()
    views = {v["id"]: v for v in seen["views"]}
    assert set(views) == _VIEWS, seen["views"]
    for name, view in views.items():
        assert not view["no_webgl"], f"{name}: no WebGL\n{log}"
        assert view["drawn"], f"{name} was not drawn by plotly\n{log}"
        # the 3-D scene is a WebGL canvas; title, legend and slider are svg
        assert view["canvas"] and view["svg"] > 0, (name, view)
        assert view["height"] > 300, (name, view)
    assert views["plot3d-layer_regions"]["steps"] == len(LAYERS)
    assert views["plot3d-sample_evolution"]["steps"] == 2  # iterations 0 and 9
    for name in ("plot3d-layer_regions", "plot3d-sample_evolution"):
        assert views[name]["slider_drawn"], name
    # a click on the end of the rail shows the last layer / checkpoint
    slides = seen["slides"]
    assert slides["plot3d-layer_regions"][0] == len(LAYERS) - 1, slides
    assert slides["plot3d-layer_regions"][1].endswith(LAYERS[-1]), slides
    assert slides["plot3d-sample_evolution"][0] == 1, slides
    assert slides["plot3d-sample_evolution"][1].endswith("iteration 9"), slides
    # hovering a point tells what it is
    text = seen["hover"]["plot3d-sample_space"]
    assert text is not None, "no hover label over the sample space"
    for field in ("image", "class:", "predicted:", "strength ||g||:"):
        assert field in text, text
    text = seen["hover"]["plot3d-layer_regions"]
    assert text is not None, "no hover label over the regions"
    for field in ("image", "region", "class:", "predicted:", "strength ||h||:"):
        assert field in text, text
    assert "knowledge point: " in text, text
    _check_clicks(seen["clicks"], images)
    # nothing sticks out of a 1,400 px window: the page is no wider, and
    # every table, figure and panel lies inside it
    overflow = seen["overflow"]
    assert overflow["viewport"] == _WIDTH, overflow
    assert overflow["document"] <= overflow["viewport"], overflow
    assert overflow["outside"] == [], overflow
    assert seen["errors"] == [], seen["errors"]
    # the first view's screenshot is a drawing, not a blank box
    with Image.open(io.BytesIO(seen["png"])) as im:
        rgb = np.asarray(im.convert("RGB")).reshape(-1, 3).astype(int)
    assert len(rgb) > 300 * 300
    not_white = (rgb != 255).any(axis=1).mean()
    colours = len(np.unique(rgb, axis=0))
    assert not_white > 0.01 and colours > 50, (not_white, colours)
    # the class colours of the points and directions (tab10) are there
    saturated = (rgb.max(axis=1) - rgb.min(axis=1) > 80).sum()
    assert saturated > 100, saturated


def _check_clicks(clicks, images):
    """A clicked point's image is shown in the panel beside its view: the
    very pixels of that image (min-max scaled, as the page embeds it), and
    for a region its cell outlined."""
    for view_id, panel in clicks.items():
        assert panel is not None and panel["shown"] == "image", (view_id, panel)
        row = int(panel["image"])
        image = images[row]
        lo, hi = image.min(), image.max()
        expected = np.round((image - lo) / (hi - lo) * 255).transpose(1, 2, 0)
        shown = np.asarray(panel["pixels"], dtype=float)
        assert shown.shape == expected.shape, (view_id, shown.shape)
        assert np.abs(shown - expected).max() <= 2, view_id
        assert panel["drawn"] > 0.9 and panel["levels"] > 50, (view_id, panel)
        assert panel["text"].startswith("image "), panel["text"]
        # beside the view, on its right, level with it
        vx, vy, vw, vh = panel["view"]
        px, py, pw, ph = panel["box"]
        assert px >= vx + 0.5 * vw and px + pw <= _WIDTH, (view_id, panel)
        assert py < vy + vh and py + ph > vy, (view_id, panel)
        if view_id == "plot3d-sample_space":
            assert panel["region"] is None and panel["outline"] is None, panel
            continue
        # a region: its cell of the 8 x 8 grid drawn round in the outline colour
        assert 0 <= int(panel["region"]) < 64, panel
        assert panel["outline"] > 0.9, panel
        assert "region (" in panel["text"] and f"at {LAYERS[-1]}" in panel["text"]
    text = clicks["plot3d-adversarial_regions"]["text"]
    assert "the attack fooled the image: " in text, text
