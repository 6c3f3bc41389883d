//! Debian's headless Chromium driven over the DevTools protocol (chromiumoxide), for
//! the console's tests: a person's clicks and typing, waits on what the page shows, and
//! screenshots.

use std::path::PathBuf;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
use chromiumoxide::cdp::browser_protocol::input::{DispatchMouseEventParams, DispatchMouseEventType, MouseButton};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

/// How long a page may take to show what a test waits for.
const PATIENCE_MS: u64 = 15_000;

/// A running Chromium with its own profile; closed when dropped.
pub struct Chromium {
    browser: Browser,
    events: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
}

/// The Chromium binary, or `None` (said loudly; CI must have it).
fn executable() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium must be installed in CI (.ci/run: apt-get install chromium)"
        );
        eprintln!("\n!!! chromium not installed: SKIPPING the browser test (apt-get install chromium) !!!\n");
    }
    found
}

impl Chromium {
    /// Starts Chromium with a window of `width`×`height` CSS pixels (a phone's when
    /// `phone`: touch, mobile layout).
    pub async fn launch(width: u32, height: u32, phone: bool) -> Option<Chromium> {
        let exe = executable()?;
        let profile = tempfile::tempdir().unwrap();
        let viewport = Viewport {
            width,
            height,
            device_scale_factor: Some(if phone { 2.0 } else { 1.0 }),
            emulating_mobile: phone,
            is_landscape: false,
            has_touch: phone,
        };
        let config = BrowserConfig::builder()
            .chrome_executable(exe)
            .new_headless_mode()
            .no_sandbox()
            .user_data_dir(profile.path())
            .window_size(width, height)
            .viewport(viewport)
            .arg("--disable-gpu")
            .arg("--disable-dev-shm-usage")
            .launch_timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config).await.unwrap();
        let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
        Some(Chromium { browser, events, _profile: profile })
    }

    pub async fn open(&self, url: &str) -> Tab {
        let page = self.browser.new_page(url).await.unwrap();
        page.wait_for_navigation().await.unwrap();
        Tab { page }
    }

    pub async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        self.events.abort();
    }
}

/// One page in the browser.
pub struct Tab {
    pub page: Page,
}

impl Tab {
    /// Evaluates `js` (awaiting a promise) and returns its value.
    pub async fn js<T: DeserializeOwned>(&self, js: &str) -> T {
        let params =
            EvaluateParams::builder().expression(js).await_promise(true).return_by_value(true).build().unwrap();
        let result = self.page.evaluate(params).await.unwrap_or_else(|e| panic!("evaluating {js}: {e}"));
        result.into_value().unwrap_or_else(|e| panic!("the value of {js}: {e}"))
    }

    /// Goes to `url` (on this server: a path) and waits for it to load.
    pub async fn goto(&self, url: &str) {
        let url = match url.starts_with('/') {
            true => {
                let here = self.page.url().await.unwrap().unwrap();
                let origin: Vec<&str> = here.splitn(4, '/').take(3).collect();
                format!("{}{url}", origin.join("/"))
            }
            false => url.to_owned(),
        };
        self.page.goto(url).await.unwrap();
    }

    /// Waits until `condition` (a JS expression) is true in the page, checking it in the
    /// page every 20 ms; fails with `what` and the page's text after [`PATIENCE_MS`].
    /// A navigation while waiting (a form posted, a redirect) starts the check again in
    /// the new document.
    pub async fn wait(&self, condition: &str, what: &str) {
        let until = std::time::Instant::now() + Duration::from_millis(PATIENCE_MS);
        loop {
            let left = until.saturating_duration_since(std::time::Instant::now()).as_millis();
            let js = format!(
                "new Promise(ok => {{ const until = Date.now() + {left}; const check = () => {{ \
                   let v = false; try {{ v = !!({condition}); }} catch (e) {{}} \
                   if (v) ok(true); else if (Date.now() > until) ok(false); else setTimeout(check, 20); }}; check(); }})"
            );
            let params =
                EvaluateParams::builder().expression(js).await_promise(true).return_by_value(true).build().unwrap();
            match self.page.evaluate(params).await {
                Ok(v) => match v.into_value::<bool>() {
                    Ok(true) => return,
                    _ => break,
                },
                // The document went away under the check: wait for the next one to load.
                Err(_) if left > 0 => {
                    let _ = self.page.wait_for_navigation().await;
                }
                Err(e) => panic!("waiting for {what}: {e}"),
            }
        }
        let text: String = self.js("document.body ? document.body.innerText : ''").await;
        panic!("waited {PATIENCE_MS} ms for {what} ({condition}); the page shows:\n{text}");
    }

    /// Waits for the page at a URL containing `path` to have loaded.
    pub async fn wait_for_page(&self, path: &str) {
        let cond = format!("location.pathname.includes({path:?}) && document.readyState === 'complete'");
        self.wait(&cond, &format!("the page {path}")).await;
    }

    /// Clicks the element `selector` as a person would (scrolled into view, mouse events).
    pub async fn click(&self, selector: &str) {
        let el = self.page.find_element(selector).await.unwrap_or_else(|e| panic!("no {selector}: {e}"));
        el.click().await.unwrap();
    }

    /// Types `text` into the field `selector`.
    pub async fn type_into(&self, selector: &str, text: &str) {
        let el = self.page.find_element(selector).await.unwrap_or_else(|e| panic!("no {selector}: {e}"));
        el.click().await.unwrap();
        el.type_str(text).await.unwrap();
    }

    /// Picks `value` in the select `selector`, with the `input` and `change` events a
    /// person's choice fires (DevTools cannot open a native select's list).
    pub async fn choose(&self, selector: &str, value: &str) {
        let js = format!(
            "(() => {{ const s = document.querySelector({selector:?}); s.value = {value:?}; \
               s.dispatchEvent(new Event('input', {{ bubbles: true }})); s.dispatchEvent(new Event('change', {{ bubbles: true }})); \
               return s.value; }})()"
        );
        assert_eq!(self.js::<String>(&js).await, value, "{selector} has no option {value}");
    }

    /// Chooses files in the file input `selector`, as the file picker (or camera) would.
    pub async fn choose_files(&self, selector: &str, files: &[PathBuf]) {
        let el = self.page.find_element(selector).await.unwrap();
        let files = files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>();
        let params =
            SetFileInputFilesParams::builder().files(files).backend_node_id(el.backend_node_id).build().unwrap();
        self.page.execute(params).await.unwrap();
    }

    /// Draws a stroke through `points` (page coordinates relative to `selector`'s top
    /// left corner) with the mouse held down.
    pub async fn draw(&self, selector: &str, points: &[(f64, f64)]) {
        let origin: (f64, f64) = self
            .js(&format!("(() => {{ const el = document.querySelector({selector:?}); el.scrollIntoView({{ block: 'center' }}); const b = el.getBoundingClientRect(); return [b.left, b.top]; }})()"))
            .await;
        let event = |kind, (x, y): (f64, f64)| {
            DispatchMouseEventParams::builder()
                .r#type(kind)
                .x(origin.0 + x)
                .y(origin.1 + y)
                .button(MouseButton::Left)
                .buttons(1)
                .click_count(1)
                .build()
                .unwrap()
        };
        self.page.execute(event(DispatchMouseEventType::MousePressed, points[0])).await.unwrap();
        for p in &points[1..] {
            self.page.execute(event(DispatchMouseEventType::MouseMoved, *p)).await.unwrap();
        }
        let last = points[points.len() - 1];
        self.page.execute(event(DispatchMouseEventType::MouseReleased, last)).await.unwrap();
    }

    /// Prints what this page weighs (its HTML and every resource, bytes as decoded) and
    /// how long it took to arrive and load (first paint, where headless Chromium records
    /// it), for the README's figures.
    pub async fn weigh(&self, name: &str) {
        let figures: serde_json::Value = self
            .js("(() => { const nav = performance.getEntriesByType('navigation')[0]; \
                 const paint = performance.getEntriesByType('paint').find(p => p.name === 'first-contentful-paint'); \
                 const assets = performance.getEntriesByType('resource').filter(r => !r.name.includes('/v1/')); \
                 return { html_bytes: nav.decodedBodySize, asset_bytes: assets.reduce((n, r) => n + r.decodedBodySize, 0), \
                          first_contentful_paint_ms: paint ? Math.round(paint.startTime) : null, \
                          response_end_ms: Math.round(nav.responseEnd), dom_content_loaded_ms: Math.round(nav.domContentLoadedEventEnd), \
                          load_ms: Math.round(nav.loadEventEnd) }; })()")
            .await;
        eprintln!("page weight {name}: {figures}");
    }

    /// Fails unless every control on the page has a label a screen reader announces and
    /// the page fits its viewport's width (no sideways scrolling).
    pub async fn audit(&self, name: &str) {
        let found: serde_json::Value = self
            .js("(() => { const unlabeled = [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')] \
                   .filter(el => el.tagName === 'BUTTON' ? !el.textContent.trim() && !el.getAttribute('aria-label') \
                                 : !(el.labels && el.labels.length) && !el.getAttribute('aria-label')) \
                   .map(el => el.outerHTML.slice(0, 160)); \
                 const wide = document.documentElement.scrollWidth > window.innerWidth + 1; \
                 return { unlabeled, scroll_width: wide ? document.documentElement.scrollWidth : 0, width: window.innerWidth }; })()")
            .await;
        assert_eq!(found["unlabeled"], serde_json::json!([]), "{name}: controls without a label");
        assert_eq!(found["scroll_width"], 0, "{name}: wider than the {} px viewport", found["width"]);
    }

    /// Saves a screenshot of the whole page as `<target tmp>/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        self.page.save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path).await.unwrap();
        eprintln!("screenshot: {}", path.display());
        path
    }
}
