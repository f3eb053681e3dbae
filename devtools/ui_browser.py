"""Drive the Airflow 3 UI in headless Chromium: log in, trigger a DAG from its form, follow the run.

Shared by ``tests/e2e/test_airflow_ui_browser.py`` and :mod:`devtools.ui_screenshots` (selenium is a
dev dependency: nothing in the package imports this module). Elements are found the way a person
finds them: by visible text, headings, labels (``<label for>``) and ARIA labels; ``data-testid``
only where the UI puts one on a badge that has no other name.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote, unquote, urlparse

from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

from include import storage

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
)
#: Run states the run page's badge shows once a run is over.
FINISHED = ("Success", "Failed")
T = TypeVar("T")


def missing_browser() -> str | None:
    """Why the browser cannot start here (chromium or chromedriver absent), or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    return f"{' and '.join(absent)} not installed (`make browser` installs them)" if absent else None


@contextmanager
def chromium(width: int = 1600, height: int = 1000) -> Iterator[WebDriver]:
    """A headless Chromium with a throw-away profile; quits and removes the profile on exit."""
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait_for(driver: WebDriver, condition: Callable[[WebDriver], T], timeout_s: float, what: str) -> T:
    """Poll ``condition`` until it returns something truthy; a re-rendered (stale) element just retries."""
    wait = WebDriverWait(driver, timeout_s, poll_frequency=0.5, ignored_exceptions=(StaleElementReferenceException,))
    return wait.until(condition, message=f"{what} (after {timeout_s:.0f} s at {driver.current_url})")


def _displayed(driver: WebDriver, xpath: str) -> WebElement | None:
    return next((e for e in driver.find_elements(By.XPATH, xpath) if e.is_displayed()), None)


def visible(driver: WebDriver, xpath: str, timeout_s: float = 60) -> WebElement:
    """The first displayed element matching ``xpath``."""
    return wait_for(driver, lambda d: _displayed(d, xpath), timeout_s, f"nothing visible matches {xpath}")


def click(driver: WebDriver, xpath: str, timeout_s: float = 60) -> None:
    """Scroll the visible, enabled element matching ``xpath`` into view and click it."""
    element = wait_for(
        driver, lambda d: (e := _displayed(d, xpath)) is not None and e.is_enabled() and e, timeout_s,
        f"no visible, enabled element matches {xpath}",
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
    element.click()


def field_input(driver: WebDriver, scope_xpath: str, label: str, timeout_s: float = 60) -> WebElement:
    """The input (or textarea) of the form field whose label reads ``label``, inside ``scope_xpath``.

    A field is a ``role=group`` holding its label and its control (the label's ``for`` does not
    always point at the control in Airflow's forms).
    """
    group = f"{scope_xpath}//label[normalize-space(text())='{label}']/ancestor::*[@role='group'][1]"
    return wait_for(
        driver, lambda d: d.find_elements(By.XPATH, f"{group}//*[self::input[not(@type='hidden')] or self::textarea]"),
        timeout_s, f"no form field labelled {label!r}",
    )[0]


def log_in(
    driver: WebDriver, url: str, username: str, password: str, screenshot: Path | None = None, timeout_s: float = 120
) -> None:
    """Sign in on the Simple auth manager's login page (where the UI sends a new visitor).

    ``screenshot``: where to save the filled-in page before signing in.
    """
    driver.get(f"{url}/")
    visible(driver, "//h2[normalize-space()='Sign into Airflow']", timeout_s)
    field_input(driver, "//form", "Username").send_keys(username)
    field_input(driver, "//form", "Password").send_keys(password)
    if screenshot is not None:
        save_screenshot(driver, screenshot)
    click(driver, "//form//button[normalize-space()='Sign in']")
    wait_for(driver, lambda d: "/auth/login" not in d.current_url, timeout_s, "still on the login page")


def open_dag(driver: WebDriver, url: str, dag_id: str, timeout_s: float = 120) -> None:
    """The DAG's page, once its heading and Trigger button are there."""
    driver.get(f"{url}/dags/{quote(dag_id)}")
    visible(driver, f"//h2[normalize-space()='{dag_id}']", timeout_s)
    visible(driver, "//button[@aria-label='Trigger Dag']", timeout_s)


#: The open trigger dialog of the DAG on the page.
TRIGGER_FORM = "//*[@role='dialog'][@data-state='open'][.//h2[starts-with(normalize-space(), 'Trigger Dag')]]"


def open_trigger_form(driver: WebDriver, timeout_s: float = 60) -> WebElement:
    """Press Trigger; returns the dialog once its Run Parameters are shown."""
    click(driver, "//button[@aria-label='Trigger Dag']", timeout_s)
    visible(driver, f"{TRIGGER_FORM}//button[normalize-space()='Run Parameters']", timeout_s)
    return visible(driver, TRIGGER_FORM, timeout_s)


def set_param(driver: WebDriver, title: str, value: str, timeout_s: float = 60) -> None:
    """Type ``value`` into the trigger form's text or number field for the param titled ``title``."""
    field = field_input(driver, TRIGGER_FORM, title, timeout_s)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field)
    field.click()
    field.send_keys(Keys.CONTROL, "a")
    field.send_keys(value, Keys.TAB)
    driver.execute_script("document.activeElement.blur()")  # no focus ring on the next field
    wait_for(driver, lambda d: field.get_attribute("value") == value, timeout_s, f"{title} does not show {value!r}")


def submit_trigger(driver: WebDriver, dag_id: str, timeout_s: float = 120) -> str:
    """Press the form's Trigger button; returns the new run's id from the run page the UI opens."""
    click(driver, f"{TRIGGER_FORM}//button[normalize-space()='Trigger']", timeout_s)
    prefix = f"/dags/{dag_id}/runs/"
    path = wait_for(
        driver, lambda d: (p := unquote(urlparse(d.current_url).path)).startswith(prefix) and p, timeout_s,
        "the trigger did not open the new run's page",
    )
    return path.removeprefix(prefix)


def open_run(driver: WebDriver, url: str, dag_id: str, run_id: str, timeout_s: float = 120) -> None:
    driver.get(f"{url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}")
    run_state(driver, run_id, timeout_s)


def run_state(driver: WebDriver, run_id: str, timeout_s: float = 60) -> str:
    """The state badge next to the run's heading on its page (``Running``, ``Success``...)."""
    heading = f"//h2[normalize-space()='{run_id}']"
    return visible(driver, f"{heading}/following-sibling::*[@data-testid='state-badge']", timeout_s).text.strip()


def wait_for_run_end(driver: WebDriver, run_id: str, timeout_s: float, reload_every_s: float = 60) -> str:
    """Watch the run page until its badge shows a finished state; returns it.

    The page refreshes itself while the run is active; it is also reloaded now and then in case a
    poll was missed on a busy machine.
    """
    deadline = time.monotonic() + timeout_s
    reloaded = time.monotonic()
    while time.monotonic() < deadline:
        try:
            if (state := run_state(driver, run_id, timeout_s=30)) in FINISHED:
                return state
        except WebDriverException:
            pass
        if time.monotonic() - reloaded > reload_every_s:
            driver.refresh()
            reloaded = time.monotonic()
        time.sleep(2)
    raise TimeoutError(f"run {run_id} not finished in the UI after {timeout_s:.0f} s")


def show_graph(driver: WebDriver, task_ids: list[str], direction: str | None = None, timeout_s: float = 60) -> None:
    """Switch the DAG view to its graph (laid out ``direction``, e.g. ``Top to Bottom``) with every
    task's node shown, the details panel collapsed and the graph fitted to the page's width."""
    click(driver, "//button[starts-with(@aria-label, 'Show Graph')]", timeout_s)
    if direction is not None:
        click(driver, "//button[@aria-label='Options']", timeout_s)
        click(driver, "//label[normalize-space()='Graph Direction']/following::button[@role='combobox'][1]", timeout_s)
        click(driver, f"//*[@role='option'][normalize-space()='{direction}']", timeout_s)
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)
    for task_id in task_ids:
        visible(driver, f"//*[@aria-roledescription='node'][@data-id='{task_id}']", timeout_s)
    click(driver, "//button[@aria-label='Collapse Details Panel']", timeout_s)
    time.sleep(1)  # the panel's resize
    click(driver, "//button[@aria-label='Fit View']", timeout_s)
    time.sleep(1)  # the fit-view animation


#: The box around the graph's nodes and edges, in CSS pixels of the viewport.
_GRAPH_BOX = """
const parts = document.querySelectorAll("[data-testid^='rf__node-'], [data-testid^='rf__edge-']");
const rects = Array.from(parts, e => e.getBoundingClientRect()).filter(r => r.width > 0 || r.height > 0);
return [Math.min(...rects.map(r => r.left)), Math.min(...rects.map(r => r.top)),
        Math.max(...rects.map(r => r.right)), Math.max(...rects.map(r => r.bottom))];
"""


@contextmanager
def screenshot_on_failure(driver: WebDriver, path: Path) -> Iterator[None]:
    """Save what the browser shows at ``path`` when the block raises (then re-raise)."""
    try:
        yield
    except BaseException:
        with suppress(WebDriverException):
            print(f"browser at {driver.current_url} on failure: {save_screenshot(driver, path)}")
        raise


def save_screenshot(
    driver: WebDriver, path: Path, element: WebElement | None = None, graph: bool = False, max_bytes: int | None = None
) -> Path:
    """A PNG at ``path`` of the viewport, of one element, or (``graph``) of the graph's nodes and edges.

    ``max_bytes``: reduce the colours (then the size) until the file is at most this big.
    """
    png = element.screenshot_as_png if element is not None else driver.get_screenshot_as_png()
    if graph:
        png = crop_png(png, driver.execute_script(_GRAPH_BOX), driver.execute_script("return window.devicePixelRatio"))
    if max_bytes is not None:
        png = shrink_png(png, max_bytes)
    storage.write_bytes(str(path), png)
    return path


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()


def crop_png(png: bytes, box: list[float], scale: float = 1.0, pad: int = 16) -> bytes:
    """``png`` cut to ``box`` (left, top, right, bottom in CSS pixels) plus ``pad`` pixels around it."""
    image = Image.open(io.BytesIO(png))
    left, top, right, bottom = (round(v * scale) for v in box)
    box_px = (max(0, left - pad), max(0, top - pad), min(image.width, right + pad), min(image.height, bottom + pad))
    return _png(image.crop(box_px))


def shrink_png(png: bytes, max_bytes: int) -> bytes:
    """``png`` with 256 colours, then scaled down by steps of 10 %, until it fits in ``max_bytes``."""
    if len(png) <= max_bytes:
        return png
    image = Image.open(io.BytesIO(png)).convert("RGB")
    while True:
        small = _png(image.quantize(256, dither=Image.Dither.NONE))
        if len(small) <= max_bytes:
            return small
        image = image.resize((int(image.width * 0.9), int(image.height * 0.9)), Image.Resampling.LANCZOS)


def open_task_details(
    driver: WebDriver, url: str, dag_id: str, run_id: str, task_id: str, timeout_s: float = 120
) -> None:
    """A task instance's Details tab in the Airflow UI, once its extra links (buttons at the top) are shown."""
    driver.get(f"{url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id)}/details")
    visible(driver, f"//h2[normalize-space()='{task_id}']", timeout_s)
    visible(driver, "//*[normalize-space()='Extra Links']", timeout_s)


def follow_extra_link(driver: WebDriver, name: str, timeout_s: float = 120) -> None:
    """Click the task instance's extra link ``name`` (a link on Airflow's own address opens in the same tab)."""
    click(driver, f"//a[normalize-space()='{name}']", timeout_s)


def open_mlflow_run(driver: WebDriver, run_url: str, run_name: str, metric: str, timeout_s: float = 120) -> None:
    """The MLflow UI's page of a run, in its model-training view with the assistant panel closed, on the run's
    metric charts once ``metric``'s is drawn.

    The view (GenAI or model training) is a setting the UI keeps in the browser: chosen on the first page,
    then the run's page is opened again.
    """
    driver.get(run_url)
    click(driver, "//*[normalize-space()='Model training']", timeout_s)
    driver.get(run_url)
    visible(driver, f"//h2[normalize-space()='{run_name}']", timeout_s)
    for close in driver.find_elements(By.XPATH, "//button[@aria-label='Close']"):
        if close.is_displayed():
            close.click()
    click(driver, "//button[@role='tab'][normalize-space()='Model metrics']", timeout_s)
    visible(driver, f"//*[normalize-space()='{metric}']", timeout_s)
    # a metric with several steps is drawn as a line, one with a single value as a bar
    charts = ".scatterlayer path, .barlayer path"
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, charts), timeout_s, "no chart drawn")
    time.sleep(2)  # the charts' drawing transition


def open_required_action(
    driver: WebDriver, url: str, dag_id: str, run_id: str, task_id: str, timeout_s: float = 120
) -> None:
    """The "Required Action" tab of a task waiting for a person (human-in-the-loop), once its form is shown."""
    driver.get(f"{url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}/tasks/{quote(task_id)}/required_actions")
    visible(driver, "//button[normalize-space()='Approve']", timeout_s)


def answer_required_action(
    driver: WebDriver, option: str, reason: str, screenshot: Path | None = None, max_bytes: int | None = None,
    timeout_s: float = 120,
) -> None:
    """Fill the form's Reason, (capture it,) press ``option`` (``Approve`` / ``Reject``), and wait until it is taken."""
    field = field_input(driver, "//body", "Reason", timeout_s)
    field.send_keys(reason)
    driver.execute_script("document.activeElement.blur()")
    if screenshot is not None:
        save_screenshot(driver, screenshot, max_bytes=max_bytes)
    click(driver, f"//button[normalize-space()='{option}']", timeout_s)
    wait_for(driver, lambda d: not _displayed(d, f"//button[normalize-space()='{option}'][not(@disabled)]"),
             timeout_s, "the answer was not taken")
