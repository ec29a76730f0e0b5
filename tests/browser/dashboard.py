#!/usr/bin/env python3
"""Drives the jobhost web dashboard (/ui/) in headless Chromium with Selenium.

Run by the Rust end-to-end test, which starts a server with the `probe` component
installed and sets:

    JOBHOST_URL   the server, e.g. http://127.0.0.1:12345
    TOKEN_A       a non-admin user's token (read + submit)
    TOKEN_B       another non-admin user's token (read + submit)
    SCREENSHOT    where to save a screenshot (.png)
    DOWNLOADS     an empty directory for the browser's downloads

Each step waits explicitly (never a fixed sleep) and prints `ok: …` once it passed.
On failure it saves the screenshot, prints the page's text and the browser's log,
and exits 1 with the reason.
"""

import json
import os
import pathlib
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

MISSING = [k for k in ("JOBHOST_URL", "TOKEN_A", "TOKEN_B", "SCREENSHOT", "DOWNLOADS") if not os.environ.get(k)]
if MISSING:
    sys.exit(f"dashboard.py: set {', '.join(MISSING)} (see the docstring)")
URL = os.environ["JOBHOST_URL"].rstrip("/")
TOKEN_A = os.environ["TOKEN_A"]
TOKEN_B = os.environ["TOKEN_B"]
SCREENSHOT = os.environ["SCREENSHOT"]
DOWNLOADS = os.path.abspath(os.environ["DOWNLOADS"])
WAIT_S = 20


class Failure(Exception):
    """A step did not hold; the message says which and why."""


def rpc(token, method, params):
    """One JSON-RPC call to the server, as any API client makes it."""
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(
        URL + "/",
        data=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
    except urllib.error.HTTPError as e:
        raise Failure(f"{method}: HTTP {e.code}: {e.read()[:500]!r}") from e
    if "error" in answer:
        raise Failure(f"{method} failed: {answer['error']}")
    return answer["result"]


def submit(token, args):
    params = {"plugin": "probe", "args": args, "labels": {"suite": "browser"}}
    return rpc(token, "jobs.submit", params)["job"]["id"]


def browser():
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": DOWNLOADS,
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
            "profile.default_content_setting_values.automatic_downloads": 1,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path="/usr/bin/chromedriver"))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": DOWNLOADS})
    return driver


def wait_for(driver, what, predicate, timeout=WAIT_S):
    """Waits until `predicate(driver)` is truthy and returns its value."""
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except TimeoutException:
        raise Failure(f"timed out after {timeout} s waiting for {what}") from None


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def row_status(driver, job_id):
    """The `data-status` of the job's row in the jobs table, or None when it has no row."""
    return js(
        driver,
        "const c = document.querySelector(`#jobs-table tr[data-job-id=\"${CSS.escape(arguments[0])}\"] td.status`);"
        "return c ? c.dataset.status : null;",
        job_id,
    )


def log_has(driver, stream, text):
    return js(
        driver,
        "return [...document.querySelectorAll('#log .log-' + arguments[0])].some(e => e.textContent.includes(arguments[1]));",
        stream,
        text,
    )


def job_status(driver):
    return js(driver, "const s = document.getElementById('job-status'); return s ? s.dataset.status : null;")


def table_loaded(driver):
    return js(driver, "const t = document.getElementById('jobs-table'); return !!t && t.dataset.loaded === 'true';")


def go(driver, hash_route):
    """Moves to another page of the dashboard without reloading it."""
    js(driver, "location.hash = arguments[0];", hash_route)


def sign_in(driver, token, who):
    wait_for(driver, "the sign-in form", lambda d: js(d, "const f = document.getElementById('sign-in'); return !!f && !f.hidden;"))
    field = driver.find_element(By.ID, "token")
    if field.get_attribute("type") != "password":
        raise Failure("the token field is not a password field")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "sign-in-button").click()
    wait_for(driver, f"the jobs table after signing in as {who}", table_loaded)
    if token in driver.current_url:
        raise Failure("the token is in the URL")
    stored = js(driver, "return sessionStorage.getItem('jobhost.token');")
    if stored != token:
        raise Failure(f"the token is not kept in sessionStorage under jobhost.token (found {stored!r})")
    elsewhere = js(driver, "return JSON.stringify(Object.assign({}, localStorage)) + document.cookie;")
    if token in elsewhere:
        raise Failure("the token leaked into localStorage or a cookie")


def downloaded(path):
    """The file once the download is complete (no `.crdownload` partner left)."""
    names = os.listdir(DOWNLOADS)
    partial = any(n.endswith(".crdownload") for n in names)
    return path.exists() and not partial


def download(driver, name, expect):
    selector = f'button[data-artifact="{name}"]'
    wait_for(driver, f"the Download button of {name}", lambda d: d.find_elements(By.CSS_SELECTOR, selector))
    driver.find_element(By.CSS_SELECTOR, selector).click()
    target = pathlib.Path(DOWNLOADS) / name.split("/")[-1]
    wait_for(driver, f"{target} to be downloaded", lambda d: downloaded(target))
    data = target.read_bytes()
    if data != expect:
        raise Failure(f"{target} holds {data!r}, not {expect!r}")


def check_marker(driver, when):
    if js(driver, "return window.__marker;") != 1:
        raise Failure(f"the page was reloaded ({when}): window.__marker is gone")


def steps(driver):
    # 1. Sign in with TOKEN_A through the form.
    driver.get(URL + "/ui/")
    sign_in(driver, TOKEN_A, "user A")
    js(driver, "window.__marker = 1;")
    print("ok: signed in as user A through the form; the token is only in sessionStorage")

    # 2. A job submitted through the API appears and completes without a reload.
    wait_for(
        driver,
        "the jobs table's live subscription",
        lambda d: js(d, "const t = document.getElementById('jobs-table'); return !!t && t.dataset.live === 'true';"),
    )
    echo = submit(TOKEN_A, ["echo", "hello"])
    wait_for(driver, f"a row for job {echo}", lambda d: row_status(d, echo) is not None)
    wait_for(driver, f"job {echo}'s row to read completed", lambda d: row_status(d, echo) == "completed")
    check_marker(driver, "after the job completed")
    print(f"ok: job {echo} appeared in the table and turned completed without a reload")

    # 3. Its page shows stdout and stderr apart.
    driver.find_element(By.CSS_SELECTOR, f'#jobs-table tr[data-job-id="{echo}"] a[href^="#/jobs/"]').click()
    wait_for(driver, "the job page", lambda d: job_status(d) is not None)
    wait_for(driver, "a .log-stdout chunk with arg:hello", lambda d: log_has(d, "stdout", "arg:hello"))
    wait_for(driver, "a .log-stderr chunk with to-stderr", lambda d: log_has(d, "stderr", "to-stderr"))
    if job_status(driver) != "completed":
        raise Failure(f"#job-status reads {job_status(driver)!r}, not completed")
    print("ok: the job page shows arg:hello as stdout and to-stderr as stderr")

    # 4. Artifacts download with the bearer token, byte for byte.
    download(driver, "result.txt", b"result\n")
    download(driver, "sub/x.txt", b"x\n")
    print("ok: result.txt and sub/x.txt downloaded with the right bytes")

    # 5. A running job is cancelled from its page.
    sleeper = submit(TOKEN_A, ["sleep", "60"])
    go(driver, f"#/jobs/{sleeper}")
    wait_for(driver, f"job {sleeper} to read running", lambda d: job_status(d) == "running")
    driver.find_element(By.ID, "cancel-job").click()
    confirm = driver.find_elements(By.ID, "confirm-cancel")
    if confirm:
        wait_for(driver, "the Confirm cancel button", lambda d: d.find_element(By.ID, "confirm-cancel").is_displayed())
        driver.find_element(By.ID, "confirm-cancel").click()
    wait_for(driver, f"job {sleeper} to read cancelled", lambda d: job_status(d) == "cancelled")
    status = rpc(TOKEN_A, "jobs.get", {"id": sleeper})["status"]
    if status != "cancelled":
        raise Failure(f"the API says job {sleeper} is {status}, not cancelled")
    print(f"ok: job {sleeper} was cancelled from its page (the API agrees)")

    # 6. The jobs page, for the record.
    go(driver, "#/jobs")
    wait_for(driver, "the jobs table", table_loaded)
    wait_for(driver, f"job {sleeper}'s row to read cancelled", lambda d: row_status(d, sleeper) == "cancelled")
    check_marker(driver, "before the screenshot")
    driver.save_screenshot(SCREENSHOT)
    print(f"ok: screenshot saved to {SCREENSHOT}")

    # 7. User B sees none of user A's jobs.
    driver.find_element(By.ID, "sign-out").click()
    wait_for(driver, "the sign-in form after signing out", lambda d: js(d, "return !document.getElementById('sign-in').hidden;"))
    if js(driver, "return sessionStorage.getItem('jobhost.token');") is not None:
        raise Failure("signing out left the token in sessionStorage")
    sign_in(driver, TOKEN_B, "user B")
    shown = set(js(driver, "return [...document.querySelectorAll('#jobs-table tr[data-job-id]')].map(r => r.dataset.jobId);"))
    leaked = shown & {echo, sleeper}
    if leaked:
        raise Failure(f"user B's jobs page lists user A's jobs {sorted(leaked)}")
    go(driver, f"#/jobs/{echo}")
    kind = wait_for(
        driver,
        "a not-found message on user A's job page",
        lambda d: js(d, "const e = document.getElementById('view-error'); return e ? e.dataset.kind : null;"),
    )
    text = driver.find_element(By.ID, "view-error").text
    if kind != "not_found" or "not found" not in text.lower():
        raise Failure(f"user A's job page shows {kind!r}: {text!r}, not a not-found message")
    check_marker(driver, "at the end")
    print("ok: user B sees none of user A's jobs, and A's job page says not found")

    # 8. No JavaScript errors in the console.
    errors = [
        e for e in driver.get_log("browser")
        if e.get("level") == "SEVERE" and "favicon" not in e.get("message", "")
    ]
    if errors:
        raise Failure("the browser console has errors:\n" + "\n".join(e["message"] for e in errors))
    print("ok: no errors in the browser console")


def fail(driver, reason):
    """Saves the screenshot and prints what the page showed, then the reason (also on stderr)."""
    if driver is not None:
        try:
            driver.save_screenshot(SCREENSHOT)
            print(f"screenshot: {SCREENSHOT}")
        except WebDriverException as e:
            print(f"(no screenshot: {e})")
        try:
            print(f"---- page at {driver.current_url} ----")
            print(driver.find_element(By.TAG_NAME, "body").text)
            print("---- browser log ----")
            for entry in driver.get_log("browser"):
                print(f"{entry.get('level')}: {entry.get('message')}")
        except WebDriverException as e:
            print(f"(no page text: {e})")
    print(f"FAILED: {reason}", flush=True)
    print(f"FAILED: {reason}", file=sys.stderr)


def main():
    driver = None
    try:
        driver = browser()
        steps(driver)
    except Failure as e:
        fail(driver, str(e))
        return 1
    except Exception as e:  # noqa: BLE001 - any other error fails the test with its reason
        fail(driver, f"{type(e).__name__}: {e}")
        return 1
    finally:
        if driver is not None:
            driver.quit()
    print("dashboard: all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
