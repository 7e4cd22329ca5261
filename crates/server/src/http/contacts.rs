//! Local contacts and speed dial keys of a profile, and global contacts.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::*;
use openturret_domain::number::looks_like_number;
use openturret_domain::{GlobalContactId, LocalContactId, ProfileId, SpeedDialId};
use openturret_store::GlobalContactQuery;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json, PathId, PathIds, Query};
use super::limit;
use crate::App;

#[derive(Serialize)]
pub struct ContactOut {
    id: i64,
    name: String,
    number: String,
    field3: String,
    field4: String,
    created_at: String,
    updated_at: String,
}

impl From<LocalContact> for ContactOut {
    fn from(c: LocalContact) -> Self {
        ContactOut {
            id: c.id.0,
            name: c.fields.name,
            number: c.fields.number,
            field3: c.fields.field3,
            field4: c.fields.field4,
            created_at: c.created_at.rfc3339(),
            updated_at: c.updated_at.rfc3339(),
        }
    }
}

impl From<GlobalContact> for ContactOut {
    fn from(c: GlobalContact) -> Self {
        ContactOut {
            id: c.id.0,
            name: c.fields.name,
            number: c.fields.number,
            field3: c.fields.field3,
            field4: c.fields.field4,
            created_at: c.created_at.rfc3339(),
            updated_at: c.updated_at.rfc3339(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactIn {
    pub name: String,
    pub number: String,
    #[serde(default)]
    pub field3: String,
    #[serde(default)]
    pub field4: String,
}

impl ContactIn {
    fn fields(&self) -> ApiResult<ContactFields> {
        Ok(ContactFields::new(
            &self.name,
            &self.number,
            &self.field3,
            &self.field4,
        )?)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPatch {
    pub name: Option<String>,
    pub number: Option<String>,
    pub field3: Option<String>,
    pub field4: Option<String>,
}

impl ContactPatch {
    fn apply(self, cur: &ContactFields) -> ApiResult<ContactFields> {
        Ok(cur.patched(
            self.name.as_deref(),
            self.number.as_deref(),
            self.field3.as_deref(),
            self.field4.as_deref(),
        )?)
    }
}

const CONTACT_FIELDS: [&str; 4] = ["name", "number", "field3", "field4"];

pub async fn list_local(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(pid): PathId,
) -> ApiResult<axum::Json<Vec<ContactOut>>> {
    let pid = ProfileId(pid);
    app.store.get_profile(pid).await?;
    let list = app.store.list_local_contacts(pid).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

pub async fn get_local(
    State(app): State<App>,
    _a: AdminAuth,
    PathIds(pid, cid): PathIds,
) -> ApiResult<axum::Json<ContactOut>> {
    let c = app
        .store
        .get_local_contact(ProfileId(pid), LocalContactId(cid))
        .await?;
    Ok(axum::Json(c.into()))
}

pub async fn create_local(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(pid): PathId,
    Json(b): Json<ContactIn>,
) -> ApiResult<(StatusCode, axum::Json<ContactOut>)> {
    let f = b.fields()?;
    let r = auth.record(
        "local_contact.created",
        "local_contact",
        Some(format!("{pid}/")),
        CONTACT_FIELDS.to_vec(),
    );
    let c = app.store.create_local_contact(ProfileId(pid), f, r).await?;
    Ok((StatusCode::CREATED, axum::Json(c.into())))
}

pub async fn update_local(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, cid): PathIds,
    Json(b): Json<ContactPatch>,
) -> ApiResult<axum::Json<ContactOut>> {
    let (p, id) = (ProfileId(pid), LocalContactId(cid));
    let cur = app.store.get_local_contact(p, id).await?;
    let f = b.apply(&cur.fields)?;
    let r = auth.record(
        "local_contact.updated",
        "local_contact",
        Some(format!("{pid}/{cid}")),
        f.changed_fields(&cur.fields),
    );
    Ok(axum::Json(
        app.store.update_local_contact(p, id, f, r).await?.into(),
    ))
}

pub async fn delete_local(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, cid): PathIds,
) -> ApiResult<StatusCode> {
    let r = auth.record(
        "local_contact.deleted",
        "local_contact",
        Some(format!("{pid}/{cid}")),
        vec![],
    );
    app.store
        .delete_local_contact(ProfileId(pid), LocalContactId(cid), r)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub struct SpeedDialOut {
    id: i64,
    kind: &'static str,
    position: u32,
    name: String,
    number: String,
}

impl From<SpeedDial> for SpeedDialOut {
    fn from(k: SpeedDial) -> Self {
        SpeedDialOut {
            id: k.id.0,
            kind: k.fields.kind.as_str(),
            position: k.fields.position,
            name: k.fields.name,
            number: k.fields.number,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedDialIn {
    /// `DKA` or `DKM`.
    pub kind: String,
    pub position: i64,
    pub name: String,
    pub number: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpeedDialPatch {
    pub kind: Option<String>,
    pub position: Option<i64>,
    pub name: Option<String>,
    pub number: Option<String>,
}

pub async fn list_keys(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(pid): PathId,
) -> ApiResult<axum::Json<Vec<SpeedDialOut>>> {
    let pid = ProfileId(pid);
    app.store.get_profile(pid).await?;
    let list = app.store.list_speed_dials(pid).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

pub async fn get_key(
    State(app): State<App>,
    _a: AdminAuth,
    PathIds(pid, kid): PathIds,
) -> ApiResult<axum::Json<SpeedDialOut>> {
    Ok(axum::Json(
        app.store
            .get_speed_dial(ProfileId(pid), SpeedDialId(kid))
            .await?
            .into(),
    ))
}

pub async fn create_key(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(pid): PathId,
    Json(b): Json<SpeedDialIn>,
) -> ApiResult<(StatusCode, axum::Json<SpeedDialOut>)> {
    let f = SpeedDialFields::new(&b.kind, b.position, &b.name, &b.number)?;
    let r = auth.record(
        "speed_dial.created",
        "speed_dial",
        Some(format!("{pid}/")),
        vec!["kind", "position", "name", "number"],
    );
    let k = app.store.create_speed_dial(ProfileId(pid), f, r).await?;
    Ok((StatusCode::CREATED, axum::Json(k.into())))
}

pub async fn update_key(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, kid): PathIds,
    Json(b): Json<SpeedDialPatch>,
) -> ApiResult<axum::Json<SpeedDialOut>> {
    let (p, id) = (ProfileId(pid), SpeedDialId(kid));
    let cur = app.store.get_speed_dial(p, id).await?.fields;
    let f = SpeedDialFields::new(
        b.kind.as_deref().unwrap_or(cur.kind.as_str()),
        b.position.unwrap_or(cur.position as i64),
        b.name.as_deref().unwrap_or(&cur.name),
        b.number.as_deref().unwrap_or(&cur.number),
    )?;
    let r = auth.record(
        "speed_dial.updated",
        "speed_dial",
        Some(format!("{pid}/{kid}")),
        f.changed_fields(&cur),
    );
    Ok(axum::Json(
        app.store.update_speed_dial(p, id, f, r).await?.into(),
    ))
}

pub async fn delete_key(
    State(app): State<App>,
    auth: AdminAuth,
    PathIds(pid, kid): PathIds,
) -> ApiResult<StatusCode> {
    let r = auth.record(
        "speed_dial.deleted",
        "speed_dial",
        Some(format!("{pid}/{kid}")),
        vec![],
    );
    app.store
        .delete_speed_dial(ProfileId(pid), SpeedDialId(kid), r)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalQuery {
    /// A name prefix or, when it looks like a number, a number prefix.
    pub q: Option<String>,
    /// Name prefix, any case.
    pub name: Option<String>,
    /// Number prefix, in any written form (`+44 20`, `020`).
    pub number: Option<String>,
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Serialize)]
pub struct GlobalPage {
    items: Vec<ContactOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

pub async fn search_global(
    State(app): State<App>,
    _a: AdminAuth,
    Query(q): Query<GlobalQuery>,
) -> ApiResult<axum::Json<GlobalPage>> {
    let lim = limit(q.limit, 50, 500)?;
    let clean = |s: Option<String>| s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    let (mut name, mut number) = (clean(q.name), clean(q.number));
    if let Some(term) = clean(q.q) {
        if looks_like_number(&term) {
            number = number.or(Some(term));
        } else {
            name = name.or(Some(term));
        }
    }
    if number
        .as_deref()
        .is_some_and(|n| !n.chars().any(|c| c.is_ascii_digit()))
    {
        return Err(ApiError::invalid("number", "must contain a digit"));
    }
    let after = match q.cursor.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
        Some(c) => Some(GlobalContactId(c.parse().map_err(|_| {
            ApiError::invalid("cursor", "is not a cursor from this API")
        })?)),
        None => None,
    };
    let query = GlobalContactQuery {
        name,
        number_prefix: number,
        after,
        limit: lim + 1,
    };
    let mut items = app.store.search_global_contacts(&query).await?;
    let more = items.len() as i64 > lim;
    items.truncate(lim as usize);
    let next_cursor = more
        .then(|| items.last().map(|c| c.id.0.to_string()))
        .flatten();
    Ok(axum::Json(GlobalPage {
        items: items.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

pub async fn get_global(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ContactOut>> {
    Ok(axum::Json(
        app.store
            .get_global_contact(GlobalContactId(id))
            .await?
            .into(),
    ))
}

pub async fn create_global(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<ContactIn>,
) -> ApiResult<(StatusCode, axum::Json<ContactOut>)> {
    let f = b.fields()?;
    let r = auth.record(
        "global_contact.created",
        "global_contact",
        None,
        CONTACT_FIELDS.to_vec(),
    );
    let c = app.store.create_global_contact(f, r).await?;
    Ok((StatusCode::CREATED, axum::Json(c.into())))
}

pub async fn update_global(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(b): Json<ContactPatch>,
) -> ApiResult<axum::Json<ContactOut>> {
    let id = GlobalContactId(id);
    let cur = app.store.get_global_contact(id).await?;
    let f = b.apply(&cur.fields)?;
    let r = auth.record(
        "global_contact.updated",
        "global_contact",
        Some(id.to_string()),
        f.changed_fields(&cur.fields),
    );
    Ok(axum::Json(
        app.store.update_global_contact(id, f, r).await?.into(),
    ))
}

pub async fn delete_global(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<StatusCode> {
    let r = auth.record(
        "global_contact.deleted",
        "global_contact",
        Some(id.to_string()),
        vec![],
    );
    app.store
        .delete_global_contact(GlobalContactId(id), r)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
