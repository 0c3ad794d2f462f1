//! Headless Chromium for the UI's browser tests and benchmark: Debian's `chromium` (installed
//! by `scripts/install-deps.sh`; a missing browser is an error, never a skipped test),
//! driven over the DevTools protocol.
//!
//! Why by hand over `--remote-debugging-pipe` rather than a crate: `chromiumoxide` brings a
//! generated binding of the whole protocol (a long compile on a 2-core machine) plus a
//! websocket stack, and `headless_chrome` brings a synchronous websocket client and its own
//! browser download logic; the tests need eight commands (create a tab, navigate, evaluate,
//! mouse, keys, screenshot, viewport, close). The pipe transport is NUL-terminated JSON on
//! file descriptors 3 (to the browser) and 4 (from it): `sh` maps them onto the child's
//! stdin and stdout, so there is no port to find and no unsafe `pre_exec`.
//!
//! Each browser has a throwaway profile (a temporary directory) and its own process group,
//! killed when the [`Browser`] is dropped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin};
use tokio::sync::oneshot;

use crate::Error;

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Reply = Result<Value, String>;

/// The DevTools connection: commands out, replies routed back by id, page errors kept.
struct Conn {
    writer: tokio::sync::Mutex<ChildStdin>,
    pending: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next: AtomicU64,
    errors: Mutex<Vec<String>>,
}

impl Conn {
    async fn call(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, Error> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(id, tx);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).map_err(|e| Error::Browser(e.to_string()))?;
        bytes.push(0);
        {
            let mut w = self.writer.lock().await;
            w.write_all(&bytes)
                .await
                .map_err(|e| Error::Browser(format!("{method}: writing to the browser: {e}")))?;
            w.flush().await.ok();
        }
        match tokio::time::timeout(CALL_TIMEOUT, rx).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(Error::Browser(format!("{method}: {e}"))),
            Ok(Err(_)) => Err(Error::Browser(format!("{method}: the browser exited"))),
            Err(_) => {
                lock(&self.pending).remove(&id);
                Err(Error::Browser(format!(
                    "{method}: no answer in {CALL_TIMEOUT:?}"
                )))
            }
        }
    }

    /// Handles one message from the browser: a reply, or an event worth keeping.
    fn dispatch(&self, msg: Value) {
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if let Some(tx) = lock(&self.pending).remove(&id) {
                let reply = match msg.get("error") {
                    Some(e) => Err(e
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or("error")
                        .to_string()),
                    None => Ok(msg.get("result").cloned().unwrap_or(Value::Null)),
                };
                let _ = tx.send(reply);
            }
            return;
        }
        let params = msg.get("params").cloned().unwrap_or(Value::Null);
        let error = match msg.get("method").and_then(Value::as_str) {
            Some("Runtime.exceptionThrown") => Some(
                params["exceptionDetails"]["exception"]["description"]
                    .as_str()
                    .or(params["exceptionDetails"]["text"].as_str())
                    .unwrap_or("exception")
                    .to_string(),
            ),
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                Some(format!("console.error: {}", params["args"]))
            }
            // Network errors (a 404 answer) are the test's to judge; CSP violations and the
            // like are kept.
            Some("Log.entryAdded")
                if params["entry"]["level"] == "error"
                    && params["entry"]["source"] != "network" =>
            {
                Some(format!("log: {}", params["entry"]["text"]))
            }
            _ => None,
        };
        if let Some(e) = error {
            lock(&self.errors).push(e);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A headless Chromium with a throwaway profile.
pub struct Browser {
    conn: Arc<Conn>,
    child: Child,
    _profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("pid", &self.child.id())
            .finish()
    }
}

/// The browser binary: `$PLUMB_CHROMIUM`, else `chromium` on `PATH`.
pub fn chromium_path() -> Result<PathBuf, Error> {
    if let Some(p) = std::env::var_os("PLUMB_CHROMIUM") {
        return Ok(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Browser(
                "chromium not found on PATH: run scripts/install-deps.sh (Debian's chromium \
                 package) or set PLUMB_CHROMIUM"
                    .into(),
            )
        })
}

impl Browser {
    /// Starts headless Chromium.
    pub async fn launch() -> Result<Browser, Error> {
        let bin = chromium_path()?;
        let profile = tempfile::tempdir().map_err(|e| Error::Io {
            op: "creating the browser profile".into(),
            path: std::env::temp_dir(),
            source: e,
        })?;
        let log =
            std::fs::File::create(profile.path().join("chromium.log")).map_err(|e| Error::Io {
                op: "creating the browser log".into(),
                path: profile.path().into(),
                source: e,
            })?;
        let mut cmd = tokio::process::Command::new("sh");
        // fd 3 reads our stdin, fd 4 writes our stdout: the DevTools pipe.
        cmd.arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 0</dev/null 1>&2"#)
            .arg(&bin)
            .arg("--headless=new")
            .arg("--remote-debugging-pipe")
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args([
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1400,900",
                "about:blank",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .process_group(0);
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::Browser(format!("starting {}: {e}", bin.display())))?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Browser("no pipe to the browser".into()));
        };
        let conn = Arc::new(Conn {
            writer: tokio::sync::Mutex::new(stdin),
            pending: Mutex::default(),
            next: AtomicU64::new(1),
            errors: Mutex::default(),
        });
        let reader = Arc::clone(&conn);
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(0, &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&0) {
                            buf.pop();
                        }
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            reader.dispatch(v);
                        }
                    }
                }
            }
            // The browser is gone: fail every waiting call.
            lock(&reader.pending).clear();
        });
        let browser = Browser {
            conn,
            child,
            _profile: profile,
        };
        browser
            .conn
            .call(None, "Browser.getVersion", json!({}))
            .await
            .map_err(|e| Error::Browser(format!("{e}; log: {}", browser.log_tail())))?;
        Ok(browser)
    }

    fn log_tail(&self) -> String {
        let text =
            std::fs::read_to_string(self._profile.path().join("chromium.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Opens a new tab of `width` x `height` CSS pixels.
    pub async fn new_page(&self, width: u32, height: u32) -> Result<Page, Error> {
        let t = self
            .conn
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target = t["targetId"].as_str().unwrap_or_default().to_string();
        let a = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target, "flatten": true }),
            )
            .await?;
        let session = a["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Browser("attachToTarget: no session".into()))?
            .to_string();
        let page = Page {
            conn: Arc::clone(&self.conn),
            session,
            target,
        };
        page.call("Runtime.enable", json!({})).await?;
        page.call("Log.enable", json!({})).await?;
        page.call("Page.enable", json!({})).await?;
        page.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )
        .await?;
        Ok(page)
    }

    /// Closes the browser (dropping it kills it too).
    pub async fn close(mut self) {
        let _ = self.conn.call(None, "Browser.close", json!({})).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The browser's helpers (zygote, renderers) share its process group.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// One tab.
#[derive(Clone)]
pub struct Page {
    conn: Arc<Conn>,
    session: String,
    target: String,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("session", &self.session)
            .finish()
    }
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Result<Value, Error> {
        self.conn.call(Some(&self.session), method, params).await
    }

    /// Navigates to `url` (returns once the navigation is committed; wait for a selector next).
    pub async fn goto(&self, url: &str) -> Result<(), Error> {
        let r = self.call("Page.navigate", json!({ "url": url })).await?;
        match r.get("errorText").and_then(Value::as_str) {
            Some(e) if !e.is_empty() => Err(Error::Browser(format!("navigating to {url}: {e}"))),
            _ => Ok(()),
        }
    }

    /// Evaluates `expr` in the page (promises awaited) and returns its JSON value.
    pub async fn eval(&self, expr: &str) -> Result<Value, Error> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            let what = ex["exception"]["description"]
                .as_str()
                .or(ex["text"].as_str())
                .unwrap_or("exception");
            return Err(Error::Browser(format!("evaluating {expr:.80}: {what}")));
        }
        Ok(r["result"]["value"].clone())
    }

    /// The text content of the first element matching `selector` (empty when none).
    pub async fn text(&self, selector: &str) -> Result<String, Error> {
        let v = self
            .eval(&format!(
                "document.querySelector({})?.textContent ?? ''",
                js_str(selector)
            ))
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Waits until `expr` evaluates to a truthy value, and returns that value.
    pub async fn wait_until(&self, expr: &str, timeout: Duration) -> Result<Value, Error> {
        crate::wait::poll(&format!("page: {expr}"), timeout, || async {
            match self.eval(expr).await {
                Ok(v) if truthy(&v) => Some(v),
                _ => None,
            }
        })
        .await
    }

    /// Waits until an element matches `selector`.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Result<(), Error> {
        self.wait_until(
            &format!("!!document.querySelector({})", js_str(selector)),
            timeout,
        )
        .await
        .map(|_| ())
    }

    /// Clicks the middle of the first element matching `selector` with the mouse.
    pub async fn click(&self, selector: &str) -> Result<(), Error> {
        let at = self
            .eval(&format!(
                "(() => {{ const e = document.querySelector({}); if (!e) return null; \
                 e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); \
                 return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
                js_str(selector)
            ))
            .await?;
        let (Some(x), Some(y)) = (at[0].as_f64(), at[1].as_f64()) else {
            return Err(Error::Browser(format!("click: nothing matches {selector}")));
        };
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({ "type": kind, "x": x, "y": y, "button": "left", "clickCount": 1 }),
            )
            .await?;
        }
        Ok(())
    }

    /// Presses and releases a key: `Tab`, `Enter`, `Escape`, `ArrowUp|Down|Left|Right`, or a
    /// single character.
    pub async fn press(&self, key: &str) -> Result<(), Error> {
        let (code, vk, text) = match key {
            "Tab" => ("Tab", 9, ""),
            "Enter" => ("Enter", 13, "\r"),
            "Escape" => ("Escape", 27, ""),
            "ArrowLeft" => ("ArrowLeft", 37, ""),
            "ArrowUp" => ("ArrowUp", 38, ""),
            "ArrowRight" => ("ArrowRight", 39, ""),
            "ArrowDown" => ("ArrowDown", 40, ""),
            _ => ("", 0, key),
        };
        let mut down = json!({ "type": if text.is_empty() { "rawKeyDown" } else { "keyDown" },
            "key": key, "code": code, "windowsVirtualKeyCode": vk });
        if !text.is_empty() {
            down["text"] = json!(text);
        }
        self.call("Input.dispatchKeyEvent", down).await?;
        self.call(
            "Input.dispatchKeyEvent",
            json!({ "type": "keyUp", "key": key, "code": code, "windowsVirtualKeyCode": vk }),
        )
        .await?;
        Ok(())
    }

    /// Saves a PNG of the viewport as `<dir>/<name>.png` (see [`screenshot_dir`]).
    pub async fn screenshot(&self, name: &str) -> Result<PathBuf, Error> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().unwrap_or_default())
            .map_err(|e| Error::Browser(format!("screenshot: {e}")))?;
        let dir = screenshot_dir();
        let path = dir.join(format!("{name}.png"));
        let io = |op: &str, p: &Path, e| Error::Io {
            op: op.into(),
            path: p.into(),
            source: e,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io("creating", &dir, e))?;
        std::fs::write(&path, png).map_err(|e| io("writing", &path, e))?;
        Ok(path)
    }

    /// Loads everything from the server, never from the browser's cache (cold loads).
    pub async fn disable_cache(&self) -> Result<(), Error> {
        self.call("Network.enable", json!({})).await?;
        self.call("Network.setCacheDisabled", json!({ "cacheDisabled": true }))
            .await
            .map(|_| ())
    }

    /// Closes the tab.
    pub async fn close(self) -> Result<(), Error> {
        self.conn
            .call(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target }),
            )
            .await
            .map(|_| ())
    }

    /// Script errors and console errors the page reported so far.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.conn.errors).clone()
    }
}

/// Where screenshots go: `$PLUMB_SCREENSHOT_DIR`, else `ui-screenshots` under
/// `$CARGO_TARGET_DIR` or the workspace's `target/` (kept as CI artifacts).
pub fn screenshot_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("PLUMB_SCREENSHOT_DIR") {
        return PathBuf::from(d);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    target.join("ui-screenshots")
}

/// A JavaScript string literal of `s`.
pub fn js_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        _ => true,
    }
}
