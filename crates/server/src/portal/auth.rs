//! Sign-in, the forced change of the one-time password, sign-out.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::extract::{self, LOGIN_COOKIE, Portal, PortalForm, SESSION_COOKIE, cookie};
use super::layout::{self, FormState, field};
use crate::App;
use crate::audit::AuditContext;
use crate::http::error::ApiError;
use crate::http::extract::{AnyAdminAuth, Json};
use crate::http::{auth as api, extract::token_hash};
use crate::passwords;

fn login_form(token: &str, username: &str, error: Option<&str>) -> maud::Markup {
    let state = FormState::with_values("login", &[("username", username)]);
    layout::bare_page(
        "Sign in",
        html! {
            @if let Some(e) = error { p.error-box role="alert" { (e) } }
            form method="post" action="/login" {
                input type="hidden" name="_csrf" value=(token);
                (field(&state, "Username", "username", "text", None))
                div.field {
                    label for="login-password" { "Password" }
                    input #login-password name="password" type="password" autocomplete="current-password" required;
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

fn with_login_cookie(status: StatusCode, token: &str, body: maud::Markup) -> Response {
    let mut res = layout::respond(status, body);
    if let Ok(v) = extract::set_cookie(LOGIN_COOKIE, token).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

/// `GET /login`
pub async fn login_page(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(t) = cookie(&headers, SESSION_COOKIE) {
        let now = openturret_domain::Timestamp::now();
        if let Ok(Some(_)) = app.store.session_admin(token_hash(&t), now).await {
            return Redirect::to("/profiles").into_response();
        }
    }
    let token = passwords::random_token(16);
    with_login_cookie(StatusCode::OK, &token, login_form(&token, "", None))
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default, rename = "_csrf")]
    csrf: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /login`
pub async fn login(
    State(app): State<App>,
    headers: HeaderMap,
    ctx: AuditContext,
    Form(f): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if extract::cross_site(&headers) || expected.is_empty() || !extract::same(&expected, &f.csrf) {
        return extract::forbidden(
            "This sign-in form has expired. Go back, reload the page and try again.",
        );
    }
    let body = api::LoginIn {
        username: f.username.clone(),
        password: f.password,
    };
    match api::login(State(app), ctx, Json(body)).await {
        Ok(token) => {
            let next = if token.must_change_password {
                "/password"
            } else {
                "/profiles"
            };
            let mut res = Redirect::to(next).into_response();
            let h = res.headers_mut();
            if let Ok(v) = extract::set_cookie(SESSION_COOKIE, &token.token).parse() {
                h.append(header::SET_COOKIE, v);
            }
            if let Ok(v) = extract::clear_cookie(LOGIN_COOKIE).parse() {
                h.append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => {
            let (status, msg) = match e {
                ApiError::TooMany { message, .. } => (StatusCode::TOO_MANY_REQUESTS, message),
                ApiError::Unauthorized(_) => (
                    StatusCode::UNAUTHORIZED,
                    "Wrong username or password.".into(),
                ),
                other => return other.into_response(),
            };
            let token = passwords::random_token(16);
            let mut msg = msg;
            if let Some(c) = msg.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            with_login_cookie(status, &token, login_form(&token, &f.username, Some(&msg)))
        }
    }
}

#[derive(Deserialize)]
pub struct Empty {}

/// `POST /logout`
pub async fn logout(State(app): State<App>, PortalForm(p, _): PortalForm<Empty>) -> Response {
    let any = AnyAdminAuth {
        admin: p.auth.admin.clone(),
        ctx: p.auth.ctx.clone(),
        token_hash: p.session,
    };
    if let Err(e) = api::logout(State(app.clone()), any).await {
        return e.into_response();
    }
    app.portal.forget(p.session).await;
    let mut res = Redirect::to("/login").into_response();
    if let Ok(v) = extract::clear_cookie(SESSION_COOKIE).parse() {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
    res
}

fn password_form(p: &Portal, state: &FormState) -> maud::Markup {
    let must = p.auth.admin.must_change_password;
    html! {
        @if must {
            p.warning { "You signed in with a one-time password. Choose your own password to continue." }
        }
        @if let Some(e) = state.general_error(&["current_password", "new_password", "confirm"]) {
            p.error-box role="alert" { (e) }
        }
        form method="post" action="/password" {
            (layout::csrf(p))
            (field(state, if must { "One-time password" } else { "Current password" }, "current_password", "password", None))
            (field(state, "New password", "new_password", "password", Some("At least 12 characters.")))
            (field(state, "New password again", "confirm", "password", None))
            button type="submit" { "Change password" }
        }
    }
}

fn password_page_for(p: &Portal, state: &FormState, status: StatusCode) -> Response {
    let content = password_form(p, state);
    let body = layout::bare_page("Change your password", content);
    layout::respond(status, body)
}

/// `GET /password`
pub async fn password_page(p: Portal) -> Response {
    password_page_for(
        &p,
        &FormState {
            form: "pw",
            ..Default::default()
        },
        StatusCode::OK,
    )
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm: String,
}

/// `POST /password`
pub async fn change_password(
    State(app): State<App>,
    PortalForm(p, f): PortalForm<PasswordForm>,
) -> Response {
    let fail = |field: &str, msg: String| {
        let state = FormState {
            error: Some((field.to_string(), msg)),
            form: "pw",
            ..Default::default()
        };
        password_page_for(&p, &state, StatusCode::UNPROCESSABLE_ENTITY)
    };
    if f.new_password != f.confirm {
        return fail("confirm", "The two new passwords differ.".into());
    }
    let any = AnyAdminAuth {
        admin: p.auth.admin.clone(),
        ctx: p.auth.ctx.clone(),
        token_hash: p.session,
    };
    let body = api::PasswordChangeIn {
        current_password: f.current_password,
        new_password: f.new_password,
    };
    match api::change_password(State(app.clone()), any, Json(body)).await {
        Ok(token) => {
            app.portal.forget(p.session).await;
            app.portal
                .flash(token_hash(&token.token), "Your password was changed.")
                .await;
            let mut res = Redirect::to("/profiles").into_response();
            if let Ok(v) = extract::set_cookie(SESSION_COOKIE, &token.token).parse() {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            res
        }
        Err(e) => match layout::form_error(e) {
            Ok((field, msg)) => fail(&field, msg),
            Err(e) => e.into_response(),
        },
    }
}
