//! The items of a profile edited from its page: local contacts, speed
//! dial keys and line keys.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::html;
use openturret_domain::{LocalContactId, ProfileId};
use serde::Deserialize;

use super::extract::{Portal, PortalForm};
use super::layout::{self, FormState, field, page_with_status};
use super::profiles::{Forms, done, render_detail};
use crate::App;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{Json, PathId, PathIds};
use crate::http::{contacts as api_contacts, lines as api_lines};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/profiles/{id}/contacts", post(add_contact))
        .route(
            "/profiles/{id}/contacts/{contact_id}",
            get(contact_page).post(update_contact),
        )
        .route(
            "/profiles/{id}/contacts/{contact_id}/delete",
            post(delete_contact),
        )
        .route("/profiles/{id}/speed-dials", post(add_key))
        .route(
            "/profiles/{id}/speed-dials/{key_id}/delete",
            post(delete_key),
        )
        .route("/profiles/{id}/lines", post(assign_line))
        .route("/profiles/{id}/lines/{line_id}/delete", post(remove_line))
}

/// After a change to one of a profile's items: back to the profile page
/// at `anchor` with `message`, or the page again with the failed form
/// (built by `forms` from the field error) and status 422.
async fn item_done<T>(
    app: &App,
    p: &Portal,
    id: i64,
    result: ApiResult<T>,
    anchor: &str,
    message: &str,
    forms: impl FnOnce((String, String)) -> Forms,
) -> Response {
    let err = match result {
        Ok(_) => {
            p.flash(app, message).await;
            return Redirect::to(&format!("/profiles/{id}#{anchor}")).into_response();
        }
        Err(e) => match layout::form_error(e) {
            Ok(err) => err,
            Err(e) => return e.into_response(),
        },
    };
    render_detail(app, p, id, forms(err), StatusCode::UNPROCESSABLE_ENTITY).await
}

/// The four fields of a contact form (local or global).
#[derive(Deserialize)]
pub struct ContactFormFields {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub number: String,
    #[serde(default)]
    pub field3: String,
    #[serde(default)]
    pub field4: String,
}

impl ContactFormFields {
    pub fn state(&self, form: &'static str, err: (String, String)) -> FormState {
        let mut s = FormState::with_values(
            form,
            &[
                ("name", &self.name),
                ("number", &self.number),
                ("field3", &self.field3),
                ("field4", &self.field4),
            ],
        );
        s.error = Some(err);
        s
    }
}

async fn add_contact(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<ContactFormFields>,
) -> Response {
    let body = api_contacts::ContactIn {
        name: f.name.clone(),
        number: f.number.clone(),
        field3: f.field3.clone(),
        field4: f.field4.clone(),
    };
    let r = api_contacts::create_local(State(app.clone()), p.auth.clone(), PathId(id), Json(body))
        .await;
    item_done(&app, &p, id, r, "contacts", "Contact added.", |err| Forms {
        contact: Some(f.state("contact", err)),
        ..Default::default()
    })
    .await
}

fn contact_form_page(
    p: &Portal,
    pid: i64,
    cid: i64,
    state: &FormState,
    status: StatusCode,
) -> Response {
    let content = html! {
        section.card {
            @if let Some(e) = state.general_error(&["name", "number", "field3", "field4"]) { p.error-box role="alert" { (e) } }
            form method="post" action=(format!("/profiles/{pid}/contacts/{cid}")) {
                (layout::csrf(p))
                (field(state, "Name", "name", "text", None))
                (field(state, "Number", "number", "tel", None))
                (field(state, "Field 3", "field3", "text", None))
                (field(state, "Field 4", "field4", "text", None))
                button type="submit" { "Save contact" } " "
                a href=(format!("/profiles/{pid}#contacts")) { "Cancel" }
            }
        }
    };
    page_with_status(p, "/profiles", "Edit contact", status, content)
}

async fn contact_page(State(app): State<App>, p: Portal, PathIds(pid, cid): PathIds) -> Response {
    match app
        .store
        .get_local_contact(ProfileId(pid), LocalContactId(cid))
        .await
    {
        Ok(c) => {
            let f = &c.fields;
            let state = FormState::with_values(
                "contact",
                &[
                    ("name", &f.name),
                    ("number", &f.number),
                    ("field3", &f.field3),
                    ("field4", &f.field4),
                ],
            );
            contact_form_page(&p, pid, cid, &state, StatusCode::OK)
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}

async fn update_contact(
    State(app): State<App>,
    PathIds(pid, cid): PathIds,
    PortalForm(p, f): PortalForm<ContactFormFields>,
) -> Response {
    let body = api_contacts::ContactPatch {
        name: Some(f.name.clone()),
        number: Some(f.number.clone()),
        field3: Some(f.field3.clone()),
        field4: Some(f.field4.clone()),
    };
    let r = api_contacts::update_local(
        State(app.clone()),
        p.auth.clone(),
        PathIds(pid, cid),
        Json(body),
    )
    .await;
    done(
        &app,
        &p,
        r,
        &format!("/profiles/{pid}#contacts"),
        "Contact saved.",
        |err| {
            contact_form_page(
                &p,
                pid,
                cid,
                &f.state("contact", err),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
        },
    )
    .await
}

async fn delete_contact(
    State(app): State<App>,
    PathIds(pid, cid): PathIds,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api_contacts::delete_local(State(app.clone()), p.auth.clone(), PathIds(pid, cid)).await;
    done(
        &app,
        &p,
        r,
        &format!("/profiles/{pid}#contacts"),
        "Contact deleted.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    kind: String,
    #[serde(default)]
    position: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    number: String,
}

/// A whole number typed into `field`.
pub fn number_field(field: &str, v: &str) -> ApiResult<i64> {
    v.trim()
        .parse()
        .map_err(|_| ApiError::invalid(field, "must be a whole number"))
}

async fn add_key(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<KeyForm>,
) -> Response {
    let r = match number_field("position", &f.position) {
        Ok(position) => {
            let body = api_contacts::SpeedDialIn {
                kind: f.kind.clone(),
                position,
                name: f.name.clone(),
                number: f.number.clone(),
            };
            api_contacts::create_key(State(app.clone()), p.auth.clone(), PathId(id), Json(body))
                .await
                .map(|_| ())
        }
        Err(e) => Err(e),
    };
    item_done(&app, &p, id, r, "keys", "Speed dial key added.", |err| {
        let mut s = FormState::with_values(
            "key",
            &[
                ("kind", &f.kind),
                ("position", &f.position),
                ("name", &f.name),
                ("number", &f.number),
            ],
        );
        s.error = Some(err);
        Forms {
            key: Some(s),
            ..Default::default()
        }
    })
    .await
}

async fn delete_key(
    State(app): State<App>,
    PathIds(pid, kid): PathIds,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api_contacts::delete_key(State(app.clone()), p.auth.clone(), PathIds(pid, kid)).await;
    done(
        &app,
        &p,
        r,
        &format!("/profiles/{pid}#keys"),
        "Speed dial key removed.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}

#[derive(Deserialize)]
pub struct LineKeyForm {
    #[serde(default)]
    line_id: String,
    #[serde(default)]
    position: String,
}

async fn assign_line(
    State(app): State<App>,
    PathId(id): PathId,
    PortalForm(p, f): PortalForm<LineKeyForm>,
) -> Response {
    let r = async {
        let line = number_field("line_id", &f.line_id)?;
        let position = number_field("position", &f.position)?;
        api_lines::assign(
            State(app.clone()),
            p.auth.clone(),
            PathIds(id, line),
            Json(api_lines::AssignIn { position }),
        )
        .await
    }
    .await;
    item_done(&app, &p, id, r, "lines", "Line key added.", |err| {
        let mut s = FormState::with_values(
            "linekey",
            &[("line_id", &f.line_id), ("position", &f.position)],
        );
        s.error = Some(err);
        Forms {
            line: Some(s),
            ..Default::default()
        }
    })
    .await
}

async fn remove_line(
    State(app): State<App>,
    PathIds(pid, lid): PathIds,
    PortalForm(p, _): PortalForm<super::auth::Empty>,
) -> Response {
    let r = api_lines::unassign(State(app.clone()), p.auth.clone(), PathIds(pid, lid)).await;
    done(
        &app,
        &p,
        r,
        &format!("/profiles/{pid}#lines"),
        "Line key removed.",
        |(_, m)| (StatusCode::UNPROCESSABLE_ENTITY, m).into_response(),
    )
    .await
}
