//! The OpenAPI 3 document served at `/api/openapi.json`, written beside the
//! router. Drift is caught both ways: the router records every operation it
//! routes (`http::operations`) and `http::tests::the_document_and_the_router_name_the_same_operations`
//! compares them with this document; `tests/api.rs`
//! `every_operation_answers_as_the_document_says` calls every operation and
//! holds each answer's status and body to what is documented here.

use serde_json::{Map, Value, json};

fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn array(item: Value) -> Value {
    json!({"type": "array", "items": item})
}

fn obj(required: &[&str], props: &[(&str, Value)]) -> Value {
    let mut p = Map::new();
    for (k, v) in props {
        p.insert(k.to_string(), v.clone());
    }
    json!({"type": "object", "required": required, "properties": p, "additionalProperties": false})
}

fn s() -> Value {
    json!({"type": "string"})
}
fn b() -> Value {
    json!({"type": "boolean"})
}
fn handsets() -> Value {
    json!({"type": "integer", "minimum": 1, "maximum": 4, "description": "handsets of the profile's turret (default 2)"})
}

fn speakers() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": 8, "description": "speaker channels of the profile's turret (default 4)"})
}

fn i() -> Value {
    json!({"type": "integer", "format": "int64"})
}
fn t() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn nullable_s() -> Value {
    json!({"type": "string", "nullable": true})
}
fn recorder_transport() -> Value {
    json!({"type": "string", "enum": ["udp", "tcp", "tls"], "description": "default udp; sips: means tls"})
}

fn secret(what: &str) -> Value {
    json!({"type": "string", "format": "password", "writeOnly": true, "description": what})
}

fn pseudonymisation() -> Value {
    json!({"type": "string", "enum": ["off", "keyed_hash", "truncate"],
        "description": "how numbers are shown to external applications"})
}

fn cdr_field() -> Value {
    json!({"type": "string", "enum": ["profile_name", "attendant_group", "called_number", "calling_number",
        "duration_ms", "call_type", "direction", "started_at", "ended_at"]})
}

fn cdr_files() -> Value {
    json!({"type": "string", "enum": ["off", "csv", "jsonl", "both"]})
}

fn answer_mode() -> Value {
    json!({"type": "string", "enum": ["manual", "automatic"], "default": "manual",
        "description": "automatic: calls are answered at once on a speaker (intercom)"})
}

fn schemas() -> Value {
    let contact = obj(
        &[
            "id",
            "name",
            "number",
            "field3",
            "field4",
            "created_at",
            "updated_at",
        ],
        &[
            ("id", i()),
            ("name", s()),
            ("number", s()),
            ("field3", s()),
            ("field4", s()),
            ("created_at", t()),
            ("updated_at", t()),
        ],
    );
    json!({
        "ExtError": obj(&["error"], &[("error", obj(&["code", "message"], &[("code", i()), ("message", s())]))]),
        "ExtLine": obj(&["line_id", "name", "display_name", "state"], &[("line_id", i()), ("name", s()),
            ("display_name", s()), ("state", s()), ("reason", nullable_s())]),
        "Error": obj(&["error", "message"], &[
            ("error", json!({"type": "string", "description": "unauthorized, password_change_required, not_found, invalid, duplicate, invalid_body, too_many_attempts, internal"})),
            ("message", s()),
            ("field", json!({"type": "string", "description": "the field that was rejected (422)"})),
            ("retry_after_secs", i()),
        ]),
        "LoginRequest": obj(&["username", "password"], &[("username", s()), ("password", secret("the password"))]),
        "Token": obj(&["token", "expires_at", "must_change_password"], &[
            ("token", json!({"type": "string", "description": "send as Authorization: Bearer <token>"})),
            ("expires_at", t()), ("must_change_password", b())]),
        "PasswordChange": obj(&["current_password", "new_password"], &[
            ("current_password", secret("the current password")),
            ("new_password", secret("at least 12 characters"))]),
        "Admin": obj(&["id", "username", "enabled", "must_change_password", "created_at", "updated_at"], &[
            ("id", i()), ("username", s()), ("enabled", b()), ("must_change_password", b()),
            ("created_at", t()), ("updated_at", t())]),
        "AdminCreate": obj(&["username", "password"], &[("username", s()),
            ("password", secret("at least 12 characters")), ("must_change_password", b())]),
        "AdminPatch": obj(&[], &[("enabled", b())]),
        "PasswordReset": obj(&["password"], &[("password", secret("at least 12 characters")),
            ("must_change_password", b())]),
        "Lockout": obj(&["realm", "address", "retry_after_secs", "refused"], &[
            ("realm", json!({"type": "string", "enum": ["admin", "profile", "master"]})),
            ("username", json!({"type": "string", "nullable": true,
                "description": "the account locked from this address; null when the address itself is locked for the whole realm"})),
            ("address", s()), ("retry_after_secs", i()),
            ("refused", json!({"type": "integer", "format": "int64", "description": "attempts refused since the lockout began"}))]),
        "LockoutClear": obj(&[], &[("realm", json!({"type": "string", "enum": ["admin", "profile", "master"]})),
            ("username", s()), ("address", s())]),
        "Cleared": obj(&["cleared"], &[("cleared", b())]),
        "Profile": obj(&["id", "name", "has_contacts_password", "has_call_memory_password",
            "collect_call_memory", "allow_call_memory_deletion", "call_memory_password_protected",
            "handsets", "speakers", "created_at", "updated_at"], &[
            ("id", i()), ("name", s()), ("has_contacts_password", b()), ("has_call_memory_password", b()),
            ("collect_call_memory", b()), ("allow_call_memory_deletion", b()),
            ("call_memory_password_protected", b()), ("handsets", handsets()), ("speakers", speakers()),
            ("created_at", t()), ("updated_at", t())]),
        "ProfilePage": obj(&["items", "total"], &[("items", array(r("Profile"))), ("total", i())]),
        "ProfileCreate": obj(&["name", "password"], &[("name", s()),
            ("password", secret("profile password, at least 4 characters")),
            ("contacts_password", secret("gates contacts (SPEC rule 3)")),
            ("call_memory_password", secret("gates call memory (SPEC rule 3)")),
            ("collect_call_memory", b()), ("allow_call_memory_deletion", b()),
            ("call_memory_password_protected", b()), ("handsets", handsets()), ("speakers", speakers())]),
        "ProfilePatch": obj(&[], &[("name", s()), ("password", secret("new profile password")),
            ("contacts_password", json!({"type": "string", "format": "password", "writeOnly": true, "nullable": true, "description": "null removes it"})),
            ("call_memory_password", json!({"type": "string", "format": "password", "writeOnly": true, "nullable": true, "description": "null removes it"})),
            ("collect_call_memory", b()), ("allow_call_memory_deletion", b()),
            ("call_memory_password_protected", b()), ("handsets", handsets()), ("speakers", speakers())]),
        "Erasure": obj(&["local_contacts", "speed_dials", "call_memory_entries", "line_assignments", "consents", "cdrs_named", "credentials"], &[
            ("local_contacts", i()), ("speed_dials", i()), ("call_memory_entries", i()),
            ("line_assignments", i()), ("consents", i()),
            ("cdrs_named", json!({"type": "integer", "format": "int64", "description": "call data records that keep the call but lose the profile's name"})),
            ("credentials", s())]),
        "ImportRefused": obj(&["error", "message", "rows", "more"], &[("error", s()), ("message", s()),
            ("rows", array(obj(&["line", "column", "reason"], &[("line", i()), ("column", s()), ("reason", s())]))),
            ("more", json!({"type": "integer", "format": "int64", "description": "refused rows beyond those listed"}))]),
        "Deleted": obj(&["erased"], &[("erased", r("Erasure"))]),
        "Contact": contact,
        "ContactCreate": obj(&["name", "number"], &[("name", s()), ("number", s()), ("field3", s()), ("field4", s())]),
        "ContactPatch": obj(&[], &[("name", s()), ("number", s()), ("field3", s()), ("field4", s())]),
        "ContactPage": obj(&["items"], &[("items", array(r("Contact"))),
            ("next_cursor", json!({"type": "string", "description": "pass as cursor for the next page"}))]),
        "SpeedDial": obj(&["id", "kind", "position", "name", "number"], &[("id", i()),
            ("kind", json!({"type": "string", "enum": ["DKA", "DKM"]})), ("position", i()), ("name", s()), ("number", s())]),
        "SpeedDialCreate": obj(&["kind", "position", "name", "number"], &[
            ("kind", json!({"type": "string", "enum": ["DKA", "DKM"]})), ("position", i()), ("name", s()), ("number", s())]),
        "SpeedDialPatch": obj(&[], &[("kind", json!({"type": "string", "enum": ["DKA", "DKM"]})),
            ("position", i()), ("name", s()), ("number", s())]),
        "Line": obj(&["id", "name", "uri", "username", "display_name", "alternate_text", "preferred_identity",
            "answer_mode", "peers", "priority", "recorded", "has_password", "registration_state", "created_at", "updated_at"], &[
            ("id", i()), ("name", s()), ("uri", s()), ("username", s()), ("display_name", s()),
            ("alternate_text", s()), ("preferred_identity", s()), ("answer_mode", answer_mode()), ("peers", s()), ("priority", b()), ("recorded", b()),
            ("has_password", json!({"type": "boolean", "description": "the password itself is never returned"})),
            ("registration_state", json!({"type": "string", "enum": ["registering", "registered", "failing", "unregistered", "unknown"],
                "description": "as the Multi-Line Controller reports it; unknown when none runs in this server"})),
            ("registration_reason", json!({"type": "string", "nullable": true, "description": "why the line is failing"})),
            ("registration_since", json!({"type": "string", "format": "date-time", "nullable": true, "description": "since when the line has been in this kind of state (reported since the server started)"})),
            ("served_by", json!({"type": "string", "nullable": true, "description": "the Multi-Line Controller serving the line: local (in this process) or a turret mlc's name"})),
            ("created_at", t()), ("updated_at", t())]),
        "LineCreate": obj(&["name", "uri"], &[("name", s()), ("uri", json!({"type": "string", "example": "sip:1001@pbx.example.com"})),
            ("username", s()), ("password", secret("SIP digest password; stored encrypted, never shown again")),
            ("display_name", s()), ("alternate_text", s()), ("preferred_identity", s()), ("answer_mode", answer_mode()), ("peers", s()), ("priority", b()), ("recorded", b())]),
        "LinePatch": obj(&[], &[("name", s()), ("uri", s()), ("username", s()),
            ("password", secret("absent keeps the stored password")),
            ("display_name", s()), ("alternate_text", s()), ("preferred_identity", s()), ("answer_mode", answer_mode()), ("peers", s()), ("priority", b()), ("recorded", b())]),
        "BackupRestored": obj(&["file", "created_at", "erased_again", "restarting"], &[
            ("file", s()), ("created_at", t()),
            ("erased_again", json!({"type": "integer", "description": "profiles erased since the backup, erased again"})),
            ("restarting", b())]),
        "ApiKey": obj(&["id", "name", "events", "cdrs", "created_at", "active"], &[
            ("id", i()), ("name", s()),
            ("lines", json!({"type": "array", "items": {"type": "integer"}, "nullable": true, "description": "null: every line"})),
            ("events", json!({"type": "array", "items": {"type": "string", "enum": ["calls", "lines", "phones", "recording", "errors"]}})),
            ("cdrs", b()), ("expires_at", json!({"type": "string", "format": "date-time", "nullable": true})),
            ("created_at", t()), ("revoked_at", json!({"type": "string", "format": "date-time", "nullable": true})),
            ("last_used_at", json!({"type": "string", "format": "date-time", "nullable": true})), ("active", b())]),
        "ApiKeyCreate": obj(&["name"], &[("name", s()),
            ("lines", json!({"type": "array", "items": {"type": "integer"}, "nullable": true, "description": "absent or null: every line"})),
            ("events", json!({"type": "array", "items": {"type": "string", "enum": ["calls", "lines", "phones", "recording", "errors"]}})),
            ("cdrs", b()), ("expires_in_days", json!({"type": "integer", "minimum": 1, "maximum": 3650}))]),
        "ApiKeyCreated": obj(&["key", "token"], &[("key", r("ApiKey")),
            ("token", json!({"type": "string", "description": "the API key itself: shown this once, stored only as its SHA-256"}))]),
        "Recorder": obj(&["id", "name", "uri", "transport", "username", "has_password", "status", "created_at", "updated_at"], &[
            ("id", i()), ("name", s()), ("uri", json!({"type": "string", "description": "the Session Recording Server, sip:srs@host[:port] or sips:"})),
            ("transport", recorder_transport()), ("username", s()), ("has_password", b()),
            ("status", obj(&["state", "sessions", "failures"], &[
                ("state", json!({"type": "string", "enum": ["ok", "failing", "unused"], "description": "since the start: failing when its last attempt failed"})),
                ("sessions", i()), ("failures", i()),
                ("last_failure", json!({"type": "string", "nullable": true})),
                ("last_failure_at", json!({"type": "string", "format": "date-time", "nullable": true}))])),
            ("created_at", t()), ("updated_at", t())]),
        "RecorderCreate": obj(&["name", "uri"], &[("name", s()), ("uri", s()), ("transport", recorder_transport()),
            ("username", s()), ("password", secret("digest password, when the recorder asks for one"))]),
        "RecorderPatch": obj(&[], &[("name", s()), ("uri", s()), ("transport", recorder_transport()),
            ("username", s()), ("password", secret("absent keeps the stored password"))]),
        "RecordingNotice": obj(&["present"], &[("present", b()),
            ("seconds", json!({"type": "number", "nullable": true})),
            ("uploaded_at", json!({"type": "string", "format": "date-time", "nullable": true}))]),
        "RecordingNoticeSet": obj(&["wav"], &[("wav", json!({"type": "string", "description": "the WAV file, base64: 8 kHz, mono, 16-bit PCM, 0.2 to 30 seconds"}))]),
        "RecordingLogEntry": obj(&["at", "call_id", "recorder_id", "outcome"], &[
            ("at", t()), ("call_id", i()),
            ("line_id", json!({"type": "integer", "nullable": true})),
            ("profile_id", json!({"type": "integer", "nullable": true, "description": "null once the person was erased"})),
            ("recorder_id", i()),
            ("outcome", json!({"type": "string", "enum": ["recording", "failed"]})),
            ("reason", json!({"type": "string", "nullable": true}))]),
        "MlcStatus": obj(&["running", "lines", "calls"], &[
            ("running", json!({"type": "boolean", "description": "whether a Multi-Line Controller runs in this server"})),
            ("sip", json!({"type": "string", "nullable": true, "description": "the SIP address it listens on (UDP and TCP)"})),
            ("lines", json!({"type": "object", "description": "how many lines are in each registration state",
                "additionalProperties": {"type": "integer"}})),
            ("calls", i()),
            ("refused_requests", json!({"type": "integer", "format": "int64",
                "description": "SIP requests the in-process MLC refused (403) because their sender is not the PBX of the line they were for"})),
            ("controllers", json!({"type": "array", "description": "the Multi-Line Controllers: the one in this process and each connected turret mlc",
                "items": obj(&["name", "in_process"], &[("name", s()), ("in_process", b()),
                    ("sip", json!({"type": "string", "nullable": true})), ("peer", s()), ("lines", i()),
                    ("refused_requests", json!({"type": "integer", "format": "int64", "description": "SIP requests this turret mlc refused from strangers"}))])})),
            ("node", json!({"type": "string", "description": "this System Manager node's name among the nodes on one database (database.node_name)"})),
            ("leases", json!({"type": "array", "description": "which node serves each line (several nodes on PostgreSQL; empty with one node on SQLite, which serves every line)",
                "items": obj(&["line_id", "holder", "epoch", "remaining_ms"], &[("line_id", i()), ("holder", s()),
                    ("epoch", json!({"type": "integer", "format": "int64", "description": "grows by one at every takeover"})),
                    ("remaining_ms", json!({"type": "integer", "format": "int64", "description": "until the lease lapses unless renewed (negative: lapsed)"}))])}))]),
        "LineKey": obj(&["line_id", "position", "name", "display_name", "alternate_text"], &[
            ("line_id", i()), ("position", i()), ("name", s()), ("display_name", s()), ("alternate_text", s())]),
        "LineKeyAssign": obj(&["position"], &[("position", i())]),
        "LineAssignment": obj(&["profile_id", "line_id", "position"], &[("profile_id", i()), ("line_id", i()), ("position", i())]),
        "Settings": obj(&["global_contacts_changeable", "master_password_enabled", "cti_enabled", "api_enabled",
            "recorder_forwarding_enabled", "updated_at"], &[
            ("global_contacts_changeable", b()), ("master_password_enabled", b()), ("cti_enabled", b()),
            ("api_enabled", b()), ("recorder_forwarding_enabled", b()), ("recording_all_lines", b()),
            ("retention_call_memory_days", json!({"type": "integer", "nullable": true})),
            ("retention_cdr_days", json!({"type": "integer", "nullable": true})),
            ("retention_audit_days", json!({"type": "integer", "nullable": true})),
            ("pseudonymisation", pseudonymisation()), ("cdr_enabled", b()), ("cdr_store", b()),
            ("cdr_fields", array(cdr_field())), ("cdr_files", cdr_files()), ("updated_at", t())]),
        "SettingsPatch": obj(&[], &[("global_contacts_changeable", b()), ("master_password_enabled", b()),
            ("master_password", secret("sets and enables the master password; at least 12 characters")),
            ("cti_enabled", b()), ("api_enabled", b()), ("recorder_forwarding_enabled", b()),
            ("recording_all_lines", json!({"type": "boolean", "description": "with forwarding on: every line's calls are recorded, else only lines marked recorded"})),
            ("retention_call_memory_days", json!({"type": "integer", "nullable": true, "description": "1-3650; null keeps"})),
            ("retention_cdr_days", json!({"type": "integer", "nullable": true, "description": "1-3650; null keeps"})),
            ("retention_audit_days", json!({"type": "integer", "nullable": true, "description": "1-3650; null keeps; older entries are purged and the chain re-anchored"})),
            ("pseudonymisation", pseudonymisation()), ("cdr_enabled", b()), ("cdr_store", b()),
            ("cdr_fields", array(cdr_field())), ("cdr_files", cdr_files())]),
        "Consent": obj(&["id", "profile_id", "purpose", "channel", "given_at", "recorded_by", "created_at"], &[
            ("id", i()), ("profile_id", i()), ("purpose", s()),
            ("channel", json!({"type": "string", "enum": ["paper", "email", "electronic"]})),
            ("given_at", t()), ("recorded_by", s()), ("created_at", t())]),
        "ConsentCreate": obj(&["profile_id", "purpose", "channel"], &[("profile_id", i()), ("purpose", s()),
            ("channel", json!({"type": "string", "enum": ["paper", "email", "electronic"]})), ("given_at", t())]),
        "AuditEntry": obj(&["seq", "at", "level", "event_type", "object_type", "changes", "success",
            "server_host", "actor", "client_ip", "client_host"], &[
            ("seq", i()), ("at", t()), ("level", json!({"type": "string", "enum": ["info", "warning", "error"]})),
            ("event_type", s()), ("object_type", s()), ("object_id", nullable_s()),
            ("changes", json!({"type": "array", "items": {"type": "string"}, "description": "names of changed fields, never values"})),
            ("success", b()), ("server_host", s()), ("actor", s()), ("client_ip", s()),
            ("client_host", json!({"type": "string", "description": "the computer name the client claims in X-Client-Host: not verified; host-name characters only, at most 63, else `invalid`; empty when none was sent"}))]),
        "AuditPage": obj(&["items"], &[("items", array(r("AuditEntry"))), ("next_before", i())]),
        "Event": obj(&["id", "seq", "level", "component", "type", "object", "message", "properties", "count", "first_at", "last_at"], &[
            ("id", i()), ("seq", json!({"type": "integer", "description": "grows at every write of any entry (new, or folded into): `after` a seq lists what changed since"})),
            ("level", json!({"type": "string", "enum": ["error", "warning", "info"]})),
            ("component", json!({"type": "string", "description": "`sm:<host>` (a System Manager) or `mlc:<name>` (an MLC; `mlc:local@<host>` in process)"})),
            ("type", json!({"type": "string", "description": "dotted, e.g. pbx.unreachable, backup.failed"})),
            ("object", json!({"type": "string", "description": "`kind:id` (line:7, pbx:10.0.0.5:5060, recorder:2, mlc:desk-a), a kind (backup), or empty"})),
            ("message", s()),
            ("properties", json!({"type": "object", "additionalProperties": {"type": "string"}})),
            ("count", json!({"type": "integer", "description": "identical events folded into this entry"})),
            ("first_at", t()), ("last_at", t())]),
        "EventPage": obj(&["items"], &[("items", array(r("Event"))), ("next_before", i())]),
        "ImportResult": obj(&["inserted", "updated"], &[("inserted", i()), ("updated", i())]),
        "Backup": obj(&["file", "created_at", "payload_bytes", "schema_version", "backup_key"], &[("file", s()), ("created_at", t()),
            ("payload_bytes", i()), ("schema_version", i()), ("backup_key", nullable_s())]),
        "BackupCreate": obj(&[], &[("passphrase", secret("at least 12 characters; without it the backup reveals nothing. Absent: the backup is sealed to the installation's backup key"))]),
        "BackupKey": obj(&["fingerprint", "created_at"], &[("fingerprint", s()), ("created_at", t())]),
        "BackupKeySet": obj(&["passphrase"], &[("passphrase", secret("at least 12 characters: needed to verify or restore any backup sealed to this key"))]),
        "BackupVerify": obj(&["file", "passphrase"], &[("file", s()), ("passphrase", secret("the backup's passphrase"))]),
        "BackupVerified": obj(&["ok", "file", "created_at", "integrity", "audit_entries"], &[("ok", b()), ("file", s()),
            ("created_at", t()), ("integrity", s()), ("audit_entries", i())]),
        "AuditVerification": obj(&["ok", "verified"], &[("ok", b()), ("verified", i()),
            ("broken_at", i()), ("reason", s())]),
    })
}

struct Op {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    tag: &'static str,
    query: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    status: u16,
    response: Option<Value>,
    /// Other answers this operation gives, besides the ones every
    /// operation documents.
    also: Vec<(u16, &'static str)>,
    /// An answer with a body of its own schema.
    refused: Option<(u16, &'static str, &'static str)>,
}

fn op(method: &'static str, path: &'static str, tag: &'static str, summary: &'static str) -> Op {
    Op {
        method,
        path,
        summary,
        tag,
        query: &[],
        body: None,
        status: 200,
        response: None,
        also: Vec::new(),
        refused: None,
    }
}

impl Op {
    fn body(mut self, schema: &'static str) -> Op {
        self.body = Some(schema);
        self
    }
    fn ok(mut self, status: u16, response: Option<Value>) -> Op {
        self.status = status;
        self.response = response;
        self
    }
    fn query(mut self, q: &'static [(&'static str, &'static str)]) -> Op {
        self.query = q;
        self
    }
    fn refused(mut self, status: u16, why: &'static str, schema: &'static str) -> Op {
        self.refused = Some((status, why, schema));
        self
    }
    fn also(mut self, status: u16, why: &'static str) -> Op {
        self.also.push((status, why));
        self
    }
}

/// Every operation of the API.
fn operations() -> Vec<Op> {
    use Some as S;
    vec![
        op(
            "post",
            "/api/v1/auth/login",
            "auth",
            "Log in; returns a bearer token",
        )
        .body("LoginRequest")
        .ok(200, S(r("Token"))),
        op(
            "post",
            "/api/v1/auth/logout",
            "auth",
            "End this token's session",
        )
        .ok(204, None),
        op(
            "post",
            "/api/v1/auth/password",
            "auth",
            "Change your own password (required after the one-time password)",
        )
        .body("PasswordChange")
        .ok(200, S(r("Token"))),
        op(
            "get",
            "/api/v1/auth/me",
            "auth",
            "The administrator owning the token",
        )
        .ok(200, S(r("Admin"))),
        op("get", "/api/v1/lockouts", "auth", "Login lockouts in force")
            .ok(200, S(array(r("Lockout")))),
        op(
            "post",
            "/api/v1/lockouts/clear",
            "auth",
            "Lift the lockout of a username or address",
        )
        .body("LockoutClear")
        .ok(200, S(r("Cleared"))),
        op("get", "/api/v1/admins", "admins", "List administrators").ok(200, S(array(r("Admin")))),
        op(
            "post",
            "/api/v1/admins",
            "admins",
            "Create an administrator",
        )
        .body("AdminCreate")
        .ok(201, S(r("Admin"))),
        op(
            "get",
            "/api/v1/admins/{id}",
            "admins",
            "Get an administrator",
        )
        .ok(200, S(r("Admin"))),
        op(
            "patch",
            "/api/v1/admins/{id}",
            "admins",
            "Enable or disable an administrator",
        )
        .body("AdminPatch")
        .ok(200, S(r("Admin"))),
        op(
            "delete",
            "/api/v1/admins/{id}",
            "admins",
            "Delete an administrator",
        )
        .ok(204, None),
        op(
            "post",
            "/api/v1/admins/{id}/password",
            "admins",
            "Reset an administrator's password",
        )
        .body("PasswordReset")
        .ok(200, S(r("Admin"))),
        op("get", "/api/v1/admins/{id}/subject-export", "admins",
            "What the system holds about an administrator (GDPR Art. 15): the account and their audit trail as actor, as a ZIP (JSON, CSV, HTML)")
            .ok(200, S(json!({"type": "string", "format": "binary"}))),
        op("get", "/api/v1/profiles", "profiles", "List profiles")
            .query(&[
                ("q", "part of the name"),
                ("limit", "1-1000, default 100"),
                ("offset", "default 0"),
            ])
            .ok(200, S(r("ProfilePage"))),
        op("post", "/api/v1/profiles", "profiles", "Create a profile")
            .body("ProfileCreate")
            .ok(201, S(r("Profile"))),
        op("get", "/api/v1/profiles/{id}", "profiles", "Get a profile").ok(200, S(r("Profile"))),
        op(
            "patch",
            "/api/v1/profiles/{id}",
            "profiles",
            "Change a profile",
        )
        .body("ProfilePatch")
        .ok(200, S(r("Profile"))),
        op(
            "delete",
            "/api/v1/profiles/{id}",
            "profiles",
            "Delete a profile and everything it owns (SPEC rule 8)",
        )
        .ok(200, S(r("Deleted"))),
        op(
            "get",
            "/api/v1/profiles/{id}/erasure-preview",
            "profiles",
            "What deleting the profile would erase",
        )
        .ok(200, S(r("Erasure"))),
        op(
            "get",
            "/api/v1/profiles/{id}/subject-export",
            "profiles",
            "Subject access export: everything held about the profile, as a ZIP (JSON, CSV, HTML); never call memory",
        )
        .ok(200, S(json!({"type": "string", "format": "binary"}))),
        op(
            "get",
            "/api/v1/profiles/{id}/contacts",
            "profiles",
            "List a profile's local contacts",
        )
        .ok(200, S(array(r("Contact")))),
        op(
            "post",
            "/api/v1/profiles/{id}/contacts",
            "profiles",
            "Create a local contact",
        )
        .body("ContactCreate")
        .ok(201, S(r("Contact"))),
        op(
            "get",
            "/api/v1/profiles/{id}/contacts/{contact_id}",
            "profiles",
            "Get a local contact",
        )
        .ok(200, S(r("Contact"))),
        op(
            "patch",
            "/api/v1/profiles/{id}/contacts/{contact_id}",
            "profiles",
            "Change a local contact",
        )
        .body("ContactPatch")
        .ok(200, S(r("Contact"))),
        op(
            "delete",
            "/api/v1/profiles/{id}/contacts/{contact_id}",
            "profiles",
            "Delete a local contact",
        )
        .ok(204, None),
        op(
            "get",
            "/api/v1/profiles/{id}/speed-dials",
            "profiles",
            "List a profile's speed dial keys",
        )
        .ok(200, S(array(r("SpeedDial")))),
        op(
            "post",
            "/api/v1/profiles/{id}/speed-dials",
            "profiles",
            "Create a speed dial key",
        )
        .body("SpeedDialCreate")
        .ok(201, S(r("SpeedDial"))),
        op(
            "get",
            "/api/v1/profiles/{id}/speed-dials/{key_id}",
            "profiles",
            "Get a speed dial key",
        )
        .ok(200, S(r("SpeedDial"))),
        op(
            "patch",
            "/api/v1/profiles/{id}/speed-dials/{key_id}",
            "profiles",
            "Change a speed dial key",
        )
        .body("SpeedDialPatch")
        .ok(200, S(r("SpeedDial"))),
        op(
            "delete",
            "/api/v1/profiles/{id}/speed-dials/{key_id}",
            "profiles",
            "Delete a speed dial key",
        )
        .ok(204, None),
        op(
            "get",
            "/api/v1/profiles/{id}/lines",
            "profiles",
            "A profile's line keys",
        )
        .ok(200, S(array(r("LineKey")))),
        op(
            "put",
            "/api/v1/profiles/{id}/lines/{line_id}",
            "profiles",
            "Show a line on the profile at a key position",
        )
        .body("LineKeyAssign")
        .ok(200, S(r("LineAssignment"))),
        op(
            "delete",
            "/api/v1/profiles/{id}/lines/{line_id}",
            "profiles",
            "Remove a line key",
        )
        .ok(204, None),
        op(
            "get",
            "/api/v1/global-contacts",
            "global contacts",
            "Search global contacts by the beginning of any word of the name, or by number prefix",
        )
        .query(&[
            (
                "q",
                "the beginning of any word of the name (\"alpha\" finds \"North Alpha Capital\"), or a number prefix when it looks like a number",
            ),
            ("name", "the beginning of any word of the name, case-insensitive"),
            ("number", "number prefix in any written form"),
            ("limit", "1-500, default 50"),
            ("cursor", "next_cursor of the previous page"),
        ])
        .ok(200, S(r("ContactPage"))),
        op(
            "post",
            "/api/v1/global-contacts",
            "global contacts",
            "Create a global contact",
        )
        .body("ContactCreate")
        .ok(201, S(r("Contact"))),
        op(
            "get",
            "/api/v1/global-contacts/{id}",
            "global contacts",
            "Get a global contact",
        )
        .ok(200, S(r("Contact"))),
        op(
            "patch",
            "/api/v1/global-contacts/{id}",
            "global contacts",
            "Change a global contact",
        )
        .body("ContactPatch")
        .ok(200, S(r("Contact"))),
        op(
            "delete",
            "/api/v1/global-contacts/{id}",
            "global contacts",
            "Delete a global contact",
        )
        .ok(204, None),
        op(
            "get",
            "/api/v1/lines",
            "lines",
            "List lines (never their passwords)",
        )
        .ok(200, S(array(r("Line")))),
        op("post", "/api/v1/lines", "lines", "Create a line")
            .body("LineCreate")
            .ok(201, S(r("Line"))),
        op("get", "/api/v1/lines/{id}", "lines", "Get a line").ok(200, S(r("Line"))),
        op("patch", "/api/v1/lines/{id}", "lines", "Change a line")
            .body("LinePatch")
            .ok(200, S(r("Line"))),
        op("delete", "/api/v1/lines/{id}", "lines", "Delete a line").ok(204, None),
        op(
            "post",
            "/api/v1/backups/restore",
            "backups",
            "Restore a backup: checked, built aside with the erasure ledger re-applied, then the server restarts to swap it in",
        )
        .body("BackupVerify")
        .ok(202, S(r("BackupRestored")))
        .also(501, "the database is PostgreSQL: restore with every node stopped (turret backup restore)"),
        op("get", "/api/v1/api-keys", "api-keys", "API keys of external applications (never the keys themselves)")
            .ok(200, S(array(r("ApiKey")))),
        op("post", "/api/v1/api-keys", "api-keys", "Create an API key: the key is in this answer only")
            .body("ApiKeyCreate")
            .ok(201, S(r("ApiKeyCreated"))),
        op("delete", "/api/v1/api-keys/{id}", "api-keys", "Revoke an API key; its connections end at once").ok(204, None),
        op("get", "/api/v1/recorders", "recorders", "Voice recorders (SIPREC Session Recording Servers), at most two")
            .ok(200, S(array(r("Recorder")))),
        op("post", "/api/v1/recorders", "recorders", "Add a voice recorder; every recorded call goes to each")
            .body("RecorderCreate")
            .ok(201, S(r("Recorder"))),
        op("get", "/api/v1/recorders/{id}", "recorders", "Get a voice recorder").ok(200, S(r("Recorder"))),
        op("patch", "/api/v1/recorders/{id}", "recorders", "Change a voice recorder")
            .body("RecorderPatch")
            .ok(200, S(r("Recorder"))),
        op("delete", "/api/v1/recorders/{id}", "recorders", "Remove a voice recorder").ok(204, None),
        op("get", "/api/v1/recording-notice", "recorders", "Whether a recording notice is played to the far end of recorded calls")
            .ok(200, S(r("RecordingNotice"))),
        op("put", "/api/v1/recording-notice", "recorders", "Set the recording notice: a WAV file (8 kHz, mono, 16-bit PCM, 0.2-30 s) played to the far end when a recorded call connects")
            .body("RecordingNoticeSet")
            .ok(200, S(r("RecordingNotice"))),
        op("delete", "/api/v1/recording-notice", "recorders", "Remove the recording notice").ok(204, None),
        op("get", "/api/v1/recordings", "recorders", "The record of which calls went to which recorder (or failed to), newest first; kept as long as CDRs")
            .query(&[("from", "RFC 3339; at or after"), ("to", "RFC 3339; before"), ("limit", "1-1000, default 100")])
            .ok(200, S(array(r("RecordingLogEntry")))),
        op("get", "/api/v1/mlc", "lines", "The Multi-Line Controller: its SIP address, lines per registration state, calls in progress")
            .ok(200, S(r("MlcStatus"))),
        op("get", "/api/v1/settings", "settings", "System settings").ok(200, S(r("Settings"))),
        op(
            "patch",
            "/api/v1/settings",
            "settings",
            "Change system settings (master password changes are audited apart)",
        )
        .body("SettingsPatch")
        .ok(200, S(r("Settings"))),
        op(
            "get",
            "/api/v1/consents",
            "consents",
            "List consent records",
        )
        .query(&[("profile_id", "only this profile's")])
        .ok(200, S(array(r("Consent")))),
        op("post", "/api/v1/consents", "consents", "Record a consent")
            .body("ConsentCreate")
            .ok(201, S(r("Consent"))),
        op(
            "get",
            "/api/v1/consents/{id}",
            "consents",
            "Get a consent record",
        )
        .ok(200, S(r("Consent"))),
        op(
            "post",
            "/api/v1/consents/{id}/withdraw",
            "consents",
            "Withdraw a consent: erases the profile (SPEC rule 8)",
        )
        .ok(200, S(r("Deleted"))),
        op("post", "/api/v1/import/{kind}", "import and export",
            "Import global-contacts, local-contacts, dkm-keys or lines: the body is the file (CSV with a header row, or JSON lines); all or nothing")
        .query(&[("profile_id", "the profile, for local-contacts and dkm-keys"), ("format", "csv (default) or json"), ("on_duplicate", "reject (default) or update")])
        .ok(200, S(r("ImportResult")))
        .refused(422, "the file is refused: every wrong row named (nothing imported)", "ImportRefused"),
        op("get", "/api/v1/export/{kind}", "import and export", "Export global-contacts, local-contacts, dkm-keys or lines (streamed; line passwords never)")
        .query(&[("profile_id", "the profile, for local-contacts and dkm-keys"), ("format", "csv (default) or json")])
        .ok(200, S(json!({"type": "string", "description": "the file"}))),
        op("get", "/api/v1/privacy-report", "privacy",
            "The live privacy report: data categories, counts, readers, protection, features, retention, backups, erasure ledger")
        .ok(200, S(json!({"type": "object"}))),
        op("get", "/api/v1/backups", "backups", "Backups in the backup folder, newest first").ok(200, S(array(r("Backup")))),
        op("post", "/api/v1/backups", "backups", "Take an online, encrypted backup (of either backend: the image is always a SQLite database)").body("BackupCreate").ok(201, S(r("Backup"))),
        op("post", "/api/v1/backups/verify", "backups", "Check a backup without restoring it").body("BackupVerify").ok(200, S(r("BackupVerified"))),
        op("get", "/api/v1/backups/key", "backups", "The installation's backup key (404 when none is set up)").ok(200, S(r("BackupKey")))
            .also(404, "no backup key is set up"),
        op("put", "/api/v1/backups/key", "backups", "Set up or replace the backup key: backups can then be taken without a passphrase").body("BackupKeySet").ok(200, S(r("BackupKey"))),
        op(
            "get",
            "/api/v1/audit",
            "audit",
            "Audit entries, newest first",
        )
        .query(&[
            ("actor", "user account"),
            ("event_type", "e.g. profile.created"),
            ("object_type", "e.g. profile"),
            ("object_id", "object id"),
            ("from", "RFC 3339, inclusive"),
            ("to", "RFC 3339, exclusive"),
            ("before", "sequence number: entries below it"),
            ("limit", "1-1000, default 100"),
        ])
        .ok(200, S(r("AuditPage"))),
        op(
            "get",
            "/api/v1/audit/verify",
            "audit",
            "Verify the audit hash chain",
        )
        .ok(200, S(r("AuditVerification"))),
        op(
            "get",
            "/api/v1/events",
            "events",
            "The error log: what the components (System Managers, MLCs) reported, newest first; identical events folded into one entry with a count",
        )
        .query(&[
            ("level", "error, warning or info: that level only"),
            ("at_least", "warning: errors and warnings; error: errors"),
            ("component", "e.g. sm:turret1 or mlc:desk-a"),
            ("type", "e.g. pbx.unreachable"),
            ("object", "e.g. line:7, pbx:10.0.0.5:5060, backup"),
            ("from", "RFC 3339: last seen at or after"),
            ("to", "RFC 3339: last seen before"),
            ("before", "seq: entries written before it (paging)"),
            ("after", "seq: entries written after it, oldest first (following)"),
            ("limit", "1-1000, default 100"),
        ])
        .ok(200, S(r("EventPage"))),
        op("post", "/api/v1/settings/pseudonym-key/rotate", "settings",
            "Replace the key that pseudonymises numbers for external applications (old pseudonyms no longer match)")
            .ok(204, None),
        // The query API of external applications: API keys, not admin tokens.
        op("get", "/ext/v1/calls", "external", "Calls in progress on the key's lines (scope: calls)")
            .ok(200, S(obj(&["calls"], &[("calls", array(json!({"type": "object",
                "description": "a call as the CTI `call` event carries it (docs/cti.md)"})))]))),
        op("get", "/ext/v1/lines", "external", "The key's lines and their registration states (scope: lines)")
            .ok(200, S(obj(&["lines"], &[("lines", array(r("ExtLine")))]))),
        op("get", "/ext/v1/phones", "external", "Profiles logged in at a turret (scope: phones, keys on every line)")
            .ok(200, S(obj(&["logged_in_profiles"], &[("logged_in_profiles", array(i()))]))),
        op("get", "/ext/v1/cdrs", "external", "Call data records on the key's lines (needs CDR permission)")
            .query(&[("from", "RFC 3339, inclusive"), ("to", "RFC 3339, exclusive"), ("limit", "1-10000, default 1000")])
            .ok(200, S(obj(&["cdrs"], &[("cdrs", array(json!({"type": "object",
                "description": "the enabled CDR fields (docs/cti.md)"})))]))),
    ]
}

/// The methods and paths of every documented operation (for tests).
pub fn documented_operations() -> Vec<(&'static str, &'static str)> {
    operations().iter().map(|o| (o.method, o.path)).collect()
}

pub fn document() -> Value {
    let err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": r("Error")}}});
    let mut paths = Map::new();
    for o in operations() {
        let mut params: Vec<Value> = o
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| {
                let schema = if name == "kind" { s() } else { i() };
                json!({"name": name, "in": "path", "required": true, "schema": schema})
            })
            .collect();
        params.extend(o.query.iter().map(|(name, d)| {
            json!({"name": name, "in": "query", "required": false, "description": d, "schema": s()})
        }));
        let mut responses = Map::new();
        let ok = match &o.response {
            Some(schema) => {
                json!({"description": "success", "content": {"application/json": {"schema": schema}}})
            }
            None => json!({"description": "success, no content"}),
        };
        responses.insert(o.status.to_string(), ok);
        let external = o.path.starts_with("/ext/");
        if external {
            let ext_err = |d: &str| json!({"description": d, "content": {"application/json": {"schema": r("ExtError")}}});
            responses.insert(
                "401".into(),
                ext_err("missing, unknown, expired or revoked API key"),
            );
            responses.insert(
                "403".into(),
                ext_err("the API interface is off, or the key's scope does not cover this"),
            );
            if !o.query.is_empty() {
                responses.insert("422".into(), ext_err("invalid time range"));
            }
        } else if o.path != "/api/v1/auth/login" {
            responses.insert("401".into(), err("missing, unknown or expired token"));
            responses.insert(
                "403".into(),
                err("the one-time password must be changed first"),
            );
        } else {
            responses.insert("401".into(), err("wrong username or password"));
            responses.insert("429".into(), err("too many failed logins; see Retry-After"));
        }
        if o.path.contains('{') {
            responses.insert("404".into(), err("no such object"));
        }
        if !external && (o.body.is_some() || !o.query.is_empty()) {
            responses.insert("422".into(), err("invalid input; `field` names the field"));
        }
        for (status, why) in &o.also {
            responses.insert(status.to_string(), err(why));
        }
        if let Some((status, why, schema)) = o.refused {
            // Either the usual error (a bad query) or this one (bad rows).
            responses.insert(
                status.to_string(),
                json!({"description": why, "content": {"application/json": {"schema":
                    {"oneOf": [r("Error"), r(schema)]}}}}),
            );
        }
        let mut operation = json!({
            "summary": o.summary,
            "tags": [o.tag],
            "operationId": format!("{}{}", o.method, o.path.replace(['/', '{', '}', '-'], "_")),
            "parameters": params,
            "responses": responses,
        });
        operation["security"] = if external {
            json!([{"api_key": []}])
        } else if o.path != "/api/v1/auth/login" {
            json!([{"bearer": []}])
        } else {
            json!([])
        };
        if let Some(body) = o.body {
            operation["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": r(body)}}});
        }
        let entry = paths.entry(o.path.to_string()).or_insert_with(|| json!({}));
        entry[o.method] = operation;
    }
    paths.insert(
        "/healthz".into(),
        json!({"get": {"summary": "Health check: 200 while the database answers", "tags": ["health"], "security": [],
            "operationId": "get_healthz", "responses": {"200": {"description": "healthy"}, "503": {"description": "database unavailable"}}}}),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "OpenTurret System Manager admin API",
            "version": "1",
            "description": "Administration of profiles, contacts, speed dial keys, lines, settings, consents and the audit log. \
                Every change is audited; secrets are write-only; call memory is never readable here (SPEC rule 6).",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "an administrator's token from POST /api/v1/auth/login"},
                "api_key": {"type": "http", "scheme": "bearer", "description": "an API key (Settings → API keys), for /ext/v1 and the /cti stream"},
            },
        },
        "security": [{"bearer": []}],
    })
}
