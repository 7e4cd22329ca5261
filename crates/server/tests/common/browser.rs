//! Real headless Chromium through ChromeDriver (Debian's `chromium` and
//! `chromium-driver`, installed by scripts/test.sh). ChromeDriver runs in a
//! process group of its own with its own TMPDIR; dropping the [`Browser`]
//! ends the whole group, so a failing test leaves no Chromium behind.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

pub struct Browser {
    pub client: Client,
    driver: Child,
    _tmp: tempfile::TempDir,
    pub base: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls ChromeDriver's `/status` until it says ready (reading only until
/// the answer is seen: it keeps connections open).
fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = s.write_all(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            while let Ok(n) = s.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if String::from_utf8_lossy(&buf).contains("\"ready\":true") {
                    return;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "chromedriver did not become ready"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Browser {
    /// Starts ChromeDriver and a headless Chromium session. Fails loudly when
    /// either is missing.
    pub async fn start(base: &str) -> Browser {
        Browser::start_with(base, &[]).await
    }

    /// Like [`Browser::start`], with more Chromium flags.
    pub async fn start_with(base: &str, extra: &[String]) -> Browser {
        for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            assert!(
                PathBuf::from(bin).exists(),
                "{bin} is missing: scripts/test.sh installs chromium and chromium-driver"
            );
        }
        let tmp = tempfile::tempdir().unwrap();
        let port = free_port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .env("TMPDIR", tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        wait_ready(port);
        let profile = tmp.path().join("profile");
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,900",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.extend(extra.iter().cloned());
        let caps = json!({
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": args
            }
        });
        let caps = caps.as_object().unwrap().clone();
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session starts");
        Browser {
            client,
            driver,
            _tmp: tmp,
            base: base.to_string(),
        }
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap();
    }

    /// The path of the page shown now.
    /// Opens the web turret and logs in as `profile`.
    pub async fn turret_login(&self, profile: &str, password: &str) {
        self.goto("/turret").await;
        self.wait_text(".profiles", profile).await;
        let buttons = self
            .client
            .find_all(Locator::Css(".profiles button"))
            .await
            .unwrap();
        for btn in buttons {
            if btn.text().await.unwrap() == profile {
                btn.click().await.unwrap();
            }
        }
        self.fill("#password", password).await;
        self.click("#login").await;
        self.wait_text("#who", profile).await;
    }

    /// Runs `js` (a function body; `return` gives the value) in the page.
    pub async fn eval(&self, js: &str) -> serde_json::Value {
        self.client.execute(js, vec![]).await.unwrap()
    }

    pub async fn path(&self) -> String {
        self.client.current_url().await.unwrap().path().to_string()
    }

    pub async fn fill(&self, css: &str, value: &str) {
        let e = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        e.clear().await.unwrap();
        e.send_keys(value).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap();
    }

    /// Clicks something that loads a new page (a submit button, a link) and
    /// waits until the old page is gone and the new one is ready.
    pub async fn submit(&self, css: &str) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        self.click(css).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match old.tag_name().await {
                Err(fantoccini::error::CmdError::Standard(e))
                    if e.error == fantoccini::error::ErrorStatus::StaleElementReference =>
                {
                    break;
                }
                _ => {}
            }
            assert!(
                Instant::now() < deadline,
                "clicking {css} loaded no new page"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css("body"))
            .await
            .unwrap();
    }

    /// Picks an option of a `<select>` by its visible text.
    pub async fn choose(&self, css: &str, text: &str) {
        let select = self.client.find(Locator::Css(css)).await.unwrap();
        select
            .select_by_label(text)
            .await
            .unwrap_or_else(|e| panic!("{css} {text}: {e}"));
    }

    pub async fn text(&self, css: &str) -> String {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    /// Waits (polling) until the element at `css` contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(e) = self.client.find(Locator::Css(css)).await
                && let Ok(t) = e.text().await
                && t.contains(needle)
            {
                return t;
            }
            assert!(Instant::now() < deadline, "{css} never showed {needle:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn source(&self) -> String {
        self.client.source().await.unwrap()
    }

    pub async fn cookie(&self, name: &str) -> String {
        self.client
            .get_named_cookie(name)
            .await
            .unwrap()
            .value()
            .to_string()
    }

    /// Saves a screenshot: into `docs/screenshots/` when
    /// `UPDATE_SCREENSHOTS=1`, otherwise into a temporary file (so the test
    /// still proves a screenshot can be taken).
    pub async fn screenshot(&self, name: &str) {
        self.client
            .execute("window.scrollTo(0, 0)", vec![])
            .await
            .unwrap();
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = if std::env::var("UPDATE_SCREENSHOTS").as_deref() == Ok("1") {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots")
        } else {
            std::env::temp_dir().join("openturret-screenshots")
        };
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.driver.id()))
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A server whose admin signed in through the portal (one-time password,
/// then the forced change), and an API client for cross-checks.
pub async fn signed_in(dir: &std::path::Path) -> (super::Server, Browser, super::Api) {
    signed_in_with(dir, &[]).await
}

/// [`signed_in`], the server started with `env`.
pub async fn signed_in_with(
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> (super::Server, Browser, super::Api) {
    let server = super::Server::start(dir, env).await;
    let otp = server.one_time_password().unwrap();
    let b = Browser::start(&server.url).await;
    b.goto("/login").await;
    b.fill("#login-username", "admin").await;
    b.fill("#login-password", &otp).await;
    b.submit("form[action='/login'] button[type=submit]").await;
    assert_eq!(b.path().await, "/password");
    b.fill("#pw-current_password", &otp).await;
    b.fill("#pw-new_password", super::ADMIN_PASSWORD).await;
    b.fill("#pw-confirm", super::ADMIN_PASSWORD).await;
    b.submit("form[action='/password'] button[type=submit]")
        .await;
    assert_eq!(b.path().await, "/profiles");
    let mut api = server.client();
    api.login("admin", super::ADMIN_PASSWORD).await;
    (server, b, api)
}
