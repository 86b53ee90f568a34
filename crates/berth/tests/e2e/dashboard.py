"""Drives the dashboard in Debian's headless Chromium (playwright, no downloaded browser).

python3 dashboard.py BASE_URL DEPLOY_ID BACKUP_ID SCREENSHOT_DIR TOKEN prints one JSON object: what the pages
showed and every console error; the Rust test (dashboard.rs) asserts on it. Exits 2 when a
wait times out, with what it waited for.
"""
import json
import sys

from playwright.sync_api import sync_playwright, TimeoutError as PlaywrightTimeout

base, deploy_id, backup_id, shots, token = sys.argv[1:6]
result = {"console_errors": [], "steps": []}


def step(what):
    result["steps"].append(what)


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path="/usr/bin/chromium",
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on(
            "console",
            lambda m: m.type == "error" and result["console_errors"].append(m.text),
        )
        page.on("pageerror", lambda e: result["console_errors"].append(str(e)))
        try:
            # The overview: the service, its replicas, the running deploy with its progress.
            step("overview")
            page.goto(base + "/", wait_until="load")
            page.wait_for_selector('#services tr[data-service="web"]', timeout=15000)
            result["replicas"] = page.locator("#replicas tr[data-replica]").count()
            step("backups")
            row = page.wait_for_selector(
                f'#backups tr[data-backup="{backup_id}"]', timeout=10000
            )
            result["backup_text"] = row.inner_text()
            step("running deploy")
            box = page.wait_for_selector(
                f'#running .deploy[data-deploy-id="{deploy_id}"]', timeout=20000
            )
            result["deploy_text"] = box.inner_text()
            result["progress_max"] = page.get_attribute(
                f'.deploy[data-deploy-id="{deploy_id}"] progress', "max"
            )
            page.screenshot(path=shots + "/overview.png", full_page=True)
            # It ends on the page too (the overview refreshes itself).
            step("deploy end")
            page.wait_for_selector(
                f'#deploys tr[data-deploy-id="{deploy_id}"]:not([data-state="running"])',
                timeout=60000,
            )
            result["deploy_final"] = page.get_attribute(
                f'#deploys tr[data-deploy-id="{deploy_id}"]', "data-state"
            )
            # The service page: charts drawn from the metrics of the running stack.
            step("service page")
            page.click('#services tr[data-service="web"] a')
            page.wait_for_selector('.ranges a[data-range="15m"]', timeout=10000)
            page.click('.ranges a[data-range="15m"]')
            # (CSS selectors: the page's CSP forbids the eval behind wait_for_function.)
            # The charts and tables are fetched side by side: wait for each one the test
            # reads (a chart with no point yet is drawn again every 5 s).
            for chart in ("requests", "cpu", "memory", "replicas", "latency"):
                page.wait_for_selector(
                    f'[data-chart={chart}]:not([data-points="0"]) canvas', timeout=30000
                )
            page.wait_for_selector("#releases tr[data-release]", timeout=10000)
            page.wait_for_selector(
                f'#service-deploys tr[data-deploy-id="{deploy_id}"]', timeout=10000
            )
            result["charts"] = page.evaluate(
                "Object.fromEntries([...document.querySelectorAll('[data-chart]')]"
                ".map(c => [c.dataset.chart, {points: +c.dataset.points,"
                " series: +(c.dataset.series || 0), canvas: !!c.querySelector('canvas')}]))"
            )
            result["releases"] = page.locator("#releases tr[data-release]").count()
            result["service_deploys"] = page.locator(
                f'#service-deploys tr[data-deploy-id="{deploy_id}"]'
            ).count()
            # The logs need the admin token, even on loopback: locked until signed in.
            step("logs locked")
            page.wait_for_selector("#logs-locked", timeout=10000)
            result["logs_locked"] = page.locator("#logs").count() == 0
            page.screenshot(path=shots + "/service.png", full_page=True)
            # Another range: the charts are drawn again from coarser points.
            step("range 24h")
            page.click('.ranges a[data-range="24h"]')
            page.wait_for_selector('.ranges a.on[data-range="24h"]', timeout=5000)
            page.wait_for_selector(
                '[data-chart=requests]:not([data-points="0"]) canvas', timeout=15000
            )
            result["range_24h_points"] = int(
                page.get_attribute("[data-chart=requests]", "data-points")
            )
            # Signed in with the token (the one-time link sets the cookie): the logs show.
            step("logs after login")
            page.goto(base + "/dashboard/login?token=" + token, wait_until="load")
            page.goto(base + "/dashboard/#/service/web?range=15m", wait_until="load")
            page.wait_for_selector('#logs:not([data-lines="0"])', timeout=15000)
            result["log_lines"] = int(page.get_attribute("#logs", "data-lines"))
            result["log_text"] = page.inner_text("#logs")[:2000]
            result["login_url"] = page.url
        except PlaywrightTimeout as e:
            result["timeout"] = f"{result['steps'][-1]}: {e}".splitlines()[0]
            try:
                result["body"] = page.inner_text("body")[:3000]
                page.screenshot(path=shots + "/timeout.png", full_page=True)
            except Exception:
                pass
            print(json.dumps(result))
            sys.exit(2)
    finally:
        browser.close()
print(json.dumps(result))
