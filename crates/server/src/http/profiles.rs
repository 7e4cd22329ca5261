//! Profiles (SPEC §2, rules 2, 3, 6, 8) and consent records.

use axum::extract::State;
use axum::http::StatusCode;
use openturret_domain::model::*;
use openturret_domain::secret::{PasswordHash, Secret};
use openturret_domain::{ConsentId, ProfileId, Timestamp, validate};
use openturret_store::ProfileSort;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{AdminAuth, Json, PathId, Query};
use super::{double_option, limit, parse_ts};
use crate::{App, callmem, passwords};

#[derive(Serialize)]
pub struct ProfileOut {
    id: i64,
    name: String,
    has_contacts_password: bool,
    has_call_memory_password: bool,
    collect_call_memory: bool,
    allow_call_memory_deletion: bool,
    call_memory_password_protected: bool,
    handsets: u8,
    speakers: u8,
    created_at: String,
    updated_at: String,
}

impl From<Profile> for ProfileOut {
    fn from(p: Profile) -> Self {
        ProfileOut {
            id: p.id.0,
            name: p.name,
            has_contacts_password: p.has_contacts_password,
            has_call_memory_password: p.has_call_memory_password,
            collect_call_memory: p.flags.collect_call_memory,
            allow_call_memory_deletion: p.flags.allow_call_memory_deletion,
            call_memory_password_protected: p.flags.call_memory_password_protected,
            handsets: p.flags.handsets,
            speakers: p.flags.speakers,
            created_at: p.created_at.rfc3339(),
            updated_at: p.updated_at.rfc3339(),
        }
    }
}

#[derive(Serialize)]
pub struct ProfilePage {
    items: Vec<ProfileOut>,
    total: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// Part of the name, any case.
    pub q: Option<String>,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    /// `name` (default), `-name`, `created` or `-created`.
    pub sort: Option<String>,
}

/// Parses a profile list order.
pub fn profile_sort(s: Option<&str>) -> ApiResult<ProfileSort> {
    Ok(match s.unwrap_or("name") {
        "name" => ProfileSort::NameAsc,
        "-name" => ProfileSort::NameDesc,
        "created" => ProfileSort::CreatedAsc,
        "-created" => ProfileSort::CreatedDesc,
        _ => {
            return Err(ApiError::invalid(
                "sort",
                "must be name, -name, created or -created",
            ));
        }
    })
}

pub async fn list(
    State(app): State<App>,
    _a: AdminAuth,
    Query(q): Query<ProfileQuery>,
) -> ApiResult<axum::Json<ProfilePage>> {
    let lim = limit(q.limit, 100, 1000)?;
    let offset = q.offset.unwrap_or(0);
    if offset < 0 {
        return Err(ApiError::invalid("offset", "must not be negative"));
    }
    let needle = q.q.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let page = app
        .store
        .list_profiles(needle, profile_sort(q.sort.as_deref())?, lim, offset)
        .await?;
    Ok(axum::Json(ProfilePage {
        items: page.items.into_iter().map(Into::into).collect(),
        total: page.total,
    }))
}

pub async fn get(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ProfileOut>> {
    Ok(axum::Json(
        app.store.get_profile(ProfileId(id)).await?.into(),
    ))
}

/// Validates and hashes an optional profile password given as `field`.
async fn optional_hash(field: &str, v: Option<String>) -> ApiResult<Option<PasswordHash>> {
    match v {
        Some(p) => {
            validate::new_password(field, &p, PROFILE_PASSWORD_MIN)?;
            Ok(Some(passwords::hash(Secret::new(p)).await))
        }
        None => Ok(None),
    }
}

fn protection_needs_password(protected: bool, has_password: bool) -> ApiResult<()> {
    if protected && !has_password {
        return Err(ApiError::invalid(
            "call_memory_password",
            "is required while call memory is password protected",
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileIn {
    pub name: String,
    pub password: String,
    pub contacts_password: Option<String>,
    pub call_memory_password: Option<String>,
    #[serde(default)]
    pub collect_call_memory: bool,
    #[serde(default)]
    pub allow_call_memory_deletion: bool,
    #[serde(default)]
    pub call_memory_password_protected: bool,
    /// Handsets of the turret (1–4, default 2).
    pub handsets: Option<i64>,
    /// Speaker channels of the turret (0–8, default 4).
    pub speakers: Option<i64>,
}

pub async fn create(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<ProfileIn>,
) -> ApiResult<(StatusCode, axum::Json<ProfileOut>)> {
    let p = create_profile(&app, &auth, b).await?;
    Ok((StatusCode::CREATED, axum::Json(p.into())))
}

/// The refusal of a call-memory setup no password can protect.
fn weak_call_memory_password() -> ApiError {
    ApiError::invalid(
        "call_memory_password",
        format!(
            "call memory needs a password of at least {CALL_MEMORY_PASSWORD_MIN} characters to protect it \
             (a short password or PIN is guessed offline in minutes): give a call-memory password of \
             {CALL_MEMORY_PASSWORD_MIN} or more characters, or a longer profile password"
        ),
    )
}

/// Creates a profile (API and portal).
pub async fn create_profile(app: &App, auth: &AdminAuth, b: ProfileIn) -> ApiResult<Profile> {
    let name = profile_name(&b.name)?;
    validate::new_password("password", &b.password, PROFILE_PASSWORD_MIN)?;
    protection_needs_password(
        b.call_memory_password_protected,
        b.call_memory_password.is_some(),
    )?;
    if b.collect_call_memory
        && !protects_call_memory(&b.password)
        && !b
            .call_memory_password
            .as_deref()
            .is_some_and(protects_call_memory)
    {
        return Err(weak_call_memory_password());
    }
    let contacts_password = optional_hash("contacts_password", b.contacts_password).await?;
    let cm_clear = b.call_memory_password.clone();
    let call_memory_password =
        optional_hash("call_memory_password", b.call_memory_password).await?;
    let (handsets, speakers) = speech_unit_counts(b.handsets, b.speakers)?;
    let flags = ProfileFlags {
        collect_call_memory: b.collect_call_memory,
        allow_call_memory_deletion: b.allow_call_memory_deletion,
        call_memory_password_protected: b.call_memory_password_protected,
        handsets: handsets.unwrap_or(DEFAULT_HANDSETS),
        speakers: speakers.unwrap_or(DEFAULT_SPEAKERS),
    };
    let mut changed = vec!["name", "password"];
    if contacts_password.is_some() {
        changed.push("contacts_password");
    }
    if call_memory_password.is_some() {
        changed.push("call_memory_password");
    }
    let call_memory_keys =
        callmem::new_keys(Secret::new(b.password.clone()), cm_clear.map(Secret::new)).await;
    let new = NewProfile {
        name,
        password: passwords::hash(Secret::new(b.password)).await,
        contacts_password,
        call_memory_password,
        flags,
        call_memory_keys,
    };
    let r = auth.record("profile.created", "profile", None, changed);
    Ok(app.store.create_profile(new, r).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    pub name: Option<String>,
    pub password: Option<String>,
    /// `null` removes the contacts password.
    #[serde(default, deserialize_with = "double_option")]
    pub contacts_password: Option<Option<String>>,
    /// `null` removes the call-memory password.
    #[serde(default, deserialize_with = "double_option")]
    pub call_memory_password: Option<Option<String>>,
    pub collect_call_memory: Option<bool>,
    pub allow_call_memory_deletion: Option<bool>,
    pub call_memory_password_protected: Option<bool>,
    pub handsets: Option<i64>,
    pub speakers: Option<i64>,
}

pub async fn update(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
    Json(b): Json<ProfilePatch>,
) -> ApiResult<axum::Json<ProfileOut>> {
    Ok(axum::Json(
        update_profile(&app, &auth, ProfileId(id), b).await?.into(),
    ))
}

/// Changes a profile (API and portal).
pub async fn update_profile(
    app: &App,
    auth: &AdminAuth,
    id: ProfileId,
    b: ProfilePatch,
) -> ApiResult<Profile> {
    let current = app.store.get_profile(id).await?;
    let name = b.name.as_deref().map(profile_name).transpose()?;
    if let Some(p) = &b.password {
        validate::new_password("password", p, PROFILE_PASSWORD_MIN)?;
    }
    let protected = b
        .call_memory_password_protected
        .unwrap_or(current.flags.call_memory_password_protected);
    let has_cm = match &b.call_memory_password {
        Some(v) => v.is_some(),
        None => current.has_call_memory_password,
    };
    protection_needs_password(protected, has_cm)?;
    let hash_opt = |field: &'static str, v: Option<Option<String>>| async move {
        match v {
            Some(inner) => Ok::<_, ApiError>(Some(optional_hash(field, inner).await?)),
            None => Ok(None),
        }
    };
    let new_password = b.password.clone().map(Secret::new);
    let new_cm = b.call_memory_password.clone().map(|o| o.map(Secret::new));
    let current_keys = app.store.call_memory_keys(id).await?;
    let rekeyed = callmem::rekey(current_keys.clone(), new_password, new_cm).await;
    let erase = rekeyed.as_ref().is_some_and(|(_, erase)| *erase);
    // Collecting call memory needs a password that can protect it: one
    // being set now, or a wrap made under a checked one.
    let collect = b
        .collect_call_memory
        .unwrap_or(current.flags.collect_call_memory);
    let touched = b.password.is_some()
        || b.call_memory_password.is_some()
        || b.collect_call_memory == Some(true);
    if collect && touched {
        let keys = rekeyed.as_ref().map_or(&current_keys, |(k, _)| k);
        let wrapped_strong = [
            &keys.wrapped_by_profile_password,
            &keys.wrapped_by_call_memory_password,
        ]
        .into_iter()
        .flatten()
        .any(|w| openturret_store::sealing::is_checked(w));
        let setting_strong = b.password.as_deref().is_some_and(protects_call_memory)
            || b.call_memory_password
                .as_ref()
                .and_then(|o| o.as_deref())
                .is_some_and(protects_call_memory);
        if !wrapped_strong && !setting_strong {
            return Err(weak_call_memory_password());
        }
    }
    let (handsets, speakers) = speech_unit_counts(b.handsets, b.speakers)?;
    let changes = ProfileChanges {
        call_memory_keys: rekeyed.map(|(k, _)| k),
        erase_call_memory: erase,
        name,
        password: optional_hash("password", b.password).await?,
        contacts_password: hash_opt("contacts_password", b.contacts_password).await?,
        call_memory_password: hash_opt("call_memory_password", b.call_memory_password).await?,
        collect_call_memory: b.collect_call_memory,
        allow_call_memory_deletion: b.allow_call_memory_deletion,
        call_memory_password_protected: b.call_memory_password_protected,
        handsets,
        speakers,
    };
    let r = auth.record("profile.updated", "profile", Some(id.to_string()), {
        let mut c = changes.changed_fields(&current);
        if changes.erase_call_memory {
            // Sealed entries no password can open any more are erased.
            c.push("call_memory");
        }
        c
    });
    Ok(app.store.update_profile(id, changes, r).await?)
}

#[derive(Serialize)]
pub struct ErasureOut {
    local_contacts: u64,
    speed_dials: u64,
    call_memory_entries: u64,
    line_assignments: u64,
    consents: u64,
    /// Call data records that keep the call but lose the name.
    cdrs_named: u64,
    /// Always erased with the profile.
    credentials: &'static str,
}

impl From<ProfileErasure> for ErasureOut {
    fn from(e: ProfileErasure) -> Self {
        ErasureOut {
            local_contacts: e.local_contacts,
            speed_dials: e.speed_dials,
            call_memory_entries: e.call_memory_entries,
            line_assignments: e.line_assignments,
            consents: e.consents,
            cdrs_named: e.cdrs_named,
            credentials: "profile, contacts and call-memory passwords",
        }
    }
}

#[derive(Serialize)]
pub struct DeletedOut {
    erased: ErasureOut,
}

/// The audit change list of an erasure: which categories went.
fn erased_fields(e: &ProfileErasure) -> Vec<&'static str> {
    let mut v = vec!["profile", "credentials"];
    for (n, name) in [
        (e.local_contacts, "local_contacts"),
        (e.speed_dials, "speed_dials"),
        (e.call_memory_entries, "call_memory"),
        (e.line_assignments, "line_assignments"),
        (e.consents, "consents"),
        (e.cdrs_named, "cdr_profile_name"),
    ] {
        if n > 0 {
            v.push(name);
        }
    }
    v
}

/// `GET /profiles/{id}/erasure-preview`: what deleting it would erase.
pub async fn erasure_preview(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ErasureOut>> {
    Ok(axum::Json(
        app.store
            .profile_erasure_preview(ProfileId(id))
            .await?
            .into(),
    ))
}

pub async fn delete(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<DeletedOut>> {
    let erased = delete_profile(&app, &auth, ProfileId(id)).await?;
    Ok(axum::Json(DeletedOut {
        erased: erased.into(),
    }))
}

/// Deletes a profile and all it owns (API and portal).
pub async fn delete_profile(
    app: &App,
    auth: &AdminAuth,
    id: ProfileId,
) -> ApiResult<ProfileErasure> {
    let preview = app.store.profile_erasure_preview(id).await?;
    let r = auth.record(
        "profile.deleted",
        "profile",
        Some(id.to_string()),
        erased_fields(&preview),
    );
    let name = app.store.get_profile(id).await?.name;
    let erased = app.store.delete_profile(id, r).await?;
    scrub_cdr_files(app, &name).await;
    Ok(erased)
}

/// Removes an erased profile's name from the rolling CDR files still in
/// the pick-up folder, this node's and (in a sealed note) every other
/// node's on the same database.
async fn scrub_cdr_files(app: &App, name: &str) {
    if let Err(e) = app
        .store
        .signal(crate::cdr::TOPIC, &[name.as_bytes()])
        .await
    {
        tracing::error!(error = %e, "the other nodes were not told to remove an erased profile's name from their CDR files");
    }
    crate::cdr::scrub_name(app, name).await;
}

#[derive(Serialize)]
pub struct ConsentOut {
    id: i64,
    profile_id: i64,
    purpose: String,
    channel: &'static str,
    given_at: String,
    recorded_by: String,
    created_at: String,
}

impl From<Consent> for ConsentOut {
    fn from(c: Consent) -> Self {
        ConsentOut {
            id: c.id.0,
            profile_id: c.profile_id.0,
            purpose: c.purpose,
            channel: c.channel.as_str(),
            given_at: c.given_at.rfc3339(),
            recorded_by: c.recorded_by,
            created_at: c.created_at.rfc3339(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentQuery {
    pub profile_id: Option<i64>,
}

pub async fn list_consents(
    State(app): State<App>,
    _a: AdminAuth,
    Query(q): Query<ConsentQuery>,
) -> ApiResult<axum::Json<Vec<ConsentOut>>> {
    let list = app.store.list_consents(q.profile_id.map(ProfileId)).await?;
    Ok(axum::Json(list.into_iter().map(Into::into).collect()))
}

pub async fn get_consent(
    State(app): State<App>,
    _a: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<ConsentOut>> {
    Ok(axum::Json(
        app.store.get_consent(ConsentId(id)).await?.into(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentIn {
    pub profile_id: i64,
    pub purpose: String,
    /// `paper`, `email` or `electronic`.
    pub channel: String,
    /// When the consent was given; default now.
    pub given_at: Option<String>,
}

pub async fn create_consent(
    State(app): State<App>,
    auth: AdminAuth,
    Json(b): Json<ConsentIn>,
) -> ApiResult<(StatusCode, axum::Json<ConsentOut>)> {
    let c = record_consent(&app, &auth, b).await?;
    Ok((StatusCode::CREATED, axum::Json(c.into())))
}

/// Records a consent (API and portal).
pub async fn record_consent(app: &App, auth: &AdminAuth, b: ConsentIn) -> ApiResult<Consent> {
    let new = NewConsent {
        profile_id: ProfileId(b.profile_id),
        purpose: consent_purpose(&b.purpose)?,
        channel: ConsentChannel::parse(&b.channel)?,
        given_at: match &b.given_at {
            Some(s) => parse_ts("given_at", s)?,
            None => Timestamp::now(),
        },
        recorded_by: auth.admin.username.clone(),
    };
    let r = auth.record(
        "consent.recorded",
        "consent",
        Some(format!("{}/", b.profile_id)),
        vec!["purpose", "channel", "given_at"],
    );
    app.store.create_consent(new, r).await.map_err(|e| match e {
        openturret_store::StoreError::NotFound(_) => {
            ApiError::invalid("profile_id", "no such profile")
        }
        other => other.into(),
    })
}

/// `POST /consents/{id}/withdraw`: withdrawal equals deletion of the
/// profile (SPEC rule 8); answers what was erased.
pub async fn withdraw_consent(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::Json<DeletedOut>> {
    let erased = withdraw(&app, &auth, ConsentId(id)).await?;
    Ok(axum::Json(DeletedOut {
        erased: erased.into(),
    }))
}

/// Withdraws a consent, erasing its profile (API and portal).
pub async fn withdraw(app: &App, auth: &AdminAuth, id: ConsentId) -> ApiResult<ProfileErasure> {
    let consent = app.store.get_consent(id).await?;
    let preview = app
        .store
        .profile_erasure_preview(consent.profile_id)
        .await?;
    let r = auth.record(
        "consent.withdrawn",
        "consent",
        Some(format!("{}/{}", consent.profile_id, consent.id)),
        erased_fields(&preview),
    );
    let name = app.store.get_profile(consent.profile_id).await?.name;
    let erased = app.store.withdraw_consent(consent.id, r).await?;
    scrub_cdr_files(app, &name).await;
    Ok(erased)
}

/// The subject access export of a profile, as a ZIP download (API and
/// portal). Never includes call memory: an administrator cannot open it.
pub async fn subject_export_response(
    app: &App,
    auth: &AdminAuth,
    id: ProfileId,
) -> ApiResult<axum::response::Response> {
    super::audited_zip(
        app,
        auth,
        crate::subject::export(app, id, None, true).await,
        "profile.subject_exported",
        "profile",
        id.to_string(),
        &format!("subject-{id}.zip"),
    )
    .await
}

/// `GET /profiles/{id}/subject-export`
pub async fn subject_export(
    State(app): State<App>,
    auth: AdminAuth,
    PathId(id): PathId,
) -> ApiResult<axum::response::Response> {
    subject_export_response(&app, &auth, ProfileId(id)).await
}
