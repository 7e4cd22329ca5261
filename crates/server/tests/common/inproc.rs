//! An in-process System Manager on 127.0.0.1:0 over TLS, for tests that
//! need the internal call-event API (there is deliberately no HTTP route
//! for it), plus an admin API client already past the first-password
//! change.

use std::time::Duration;

use openturret_server::config::Config;
use openturret_server::{App, serve, startup};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use super::{ADMIN_PASSWORD, Api};
use openturret_server::client::conn::Connection;

pub struct InProc {
    pub app: App,
    pub url: String,
    pub cert: Vec<u8>,
    pub api: Api,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
}

impl InProc {
    pub async fn start() -> InProc {
        Self::start_with(|_, _| {}).await
    }

    /// Starts with a configuration adjusted by `tune` (given the data dir).
    pub async fn start_with(tune: impl FnOnce(&mut Config, &std::path::Path)) -> InProc {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.numbers.country_code = Some("44".into());
        config.listen = "127.0.0.1:0".parse().unwrap();
        // The MLC stays off unless a test switches it on (telephony tests).
        config.sip.enabled = false;
        config.sip.listen = "127.0.0.1:0".parse().unwrap();
        config.database.url = super::test_database(dir.path()).await;
        // The error log's entries do not depend on the machine's free space
        // (a test of the disk watch sets its own limits).
        config.monitor = openturret_server::config::MonitorConfig::off();
        tune(&mut config, dir.path());
        let sip = config.sip.clone();
        let prepared = startup::prepare(&config, "test-host").await.unwrap();
        let otp = prepared.first_admin_password.clone().unwrap();
        let app = App::start(prepared.store.clone(), config, "test-host".into())
            .await
            .unwrap();
        if sip.enabled {
            openturret_server::telephony::start_local(&app, sip)
                .await
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(serve(app.clone(), listener, prepared.tls.clone(), async {
            let _ = rx.await;
        }));
        let cert = std::fs::read(dir.path().join("tls/cert.pem")).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&cert).unwrap())
            .timeout(Duration::from_secs(30))
            // The server closes an HTTP/1.1 connection idle for its header
            // timeout (10 s, told in Keep-Alive): never reuse one that old.
            .pool_idle_timeout(Duration::from_secs(5))
            .build()
            .unwrap();
        let mut api = Api {
            base: url.clone(),
            client,
            token: None,
        };
        api.login("admin", otp.expose()).await;
        let (_, v) = api
            .post(
                "/api/v1/auth/password",
                json!({"current_password": otp.expose(), "new_password": ADMIN_PASSWORD}),
            )
            .await;
        api.token = Some(v["token"].as_str().unwrap().to_string());
        InProc {
            app,
            url,
            cert,
            api,
            dir,
            stop: Some(tx),
        }
    }

    /// A new protocol connection (hello done).
    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.url, &self.cert).await.unwrap()
    }

    /// A connection logged in to `profile_id`.
    pub async fn login(&self, profile_id: i64, password: &str) -> (Connection, Value) {
        let mut c = self.connect().await;
        let v = c
            .request(json!({"op": "login", "profile_id": profile_id, "password": password}))
            .await
            .unwrap_or_else(|e| panic!("login to {profile_id}: {e}"));
        (c, v)
    }

    /// Creates a line through the admin API; returns its id.
    pub async fn line(&self, body: Value) -> i64 {
        let (s, v) = self.api.post("/api/v1/lines", body).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// Creates a profile through the admin API; returns its id.
    pub async fn profile(&self, body: Value) -> i64 {
        let (s, v) = self.api.post("/api/v1/profiles", body).await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }
}

impl Drop for InProc {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}
