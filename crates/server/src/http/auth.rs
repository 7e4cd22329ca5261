//! Admin login, logout, own password change, and lockouts.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::Timestamp;
use openturret_domain::audit::AuditLevel;
use openturret_domain::model::ADMIN_PASSWORD_MIN;
use openturret_domain::secret::Secret;
use openturret_domain::validate;
use openturret_store::AdminChanges;
use serde::{Deserialize, Serialize};

use super::admins::AdminOut;
use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, AnyAdminAuth, Json, token_hash};
use crate::audit::AuditContext;
use crate::throttle::Realm;
use crate::{App, passwords};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginIn {
    pub username: String,
    pub password: String,
}

#[derive(Serialize)]
pub struct TokenOut {
    pub token: String,
    pub expires_at: String,
    pub must_change_password: bool,
}

/// Longest username kept in an audit entry of a failed login.
const MAX_LOGGED_USERNAME: usize = 64;

fn too_many(retry_after: Duration, by_address: bool) -> ApiError {
    let whom = if by_address {
        "from this address"
    } else {
        "for this account"
    };
    ApiError::TooMany {
        retry_after,
        message: format!(
            "too many failed logins {whom}; try again in {} seconds",
            retry_after.as_secs().max(1)
        ),
    }
}

async fn new_session(app: &App, admin: &openturret_domain::model::Admin) -> ApiResult<TokenOut> {
    let token = passwords::random_token(32);
    let ttl = app.config.auth.token_ttl_secs as i64 * 1000;
    let expires = Timestamp(Timestamp::now().0 + ttl);
    app.store
        .create_session(token_hash(&token), admin.id, expires)
        .await?;
    Ok(TokenOut {
        token,
        expires_at: expires.rfc3339(),
        must_change_password: admin.must_change_password,
    })
}

/// `POST /auth/login`
pub async fn login(
    State(app): State<App>,
    ctx: AuditContext,
    Json(body): Json<LoginIn>,
) -> ApiResult<axum::Json<TokenOut>> {
    let username: String = body
        .username
        .trim()
        .chars()
        .take(MAX_LOGGED_USERNAME)
        .collect();
    let failed = |event: &str, level: AuditLevel| {
        let mut r = ctx.record(&username, event, "admin", None, vec![]);
        r.success = false;
        r.level = level;
        r
    };
    // The attempt takes its slot before the password is checked, so
    // parallel guesses get no more checks than the limit. Refusals while
    // locked are counted, not audited one by one.
    let attempt = app
        .throttle
        .begin(Realm::Admin, &username, ctx.client_ip)
        .map_err(|l| too_many(l.retry_after, l.by_address))?;
    let creds = app.store.admin_credentials(&username).await?;
    let (admin, hash) = match creds {
        Some((a, h)) => (Some(a), Some(h)),
        None => (None, None),
    };
    let ok = passwords::verify(Secret::new(body.password), hash)
        .await
        .map_err(|_| busy())?;
    match admin {
        Some(admin) if ok && admin.enabled => {
            attempt.succeeded();
            let out = new_session(&app, &admin).await?;
            let r = ctx.record(
                &username,
                "auth.login",
                "admin",
                Some(admin.id.to_string()),
                vec![],
            );
            app.store.append_audit(r).await?;
            Ok(axum::Json(out))
        }
        _ => {
            let lockout = attempt.failed();
            app.store
                .append_audit(failed("auth.login_failed", AuditLevel::Warning))
                .await?;
            app.events.raise(openturret_domain::model::Event::warning(
                "admin.login_refused",
                "",
                "administrator logins were refused (wrong username or password)",
            ));
            if let Some(l) = lockout {
                app.events
                    .raise(crate::throttle::lockout_event(Realm::Admin.as_str(), &l));
                app.store.append_audit(lockout_record(failed, l)).await?;
            }
            Err(ApiError::Unauthorized("wrong username or password"))
        }
    }
}

/// The one audit entry of a lockout: what was locked, after how many
/// failures, for how long.
pub(crate) fn lockout_record(
    failed: impl Fn(&str, AuditLevel) -> openturret_domain::audit::AuditRecord,
    l: crate::throttle::LockoutStarted,
) -> openturret_domain::audit::AuditRecord {
    let event = if l.by_address {
        "auth.address_locked"
    } else {
        "auth.account_locked"
    };
    let mut r = failed(event, AuditLevel::Error);
    r.changes = vec![
        format!("failures={}", l.failures),
        format!("lockout_secs={}", l.lasts.as_secs()),
    ];
    r
}

/// Too many password checks at once: come back in a second.
fn busy() -> ApiError {
    ApiError::TooMany {
        retry_after: Duration::from_secs(1),
        message: "the server is checking many passwords at once; try again in a second".into(),
    }
}

/// `POST /auth/logout`: ends this token's session.
pub async fn logout(State(app): State<App>, auth: AnyAdminAuth) -> ApiResult<StatusCode> {
    app.store.delete_session(auth.token_hash).await?;
    let r = auth.ctx.record(
        &auth.admin.username,
        "auth.logout",
        "admin",
        Some(auth.admin.id.to_string()),
        vec![],
    );
    app.store.append_audit(r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /auth/me`
pub async fn me(auth: AnyAdminAuth) -> axum::Json<AdminOut> {
    axum::Json(AdminOut::from(&auth.admin))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChangeIn {
    pub current_password: String,
    pub new_password: String,
}

/// `POST /auth/password`: changes one's own password (required after the
/// one-time password). Ends every session of the account and returns a new
/// token.
pub async fn change_password(
    State(app): State<App>,
    auth: AnyAdminAuth,
    Json(body): Json<PasswordChangeIn>,
) -> ApiResult<axum::Json<TokenOut>> {
    let name = auth.admin.username.clone();
    let attempt = app
        .throttle
        .begin(Realm::Admin, &name, auth.ctx.client_ip)
        .map_err(|l| too_many(l.retry_after, l.by_address))?;
    let (_, hash) = app
        .store
        .admin_credentials(&name)
        .await?
        .ok_or(ApiError::Unauthorized("account no longer exists"))?;
    if !passwords::verify(Secret::new(body.current_password.clone()), Some(hash))
        .await
        .map_err(|_| busy())?
    {
        attempt.failed();
        let mut r = auth.ctx.record(
            &name,
            "admin.password_change_failed",
            "admin",
            Some(auth.admin.id.to_string()),
            vec![],
        );
        r.success = false;
        r.level = AuditLevel::Warning;
        app.store.append_audit(r).await?;
        return Err(ApiError::invalid("current_password", "is wrong"));
    }
    attempt.succeeded();
    validate::new_password("new_password", &body.new_password, ADMIN_PASSWORD_MIN)?;
    if body.new_password == body.current_password {
        return Err(ApiError::invalid(
            "new_password",
            "must differ from the current password",
        ));
    }
    let hash = passwords::hash(Secret::new(body.new_password)).await;
    let r = auth.ctx.record(
        &name,
        "admin.password_changed",
        "admin",
        Some(auth.admin.id.to_string()),
        vec!["password"],
    );
    let changes = AdminChanges {
        password: Some((hash, false)),
        ..Default::default()
    };
    let admin = app.store.update_admin(auth.admin.id, changes, r).await?;
    Ok(axum::Json(new_session(&app, &admin).await?))
}

#[derive(Serialize)]
pub struct LockoutOut {
    realm: &'static str,
    /// The account locked from `address`; absent when the address itself
    /// is locked (every account of the realm from it).
    username: Option<String>,
    address: String,
    retry_after_secs: u64,
    /// Attempts refused since the lockout began.
    refused: u64,
}

/// `GET /lockouts`: accounts (from an address) and addresses locked out now.
pub async fn lockouts(State(app): State<App>, _auth: AdminAuth) -> axum::Json<Vec<LockoutOut>> {
    axum::Json(
        app.throttle
            .lockouts()
            .into_iter()
            .map(|l| LockoutOut {
                realm: l.realm.as_str(),
                username: l.username,
                address: l.address.to_string(),
                retry_after_secs: l.remaining.as_secs().max(1),
                refused: l.refused,
            })
            .collect(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearIn {
    /// `admin` (default), `profile` or `master`.
    pub realm: Option<String>,
    pub username: Option<String>,
    pub address: Option<String>,
}

#[derive(Serialize)]
pub struct ClearOut {
    cleared: bool,
}

/// `POST /lockouts/clear`: lifts the lockout of a username or an address.
pub async fn clear_lockout(
    State(app): State<App>,
    auth: AdminAuth,
    Json(body): Json<ClearIn>,
) -> ApiResult<axum::Json<ClearOut>> {
    let realm = match body.realm.as_deref() {
        None => Realm::Admin,
        Some(r) => Realm::parse(r)
            .ok_or_else(|| ApiError::invalid("realm", "must be admin, profile or master"))?,
    };
    let cleared = match (&body.username, &body.address) {
        (Some(u), None) => app.throttle.clear_user(realm, u.trim()),
        (None, Some(a)) => {
            let ip = a
                .trim()
                .parse()
                .map_err(|_| ApiError::invalid("address", "must be an IP address"))?;
            app.throttle.clear_address(ip)
        }
        _ => {
            return Err(ApiError::invalid(
                "username",
                "give either username or address",
            ));
        }
    };
    let kind = if body.username.is_some() {
        "username"
    } else {
        "address"
    };
    let r = auth.record("auth.lockout_lifted", "lockout", None, vec![kind]);
    app.store.append_audit(r).await?;
    Ok(axum::Json(ClearOut { cleared }))
}
