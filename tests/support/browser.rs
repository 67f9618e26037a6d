//! A real Chromium for the console's browser tests, driven over WebDriver (`chromedriver`,
//! through the `fantoccini` client).
//!
//! `REX_TEST_CHROMEDRIVER` names the chromedriver binary (`.ci/run` installs Debian's
//! `chromium` and `chromium-driver` and sets it; `scripts/test` sets it when `chromedriver` is
//! on the PATH). Unset, [`Browser::start`] returns `None` and the test says it was skipped;
//! set, any failure to start is a test failure, never a skip.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};

/// The variable naming the chromedriver binary.
pub const CHROMEDRIVER_VAR: &str = "REX_TEST_CHROMEDRIVER";

/// A chromedriver process and one headless Chromium session on it.
pub struct Browser {
    pub client: Client,
    driver: Child,
}

impl Browser {
    /// Start chromedriver on a free port and open a headless Chromium; `None` (with a message)
    /// when [`CHROMEDRIVER_VAR`] is unset.
    pub async fn start(test: &str) -> Option<Browser> {
        let Some(driver_path) = std::env::var_os(CHROMEDRIVER_VAR) else {
            eprintln!("{test}: skipped ({CHROMEDRIVER_VAR} is unset)");
            return None;
        };
        let mut driver = Command::new(&driver_path)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", Path::new(&driver_path).display()));
        let stdout = driver.stdout.take().expect("chromedriver stdout");
        let port = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                // "ChromeDriver was started successfully on port 45181."
                let rest = line.split("started successfully on port ").nth(1)?;
                rest.trim_end_matches('.').parse::<u16>().ok()
            })
            .expect("chromedriver reports its port");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,900"],
            }),
        );
        let client = ClientBuilder::native()
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("open a Chromium session through chromedriver");
        Some(Browser { client, driver })
    }

    /// Go to `url`.
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The text of the first element `css` selects, waiting for it to appear. An element that
    /// a live update replaced between finding and reading it is found again.
    pub async fn text(&self, css: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match self.wait_for(css).await.text().await {
                Ok(text) => return text,
                Err(e) => assert!(
                    std::time::Instant::now() < deadline,
                    "the text of {css:?}: {e}"
                ),
            }
        }
    }

    /// Wait (bounded) for an element `css` selects.
    pub async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no element {css:?}: {e}"))
    }

    /// Whether any element `css` selects is on the page now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
            .is_empty()
    }

    /// Wait (bounded, polling the page) until the text of `css` satisfies `pred`; returns it.
    /// For live-updating parts of a page, whose updates the test cannot await otherwise.
    pub async fn wait_text(&self, css: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if pred(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the text of {css:?} never matched; last: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Save a PNG screenshot of the page to `path` (the docs use them).
    pub async fn screenshot(&self, path: &Path) {
        let png = self.client.screenshot().await.expect("screenshot");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// End the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where screenshots for the docs go: `target/console-screenshots/` (copied into `docs/`
/// by hand when the pages change), so that a test run never edits the source tree.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("target/console-screenshots")
}
